#!/usr/bin/env bash
# Build the artifacts and run on them the validators their ecosystems use:
#   the wheel and the sdist   python -m build, twine check --strict, check-wheel-contents,
#                             and the sdist's own unit tests, run from the unpacked sdist
#   the collection tarball    galaxy-importer (what Galaxy runs on upload), antsibull-docs
#                             lint, and ansible-test sanity on the built and installed
#                             collection; antsibull-changelog lint on changelogs/
# One line per validator (ok/FAIL, its closing line, its log); exit 1 if any failed.
# The tools live in build/validate-venv (made here, reused while TOOLS is unchanged), the
# artifacts and logs in build/validate/. Needs PyPI (pip, as set up on this machine) and
# nothing else from the network.
#   scripts/validate.sh            PYTHON=python3.12 scripts/validate.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/build/validate-venv"
BIN="$VENV/bin"
OUT="$ROOT/build/validate"
LOGS="$OUT/logs"
DIST="$OUT/dist"
COLL="$OUT/collection"
# The collection is installed outside the checkout: inside a git work tree ansible-test
# lists files with git, and build/ is git-ignored (it would find nothing to test).
COLLECTIONS="${COLLECTIONS:-}"
INSTALLED="$COLLECTIONS/ansible_collections/velociraptor/raptor"
# The Ansible tools write under HOME (~/.ansible): they get one of their own, kept in
# build/ so that ansible-test's sanity virtualenvs are reused from one run to the next.
TOOL_HOME="$OUT/home"
# The validators' versions: ansible-core as the project's .venv has it (molecule,
# ansible-lint); ansible-test sanity's ignore files are named after it.
TOOLS=(
  "ansible-core>=2.19,<2.20"
  "galaxy-importer>=0.4.40,<0.5"
  "antsibull-docs>=2.16,<3"
  "antsibull-changelog>=0.29,<1"
  "build>=1.2,<2"
  "twine>=6,<8"
  "check-wheel-contents>=0.6,<1"
)
# ansible-test sanity tests not run here, as `NAME  # reason`. None needs a container with
# --python: all 24 run. pslint (pwsh) and shellcheck have no .ps1/.sh in the collection to
# check; a shell script added to it would need Debian's shellcheck here, not a container.
SANITY_SKIPS=()
# Deadlines in seconds: a stalled index or a hung tool fails its step instead of hanging make.
T_VENV=900 T_BUILD=600 T_CHECK=120 T_SDIST_TESTS=900 T_GALAXY=300 T_IMPORTER=600 T_DOCS=300 T_SANITY=2400

# Nothing from the caller's Ansible setup: the validators see the built collection only.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS ANSIBLE_CONFIG ANSIBLE_ROLES_PATH
export ANSIBLE_NOCOLOR=1 NO_COLOR=1 PY_COLORS=0 PIP_DISABLE_PIP_VERSION_CHECK=1
export PATH="$BIN:$PATH"

# -- the steps (each runs in its own process, under its deadline) --------------------

validators_venv() {
  if [ -x "$BIN/python" ] && [ "$(cat "$VENV/.tools" 2>/dev/null)" = "${TOOLS[*]}" ]; then
    echo "up to date: ${TOOLS[*]}"
    return 0
  fi
  { [ -x "$BIN/python" ] || "$PYTHON" -m venv "$VENV"; } &&
    "$BIN/pip" install -q -U pip &&
    "$BIN/pip" install -q "${TOOLS[@]}" &&
    echo "${TOOLS[*]}" >"$VENV/.tools" &&
    echo "installed: ${TOOLS[*]}"
}

build_dists() {
  rm -rf "$DIST"
  # The wheel is built from the sdist: this also proves the sdist builds.
  python -m build --outdir "$DIST" "$ROOT"
}

# The sdist's own tests, from the unpacked sdist, against raptor installed from it.
sdist_tests() {
  local dir="$OUT/sdist" venv="$OUT/sdist-venv" sdist
  sdist="$(ls "$DIST"/raptor-*.tar.gz)" || return 1
  rm -rf "$dir" "$venv"
  mkdir -p "$dir"
  tar -xzf "$sdist" -C "$dir" &&
    "$PYTHON" -m venv "$venv" &&
    "$venv/bin/pip" install -q "$sdist[test]" &&
    cd "$dir"/raptor-* &&
    # Without the source copy of the package, the tests import the installed one.
    rm -rf raptor &&
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not integration"
}

build_collection() {
  [ -d "$COLLECTIONS" ] || return 1
  rm -rf "$COLL" "$COLLECTIONS/ansible_collections"
  HOME="$TOOL_HOME" ansible-galaxy collection build --output-path "$COLL" "$ROOT" &&
    HOME="$TOOL_HOME" ansible-galaxy collection install --offline -p "$COLLECTIONS" "$COLL"/*.tar.gz &&
    tarball_summary
}

tarball_summary() {
  local tarball
  tarball="$(ls "$COLL"/velociraptor-raptor-*.tar.gz)" || return 1
  echo "$(basename "$tarball"): $(stat -c %s "$tarball") bytes, $(tar -tzf "$tarball" | grep -vc '/$') files"
}

# galaxy-importer as Galaxy runs it, less its ansible-test in a container (that would pull
# an image): ansible-test sanity runs on this machine, below.
galaxy_importer() {
  local dir="$OUT/galaxy-importer"
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '%s\n' "[galaxy-importer]" "run_ansible_test = False" "run_ansible_doc = True" \
    "run_ansible_lint = True" "offline_ansible_lint = True" "check_changelog = True" \
    "ansible_local_tmp = $dir/tmp" >"$dir/galaxy-importer.cfg"
  (cd "$dir" && HOME="$TOOL_HOME" GALAXY_IMPORTER_CONFIG="$dir/galaxy-importer.cfg" \
    python -m galaxy_importer.main "$COLL"/velociraptor-raptor-*.tar.gz 2>&1 | tee "$dir/output.txt") || return 1
  # Clean: no warning or error, and each plugin found under its own name with its docs.
  python - "$dir/importer_result.json" "$dir/output.txt" <<'EOF'
import json, re, sys
result = json.load(open(sys.argv[1]))
problems = [line.strip() for line in open(sys.argv[2]) if re.match(r"(WARNING|ERROR)\b", line)]
docs = {(c["content_type"], c["content_name"]): c.get("doc_strings") or {} for c in result["docs_blob"]["contents"]}
plugins = [c for c in result["contents"] if c["content_type"] not in ("role", "playbook")]
for plugin in plugins:
    doc = docs.get((plugin["content_type"], plugin["name"]), {})
    if not all(doc.get(part) for part in ("doc", "examples", "return")):
        problems.append(f"{plugin['content_type']} {plugin['name']!r} has no DOCUMENTATION, EXAMPLES or RETURN")
if problems:
    sys.exit("galaxy-importer: " + "; ".join(problems))
found = ", ".join(f"{c['content_type']} {c['name']}" for c in result["contents"])
print(f"Importer processing completed successfully: {found}; every plugin documented")
EOF
}

lint_docs() {
  cd "$INSTALLED" &&
    HOME="$TOOL_HOME" ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS" antsibull-docs lint-collection-docs --plugin-docs . &&
    echo "antsibull-docs lint-collection-docs --plugin-docs: no problems"
}

# ansible-test bootstraps pip in each sanity virtualenv with get-pip.py, downloaded from
# a host outside PyPI and cached in ~/.ansible/test/cache, and it runs pip with
# PIP_CONFIG_FILE=/dev/null in a bare environment (no PIP_*, no proxy): with a private CA,
# a mirror or a proxy, nothing it installs can be fetched. Seed its cache with a stand-in
# that installs pip from the interpreter's own ensurepip, then the version asked for with
# this machine's pip settings, and leaves those settings in the virtualenv (a .pth) for
# ansible-test's later pip installs there.
seed_get_pip() {
  local version cache
  version="$(python -c 'import sys
from ansible_test._internal.host_configs import NativePythonConfig
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(NativePythonConfig(version=sys.argv[1], path="python"))["pip"])' "$PYVER")" || return 1
  cache="$TOOL_HOME/.ansible/test/cache"
  mkdir -p "$cache"
  python - "$cache/get_pip_${version//./_}.py" "$(pip config list 2>/dev/null)" <<'EOF'
import ast, os, sys
CARRIED = ("cert", "client-cert", "index-url", "extra-index-url", "find-links", "trusted-host",
           "proxy", "timeout", "default-timeout", "retries")
settings, from_env = {}, {}
for line in sys.argv[2].splitlines():
    key, sep, value = line.strip().partition("=")
    variant, _, name = key.rpartition(".")
    if sep and name in CARRIED:
        (from_env if variant == ":env:" else settings)[name] = ast.literal_eval(value)
settings.update(from_env)  # the environment overrides the files, as in pip
env = {"PIP_" + name.upper().replace("-", "_"): value for name, value in settings.items()}
for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
    if os.environ.get(name):
        env[name] = os.environ[name]
with open(sys.argv[1], "w") as script:
    script.write(f'''"""Stand-in for get-pip.py, written by scripts/validate.sh (see there)."""
import ensurepip, os, subprocess, sys, sysconfig

ENV = {env!r}
# ansible-test runs pip in this virtualenv again later, in the same bare environment.
with open(os.path.join(sysconfig.get_paths()["purelib"], "raptor_validate_pip.pth"), "w") as pth:
    pth.write("import os; [os.environ.setdefault(k, v) for k, v in %r.items()]\\n" % ENV)
for key, value in ENV.items():
    os.environ.setdefault(key, value)
ensurepip.bootstrap(default_pip=True)
# get-pip.py's own options, which pip does not know.
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
''')
print(f"seeded {sys.argv[1]} with {sorted(env)}")
EOF
}

sanity() {
  local skips=() test
  seed_get_pip || return 1
  for test in "${SANITY_SKIPS[@]}"; do skips+=(--skip-test "$test"); done
  cd "$INSTALLED" || return 1
  HOME="$TOOL_HOME" ansible-test sanity --python "$PYVER" --color no "${skips[@]}" 2>&1 | tee "$OUT/sanity.txt" ||
    return 1
  echo "ansible-test sanity --python $PYVER: $(grep -c '^Running sanity test' "$OUT/sanity.txt") tests passed" \
    "(or had nothing to check)${SANITY_SKIPS[*]:+, skipped: ${SANITY_SKIPS[*]}}"
}

changelog_lint() {
  # Fragments live in the checkout, not in the tarball.
  antsibull-changelog lint &&
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml &&
    echo "antsibull-changelog lint, lint-changelog-yaml: no problems"
}

# -- running them --------------------------------------------------------------------

if [ "${1:-}" = --run ]; then # one step, in its own process (see step)
  shift
  "$@"
  exit
fi

failed=()
# step NAME SECONDS FUNCTION: run it under its deadline with its output in a log, and say
# in one line how it went: its closing line (the log's last one), or the end of the log.
step() {
  local name="$1" limit="$2" log rc last
  shift 2
  log="$LOGS/${name// /-}.log"
  timeout --kill-after=30 "$limit" "$ROOT/scripts/validate.sh" --run "$@" >"$log" 2>&1
  rc=$?
  last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)"
  if [ "$rc" -eq 0 ]; then
    printf 'ok    %-26s %s\n' "$name" "$last"
  else
    [ "$rc" -eq 124 ] && last="timed out after $limit s; last line: $last"
    printf 'FAIL  %-26s exit %s: %s\n' "$name" "$rc" "$last"
    tail -n 30 "$log" | sed 's/^/      | /'
    printf '      (whole log: %s)\n' "${log#"$ROOT"/}"
    failed+=("$name")
  fi
  return "$rc"
}

mkdir -p "$LOGS" "$TOOL_HOME"
COLLECTIONS="$(mktemp -d "${TMPDIR:-/tmp}/raptor-validate.XXXXXX")" || exit 1
INSTALLED="$COLLECTIONS/ansible_collections/velociraptor/raptor"
export COLLECTIONS
trap 'rm -rf "$COLLECTIONS"' EXIT
step "validators' venv" "$T_VENV" validators_venv || {
  echo "validate: FAILED: no validators, nothing checked" >&2
  exit 1
}
PYVER="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
export PYVER

if step "python -m build" "$T_BUILD" build_dists; then
  step "twine check --strict" "$T_CHECK" twine --no-color check --strict "$DIST"/*
  step "check-wheel-contents" "$T_CHECK" check-wheel-contents "$DIST"/*.whl
  step "sdist's unit tests" "$T_SDIST_TESTS" sdist_tests
fi
if step "ansible-galaxy build" "$T_GALAXY" build_collection; then
  step "galaxy-importer" "$T_IMPORTER" galaxy_importer
  step "antsibull-docs lint" "$T_DOCS" lint_docs
  step "ansible-test sanity" "$T_SANITY" sanity
fi
step "antsibull-changelog lint" "$T_CHECK" changelog_lint

if [ "${#failed[@]}" -gt 0 ]; then
  echo "validate: FAILED: ${failed[*]} (logs in ${LOGS#"$ROOT"/})" >&2
  exit 1
fi
echo "validate: all validators passed (logs in ${LOGS#"$ROOT"/})"
