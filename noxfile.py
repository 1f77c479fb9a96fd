"""The tests that differ by interpreter, on the other Python 3.9-3.13 this machine has.

The listener (raptor/publisher, with the name parsing, config and packaging it ships
with) runs on the hosts' own Pythons, 3.9 to 3.13: its tests (the ``portable`` tier of
tests/conftest.py) run here on each. The consumers (raptor/consumer, raptor/web,
raptor/alert) run centrally on one Python: `make pytest` runs their tests once, in the
.venv, with everything else.

- ``oldest``: the portable tests, real supervisords included, on the oldest Python
  found, with redis-py's floor (5.0): the listener's oldest host and oldest client
  together. With no other interpreter, on this one. The consumers' in-process tests
  against Redis (``redis_floor``) run here too: they share the range ``redis>=5.0``.
- ``newest``: the portable tests, real supervisords included, on the newest Python
  found, with the current redis-py.
- ``between``: the interpreters in between (3.10, 3.12 beside a 3.11 .venv): the
  portable tests that start no supervisord (unit and in-process), where a difference
  of interpreter shows; the real processes on them would prove the same again.

The .venv's own interpreter is left out: `make pytest` runs everything on it.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from typing import Dict, List, Tuple

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


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


FOUND = {v: p for v in VERSIONS if v != RUNNING and (p := _find(v))}
# nox looks interpreters up on PATH by name: put the ones found first.
os.environ["PATH"] = os.pathsep.join([*(os.path.dirname(p) for p in FOUND.values()), os.environ["PATH"]])

# The oldest of all (this one included: redis-py's floor runs somewhere, even on a
# machine with a single Python), the newest other than this one, and the rest.
OLDEST = min([RUNNING, *FOUND], key=_version)
_OTHERS = sorted((v for v in FOUND if v != OLDEST), key=_version)
NEWEST = [_OTHERS[-1]] if _OTHERS and _version(_OTHERS[-1]) > _version(RUNNING) else []
BETWEEN = [v for v in _OTHERS if v not in NEWEST]

# Each session's selection, read by scripts/test_ids.py too (the record in docs/test-ids.md).
PORTABLE = "portable"
PORTABLE_UNIT = "portable and not integration"
REDIS_FLOOR = "redis==5.0.*"
SESSIONS: Dict[str, Tuple[List[str], str, Tuple[str, ...]]] = {
    # name: (pythons, -m expression, extra packages)
    "oldest": ([OLDEST], f"{PORTABLE} or redis_floor", (REDIS_FLOOR,)),
    "newest": (NEWEST, PORTABLE, ()),
    "between": (BETWEEN, PORTABLE_UNIT, ()),
}


def _run(session: nox.Session, name: str) -> None:
    _, markers, extra = SESSIONS[name]
    session.install(".[test]", *extra)
    session.run("pytest", "-q", "-m", markers, *session.posargs)


# A session with no interpreter to run on runs once without a virtualenv and says why
# it skips, instead of nox failing with "No sessions found".
def _none(what: str) -> str:
    return f"{what}: none on PATH or under pyenv (the .venv run covers {RUNNING})"


@nox.session(python=[OLDEST])
def oldest(session: nox.Session) -> None:
    """The portable tests on the oldest Python, with redis-py 5.0."""
    _run(session, "oldest")


@nox.session(python=NEWEST or False)
def newest(session: nox.Session) -> None:
    """The portable tests on the newest Python, with the current redis-py."""
    if not NEWEST:
        session.skip(_none("a Python newer than this one"))
    _run(session, "newest")


@nox.session(python=BETWEEN or False)
def between(session: nox.Session) -> None:
    """The portable unit and in-process tests on the Pythons in between."""
    if not BETWEEN:
        session.skip(_none("a Python between the oldest and the newest"))
    _run(session, "between")
