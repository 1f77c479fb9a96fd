#!/usr/bin/env bash
# nginx for the test that puts raptor web behind a reverse proxy under a path prefix:
# Debian's nginx binary package, unpacked into build/nginx rather than installed, so that
# no nginx service starts on this machine's port 80 (the package's own postinst would
# start one). Its libraries (libssl3, libpcre2, zlib) are already there with
# redis-server. Skipped when build/nginx/usr/sbin/nginx already runs.
#   scripts/nginx.sh [DIR]
set -euo pipefail
dir="${1:-build/nginx}"
binary="$dir/usr/sbin/nginx"
if [ -x "$binary" ] && timeout 10 "$binary" -v >/dev/null 2>&1; then
  echo "nginx: $binary present"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# (apt warns that its _apt user cannot write to a private directory and downloads as
# root: said only when the download fails)
download() { (cd "$work" && timeout 300 apt-get download -q nginx >apt.log 2>&1) || { cat "$work/apt.log" >&2; return 1; }; }
if ! download; then
  # No package lists yet (a fresh image): fetch them, with a bounded wait for the lock.
  timeout 600 apt-get -qq -o DPkg::Lock::Timeout=120 update
  download
fi
rm -rf "$dir"
mkdir -p "$dir"
dpkg-deb -x "$work"/nginx_*.deb "$dir"
if ! timeout 10 "$binary" -v >/dev/null 2>&1; then
  echo "nginx: $binary does not run; its missing libraries:" >&2
  ldd "$binary" | grep "not found" >&2 || true
  exit 1
fi
echo "nginx: unpacked $("$binary" -v 2>&1 | sed 's/.*: //') into $dir"
