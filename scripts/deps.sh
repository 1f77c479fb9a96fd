#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not installed yet,
# each one explicitly (never through "recommends": a fresh machine has none of them),
# then check that every one is really there. Skips apt entirely when nothing is missing.
#   scripts/deps.sh redis-server podman ...
set -euo pipefail
APT_GET=(apt-get -y -qq -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for package in "$@"; do
  installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "Debian packages: all ${#} present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "Debian packages missing: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Debian packages: installing ${missing[*]}"
# A bounded wait for the dpkg lock (another apt run, unattended-upgrades) rather
# than failing at once or waiting forever.
timeout 600 "${APT_GET[@]}" -o DPkg::Lock::Timeout=120 update
timeout 900 "${APT_GET[@]}" -o DPkg::Lock::Timeout=120 install --no-install-recommends "${missing[@]}"
for package in "${missing[@]}"; do
  installed "$package" || { echo "Debian package $package did not install: see the apt output above" >&2; exit 1; }
done
