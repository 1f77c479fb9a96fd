"""Property: raptor parses program names exactly as vr.common 6.1.1 does.

Velociraptor's hosts API parses supervisord's names with vr.common's
``Proc.parse_name``; raptor's messages carry raptor's parse. Any difference files
one process under two apps on the dashboard. vr.common cannot be a dependency of
the tests, so it is installed once into a venv of its own, cached under
``build/vr-common-venv/<interpreter>/``, built from this interpreter: ``int()``
differs between Python versions (Unicode digits), the comparison must not.
One oracle process answers every batch of names (a JSON line in, a JSON line out).

Without network the vr.common tests skip; ``RAPTOR_REQUIRE_VR_COMMON=1`` makes
that a failure instead.
"""

from __future__ import annotations

import configparser
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, NoReturn

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from supervisor.datatypes import process_or_group_name
from supervisor.options import UnhosedConfigParser

from harness import Collector, RedisServer, Supervisords, wait_for
from raptor.names import ProcName, parse_proc_name

VR_COMMON = "vr.common==6.1.1"
CACHE = Path(__file__).resolve().parents[1] / "build" / "vr-common-venv"
PIP_OPTIONS = ["-q", "--disable-pip-version-check", "--retries", "1", "--timeout", "20"]  # offline: fail fast
INSTALL_DEADLINE = 110.0  # seconds for venv + pip install (about 10 s here)

ORACLE = r"""
import json, sys
from importlib.metadata import version
from vr.common.models import Proc
print(json.dumps([sys.version, version("vr.common")]), flush=True)
for line in sys.stdin:
    print(json.dumps([Proc.parse_name(name) for name in json.loads(line)]), flush=True)
"""


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("RAPTOR_REQUIRE_VR_COMMON") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def vr_common_python() -> Path:
    """The python of a venv with vr.common, same interpreter as this one; built once."""
    venv = CACHE / f"{sys.implementation.name}-{platform.python_version()}"
    python = venv / "bin" / "python"
    marker = venv / f".{VR_COMMON}.installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + INSTALL_DEADLINE
    with open(CACHE / ".lock", "w") as lock:
        # Another session (another nox Python, say) may be building one: wait for it.
        wait_for(lambda: _try_lock(lock), INSTALL_DEADLINE, "the vr-common-venv lock", interval=0.5)
        if marker.exists() and python.exists():
            return python
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", *PIP_OPTIONS, VR_COMMON],
        ]
        for step in steps:
            try:
                subprocess.run(
                    step, capture_output=True, text=True, check=True, timeout=max(1.0, deadline - time.monotonic())
                )
            except subprocess.CalledProcessError as exc:
                unavailable(f"{VR_COMMON} could not be installed (no network?): {exc.stderr.strip()[-400:]}")
            except subprocess.TimeoutExpired:
                unavailable(f"{VR_COMMON} could not be installed within {INSTALL_DEADLINE:.0f} s (no network?)")
        marker.write_text(platform.python_version() + "\n", encoding="utf-8")
        return python


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class VrCommon:
    """vr.common's ``Proc.parse_name`` in a process of its own, one batch per line."""

    def __init__(self, python: Path) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (open as long as the oracle runs)
        args = [str(python)]
        if hasattr(sys, "get_int_max_str_digits"):  # int()'s length limit must be ours too
            args += ["-X", f"int_max_str_digits={sys.get_int_max_str_digits()}"]
        self.process = subprocess.Popen(
            [*args, "-c", ORACLE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        interpreter, version = self._read()
        assert interpreter == sys.version, "the oracle must run this very interpreter: int() differs between versions"
        assert version == VR_COMMON.split("==")[1]

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stderr.seek(0)
            raise AssertionError(f"vr.common oracle died: {self.stderr.read().decode(errors='replace')[-2000:]}")
        return json.loads(line)

    def parse(self, names: List[str]) -> List[Dict[str, Any]]:
        assert self.process.stdin is not None
        # ensure_ascii: lone surrogates and every other code point cross the pipe intact
        self.process.stdin.write(json.dumps(names) + "\n")
        self.process.stdin.flush()
        parsed: List[Dict[str, Any]] = self._read()
        return parsed

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.stderr.close()


@pytest.fixture(scope="module")
def vr_common() -> Iterator[VrCommon]:
    oracle = VrCommon(vr_common_python())
    yield oracle
    oracle.close()


def raptor_parse(name: str) -> Dict[str, Any]:
    parsed = parse_proc_name(name)._asdict()
    # Published as JSON: the port must be a plain int that survives it.
    assert type(parsed["port"]) is int
    assert json.loads(json.dumps(parsed["port"])) == parsed["port"]
    return parsed


def assert_same_as_vr_common(vr_common: VrCommon, names: List[str]) -> None:
    theirs = vr_common.parse(names)
    differences = [(name, mine, their) for name, their in zip(names, theirs) if (mine := raptor_parse(name)) != their]
    assert len(theirs) == len(names)
    assert differences == []


def supervisord_accepts(name: str) -> bool:
    """Whether supervisord loads ``[program:NAME]`` as a program named NAME.

    Its own config parser and name check: no space, ``:`` or ``/``, no ``]``, no
    surrounding whitespace, no whitespace followed by ``;`` or ``#`` (an inline
    comment), no line break (``\\r`` too: files are read with universal newlines).
    """
    if "\n" in name or "\r" in name:
        return False
    parser = UnhosedConfigParser()
    try:
        parser.read_string(f"[program:{name}]\ncommand=true\n")
        return parser.sections() == [f"program:{name}"] and process_or_group_name(name) == name
    except (configparser.Error, ValueError):
        return False


# What int() skips around a number: every str.isspace() character. Inside a name
# supervisord allows all but " " and line breaks.
WHITESPACE = [c for c in map(chr, range(0x3001)) if c.isspace() and c not in " \n\r"]
name_char = st.characters(exclude_categories=("Cs",), exclude_characters=" :/]\n\r")
part_char = st.characters(exclude_categories=("Cs",), exclude_characters=" :/]\n\r-")
# Every decimal digit int() knows here (Nd: ٣, \uff15, ...); sampled_from is much faster than characters().
digit = st.one_of(
    st.sampled_from("0123456789"), st.sampled_from([c for c in map(chr, range(0x110000)) if c.isdecimal()])
)
number = st.lists(st.text(digit, min_size=1, max_size=5), min_size=1, max_size=3).map("_".join)  # 5_001, ٣_٣
port = st.one_of(
    st.integers(0, 65535).map(str),
    st.tuples(st.sampled_from(["", *WHITESPACE]), st.sampled_from(["", "+", "-"]), number).map("".join),
    # almost numbers: 5__001, _5, 0x50, ², ½, Ⅻ, 5.0, 5e3, and whitespace after
    st.text(
        st.one_of(digit, st.sampled_from(["_", "+", "-", ".", "x", "e", "²", "½", "Ⅻ", *WHITESPACE]), part_char),
        max_size=8,
    ),
)
part = st.text(st.one_of(st.sampled_from("abz019_.+"), part_char), max_size=10)
six_part_name = st.tuples(part, part, part, part, part, port).map("-".join)
any_supervisor_name = st.one_of(
    st.text(st.one_of(st.sampled_from("-----+_5٣\uff15\t"), name_char), max_size=40),
    # fewer or more parts than six, ending like a port or not
    st.tuples(st.lists(part, max_size=8), port).map(lambda parts_port: "-".join([*parts_port[0], parts_port[1]])),
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(six_part_name.filter(supervisord_accepts), min_size=1, max_size=40))
@example(["app-v1-prod-abcd1234-web-+5000", "app-v1-prod-abcd1234-web-5_001", "app-v1-prod-abcd1234-web-\t5000"])
@example(
    [
        "a-b-c-d-e-\uff15\uff10\uff10\uff10",
        "a-b-c-d-e-٣",
        "a-b-c-d-e-05000",
        "a-b-c-d-e-\u00a05000",
        "a-b-c-d-e-\u30005",
    ]
)
@example(["a-b-c-d-e-5__001", "a-b-c-d-e-_5001", "a-b-c-d-e-5001_", "a-b-c-d-e-²", "a-b-c-d-e-½", "a-b-c-d-e-"])
@example(["a-b-c-d-e-" + "5" * 4300, "a-b-c-d-e-" + "5" * 4301, "a-b-c-d-e-٣" + "0" * 4300])
def test_six_part_names_parse_as_vr_common(vr_common: VrCommon, names: List[str]) -> None:
    assert_same_as_vr_common(vr_common, names)


@FAST
@given(st.lists(any_supervisor_name.filter(supervisord_accepts), min_size=1, max_size=40))
@example(["plain", "a-b-c-d-5", "a-b-c-d-e-f-7", "a-b-c-d-e--1", "-----", "------", "", "-----+0", "-----\u0660"])
def test_any_supervisor_name_parses_as_vr_common(vr_common: VrCommon, names: List[str]) -> None:
    assert_same_as_vr_common(vr_common, names)


@FAST
@given(st.lists(st.text(max_size=40), min_size=1, max_size=40))
@example(["a-b-c-d-e- 5000", "a-b-c-d-e-5000 ", "a-b-c-d-e-\n5\n", "a-b-c-d-e-\ud8005"])
def test_any_string_at_all_parses_as_vr_common(vr_common: VrCommon, names: List[str]) -> None:
    """Beyond supervisord's names: a name expanded from %(ENV_X)s escapes its check."""
    assert_same_as_vr_common(vr_common, names)


ODD_NAMES = [
    "app-v1-prod-abcd1234-web-+5000",
    "app-v1-prod-abcd1234-web-5_001",
    "app-v1-prod-abcd1234-web-\uff15\uff10\uff10\uff12",  # fullwidth
    "app-v1-prod-abcd1234-web-٣",
    "app-v1-prod-abcd1234-web-\t5004",
    "app-v1-prod-abcd1234-web-05005",
    "app-v1-prod-abcd1234-web-5__006",
    "app-v1-prod-abcd1234-web-²",
]


@pytest.mark.integration
def test_supervisord_names_are_published_as_vr_common_parses_them(
    vr_common: VrCommon, redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    """The dashboard's two sources agree: vr.common on getAllProcessInfo() and raptor's messages."""
    assert all(map(supervisord_accepts, ODD_NAMES))
    sup = start_supervisord(ODD_NAMES, redis_server.url, hostname="odd")
    wait_for(sup.programs_running, 30, "the oddly named programs to run")
    names = sorted(sup.truth())  # as the hosts API sees them (the listener too)
    assert set(names) >= set(ODD_NAMES)
    expected = dict(zip(names, vr_common.parse(names)))
    wait_for(lambda: {m.get("name") for m in collector.snapshot()} >= set(ODD_NAMES), 30, "a message for every name")
    for message in collector.snapshot():
        if message.get("name") in expected:
            assert {k: message[k] for k in ProcName._fields} == expected[message["name"]], message["name"]
    # the two examples: one app, as the hosts API files them
    assert expected[ODD_NAMES[0]]["app_name"] == expected[ODD_NAMES[1]]["app_name"] == "app"
