"""Unit and integration tests on every Python 3.9-3.13 this machine has.

`make test` runs the suite in its own virtualenv first; nox then repeats it on the
other interpreters it finds (on PATH or under pyenv), skipping the one it runs on.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False

VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def _find(version: str) -> str | None:
    found = shutil.which(f"python{version}")
    if found and os.access(found, os.X_OK) and "/shims/" not in found:
        return found
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    return candidates[-1] if candidates else None


FOUND = {v: p for v in VERSIONS if v != RUNNING and (p := _find(v))}
# nox looks interpreters up on PATH by name: put the ones found first.
os.environ["PATH"] = os.pathsep.join([*(os.path.dirname(p) for p in FOUND.values()), os.environ["PATH"]])


# With no other interpreter (a plain Debian 12 has only its python3.11), each session
# runs once without a virtualenv and says why it skips, instead of nox failing with
# "No sessions found".
NONE_FOUND = f"no Python 3.9-3.13 other than {RUNNING} on PATH or under pyenv: the .venv run is the only one"


@nox.session(python=sorted(FOUND) or False)
def tests(session: nox.Session) -> None:
    if not FOUND:
        session.skip(NONE_FOUND)
    session.install(".[test]")
    # The fleet-scale proofs (10 supervisords x 200 programs), the browser's tests and the
    # alerter's minutes with real receivers do not depend on the listener's interpreter:
    # `make pytest` runs them once.
    session.run("pytest", "-q", "-m", "not fleet_scale and not browser and not alerter", *session.posargs)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@nox.session(python=sorted(FOUND, key=_version)[:1] or [RUNNING])
def oldest_redis(session: nox.Session) -> None:
    """The floor of the dependency range: redis-py 5.0 on the oldest Python found
    (on this one when it is the only one)."""
    session.install(".[test]", "redis==5.0.*")
    session.run("pytest", "-q", "-m", "not fleet_scale and not browser and not alerter", *session.posargs)
