#!/usr/bin/env bash
# Build the wheelhouses the role copies to hosts (air-gapped fleets; the tests):
#   build/wheelhouse      raptor (this checkout) and its dependencies, with its web and
#                         alert extras' (starlette, uvicorn; apprise, pyyaml; hiredis...),
#                         for Python 3.9-3.13 (Debian 12 has 3.11, Debian 13 has 3.13)
#   build/wheelhouse-old  raptor 3.0.0rc1 and redis-py, to test proc_publisher upgrades
#   build/wheelhouse-supervisor  supervisor from PyPI, for the molecule host whose
#                         supervisord is installed with pip (hosts cannot reach PyPI)
# Rebuilt when the package's sources are newer than the wheelhouse.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip under a deadline: a stalled index fails the build instead of hanging it.
PIP=(timeout 600 "${PIP:-.venv/bin/pip}")
# supervisor 4.3 is pure Python and needs nothing else (4.2 still wanted setuptools).
sup=build/wheelhouse-supervisor
if [ ! -f "$sup/.built" ]; then
  rm -rf "$sup"
  mkdir -p "$sup"
  "${PIP[@]}" download -q --only-binary=:all: --no-deps -d "$sup" "supervisor==4.3.0"
  touch "$sup/.built"
fi
out=build/wheelhouse
stamp="$out/.built"
if [ -f "$stamp" ] && [ -z "$(find raptor pyproject.toml scripts/wheelhouse.sh -newer "$stamp" -print -quit)" ]; then
  echo "wheelhouse: up to date"
  exit 0
fi
rm -rf build/wheelhouse build/wheelhouse-old build/old-src
mkdir -p "$out"
"${PIP[@]}" wheel -q --no-deps -w "$out" .
wheel=("$out"/raptor-*.whl)
# What raptor and its web and alert extras need (the proc_publisher role installs
# raptor, raptor_web raptor[web], raptor_alert raptor[alert]), for every Python a host
# may have: redis-py, the web stack and Apprise are pure Python; hiredis and PyYAML are
# compiled, one wheel per Python, for this machine's
# architecture (set RAPTOR_WHEELHOUSE_PLATFORMS, e.g. "manylinux2014_aarch64", for
# hosts of another one). The newest release each Python accepts: a host's pip picks it.
platforms=()
for platform in ${RAPTOR_WHEELHOUSE_PLATFORMS:-}; do platforms+=(--platform "$platform"); done
for py in 3.9 3.10 3.11 3.12 3.13; do
  "${PIP[@]}" download -q --only-binary=:all: --python-version "$py" "${platforms[@]}" -d "$out" \
    "${wheel[0]}[web,alert]"
  # pip evaluates markers for the interpreter it runs on, not for --python-version: add
  # what the stack needs only on some Pythons explicitly (anyio: exceptiongroup below
  # 3.11; typing_extensions below 3.13; Apprise's markdown: importlib-metadata below 3.10).
  "${PIP[@]}" download -q --only-binary=:all: --python-version "$py" "${platforms[@]}" -d "$out" \
    "exceptiongroup>=1.0.2" "typing_extensions>=4.10" "importlib-metadata>=4.4"
done
# ... and what redis-py needs on Python < 3.11.3.
"${PIP[@]}" download -q --only-binary=:all: --no-deps -d "$out" "async-timeout>=4.0.3"
# An older raptor, to prove upgrades.
mkdir -p build/old-src build/wheelhouse-old
cp -r raptor pyproject.toml README.md build/old-src/
sed -i 's/^__version__ = .*/__version__ = "3.0.0rc1"/' build/old-src/raptor/__init__.py
"${PIP[@]}" wheel -q --no-deps -w build/wheelhouse-old build/old-src
cp "$out"/redis-*.whl "$out"/async_timeout-*.whl build/wheelhouse-old/
rm -rf build/old-src
touch "$stamp"
ls "$out" build/wheelhouse-old
