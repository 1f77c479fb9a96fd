#!/usr/bin/env bash
# `make doctor`: can this machine run `make demo` and `make test`? Checks in seconds,
# one line per check; a failed check says what to do. Exit 1 if any check failed.
#   scripts/doctor.sh [debian-package ...]     (the Makefile passes the packages it installs)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/molecule/containers.conf}"
IMAGE=localhost/raptor-debian:12
PROBE=raptor-doctor
failed=0
errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT

ok() { printf 'ok    %s\n' "$*"; }
warn() { printf 'warn  %s\n' "$*"; }
fail() {
  printf 'FAIL  %s\n' "$*"
  failed=1
}
# Every external command runs under a deadline: a hung podman must not hang the doctor.
run() { timeout "$@"; }

# -- Debian packages ---------------------------------------------------------------
missing=()
for package in "$@"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" = installed ] || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  ok "Debian packages: ${*:-none asked}"
else
  fail "Debian packages missing: ${missing[*]} -> run: make deps"
fi

# -- redis-server ------------------------------------------------------------------
if command -v redis-server >/dev/null; then
  ok "redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') (the tests start their own on free loopback ports)"
else
  fail "redis-server not found -> run: make deps"
fi

# -- chromium ----------------------------------------------------------------------
if command -v chromium >/dev/null && version="$(run 30 chromium --version 2>/dev/null)"; then
  ok "$version (the web page's tests drive it headless)"
else
  fail "chromium not found or does not start -> run: make deps"
fi

# -- podman ------------------------------------------------------------------------
podman_ok=0
if ! command -v podman >/dev/null; then
  fail "podman not found -> run: make deps"
elif ! info="$(run 60 podman info --format '{{.Version.Version}} {{.Host.OCIRuntime.Name}} {{.Host.NetworkBackend}}' 2>"$errors")"; then
  fail "podman does not work: $(tail -n 1 "$errors") -> check $CONTAINERS_CONF (runtime runc, lowered ulimits)"
else
  read -r version runtime backend <<<"$info"
  ok "podman $version (runtime $runtime, network backend $backend)"
  podman_ok=1
  if [ "$backend" = cni ] && [ ! -x /usr/lib/cni/dnsname ]; then
    fail "the CNI dnsname plugin is missing: containers cannot resolve each other's names -> run: make deps"
  fi
fi

# -- containers reach each other by name -----------------------------------------------
if [ "$podman_ok" = 1 ]; then
  # Networks the project made before name resolution worked keep working without it:
  # they must be recreated, or every listener fails on "Name or service not known".
  for network in $(run 30 podman network ls --format '{{.Name}}' 2>/dev/null | grep '^raptor-'); do
    [ "$(run 30 podman network inspect "$network" --format '{{.DNSEnabled}}' 2>/dev/null)" = true ] && continue
    users="$(run 30 podman ps -a --filter "network=$network" --format '{{.Names}}' 2>/dev/null | tr '\n' ' ')"
    if [ -z "$users" ] && run 30 podman network rm "$network" >/dev/null 2>&1; then
      ok "removed podman network $network: it resolved no names (made before dnsname); it is made again when needed"
    else
      # make demo and molecule's first step (destroy) remove and remake their own network.
      warn "podman network $network resolves no container names (made before dnsname was installed);" \
        "make demo / molecule remake it; by hand: podman rm -f ${users:-...}; podman network rm -f $network"
    fi
  done
  if ! run 30 podman image exists "$IMAGE"; then
    # No image to run a probe in yet (make images builds it after this check): at
    # least check that a new network gets name resolution (the dnsname plugin).
    run 30 podman network rm -f "$PROBE-net" >/dev/null 2>&1
    if run 30 podman network create "$PROBE-net" >/dev/null 2>"$errors" \
      && [ "$(run 30 podman network inspect "$PROBE-net" --format '{{.DNSEnabled}}' 2>>"$errors")" = true ]; then
      ok "new podman networks resolve container names (dnsname); a probe between containers runs once $IMAGE is built"
    else
      fail "a new podman network gets no name resolution: $(tail -n 1 "$errors")" \
        "-> install golang-github-containernetworking-plugin-dnsname (make deps)"
    fi
    run 30 podman network rm -f "$PROBE-net" >/dev/null 2>&1
  else
    run 60 podman rm -f -t 0 "$PROBE-a" >/dev/null 2>&1
    run 30 podman network rm -f "$PROBE-net" >/dev/null 2>&1
    if out="$(run 30 podman network create "$PROBE-net" 2>&1)" \
      && out="$(run 60 podman run -d --name "$PROBE-a" --network "$PROBE-net" "$IMAGE" sleep 120 2>&1)" \
      && out="$(run 60 podman run --rm --network "$PROBE-net" "$IMAGE" getent hosts "$PROBE-a" 2>&1)"; then
      ok "containers reach each other by name (${PROBE}-a is $(awk '{print $1; exit}' <<<"$out"))"
    else
      fail "containers cannot reach each other by name: $(tail -n 1 <<<"$out")" \
        "-> install golang-github-containernetworking-plugin-dnsname (make deps) and recreate the raptor-* networks"
    fi
    run 60 podman rm -f -t 0 "$PROBE-a" >/dev/null 2>&1
    run 30 podman network rm -f "$PROBE-net" >/dev/null 2>&1
  fi
fi

# -- Python interpreters -----------------------------------------------------------------
python="${PYTHON:-python3}"
if "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  ok "$python is $("$python" -c 'import sys; print(sys.version.split()[0])') (the virtualenv's interpreter)"
else
  fail "$python is missing or older than 3.9 -> set PYTHON=/path/to/python3.9+ (make PYTHON=...)"
fi
root="${PYENV_ROOT:-$HOME/.pyenv}"
found=() absent=()
for version in 3.9 3.10 3.11 3.12 3.13; do
  if command -v "python$version" >/dev/null 2>&1 || compgen -G "$root/versions/$version.*/bin/python$version" >/dev/null; then
    found+=("$version")
  else
    absent+=("$version")
  fi
done
if [ "${#absent[@]}" -eq 0 ]; then
  ok "Python ${found[*]} found: the suites run on each (nox)"
else
  warn "Python ${absent[*]} not found (looked on PATH and in $root): nox skips them; found: ${found[*]:-none}"
fi

# -- disk --------------------------------------------------------------------------
free_kb="$(df -Pk /var/lib 2>/dev/null | awk 'NR == 2 {print $4}')"
if [ -n "$free_kb" ] && [ "$free_kb" -lt 4000000 ]; then
  fail "only $((free_kb / 1024)) MB free under /var/lib: images and containers need about 4 GB"
else
  ok "disk: $((${free_kb:-0} / 1024 / 1024)) GB free under /var/lib"
fi

if [ "$failed" = 0 ]; then
  echo "doctor: this machine can run make demo and make test"
else
  echo "doctor: fix the FAIL lines above first"
fi
exit "$failed"
