#!/usr/bin/env bash
# Build the local base images the molecule scenarios and the demo run on:
# localhost/raptor-debian:12 (bookworm) and :13 (trixie). No registry is reachable,
# so they are made with debootstrap and imported. Skips images that exist.
set -euo pipefail
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/molecule/containers.conf}"
PACKAGES="python3,python3-venv,python3-apt,procps,ca-certificates"

build() {
  local tag="$1" suite="$2"
  if podman image exists "localhost/raptor-debian:$tag"; then
    echo "image localhost/raptor-debian:$tag: present"
    return
  fi
  local root
  root="$(mktemp -d /var/tmp/raptor-rootfs.XXXXXX)"
  trap 'rm -rf "$root"' RETURN
  echo "image localhost/raptor-debian:$tag: debootstrap $suite (about a minute)"
  # Deadlines: a stalled mirror must fail the build, not hang it.
  timeout 900 debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$root" >"$root.log" 2>&1 \
    || { tail -20 "$root.log"; echo "image localhost/raptor-debian:$tag: debootstrap $suite failed or took over 900 s" >&2; exit 1; }
  rm -f "$root.log"
  # Containers have no init: keep package scripts from trying to start services.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  tar -C "$root" -c . | timeout 300 podman import --quiet --change 'CMD ["sleep", "infinity"]' - "localhost/raptor-debian:$tag" >/dev/null
  echo "image localhost/raptor-debian:$tag: built"
}

build 12 bookworm
build 13 trixie
