#!/usr/bin/env python3
"""Every test id `make test` runs, with the interpreters it runs on, against a baseline.

The runs are read from where they are defined, not restated here: the pytest commands
of `make -n pytest demo-test` (the .venv's Python), and the nox sessions that
`make -n pythons` names, with each one's interpreters and -m selection from noxfile.py's
SESSIONS. Each selection is collected (`pytest --collect-only -q`) with the .venv's
pytest: the ids and markers are the same on every interpreter.

    scripts/test_ids.py --baseline-venv B/ids_venv.txt --baseline-nox B/ids_nox.txt \\
        --baseline-demo B/ids_demo.txt [--markdown docs/test-ids.md]

Baseline files: one test id a line, as `pytest --collect-only -q` prints them; the nox
file's ids ran in each of --baseline-sessions. Exit 1 if a baseline id runs nowhere now,
or a test of the listener with real supervisords (portable and integration) does not
run on both the oldest and the newest Python.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
FLOOR = " (redis-py 5.0)"
BEFORE_SESSIONS = "3.9,3.10,3.12,3.13,3.9" + FLOOR
# pytest options that change how tests run, not which: left out of --collect-only.
RUN_OPTIONS_WITH_VALUE = {"-n", "--numprocesses", "--dist", "--basetemp", "--durations", "--junitxml", "--maxfail"}
RUN_FLAGS = {"-q", "-x", "-v", "-ra"}


def pytest_commands(make_output: str) -> List[List[str]]:
    """The arguments of each `pytest ...` command in `make -n` output."""
    commands = []
    for line in make_output.replace("\\\n", " ").splitlines():
        for match in re.finditer(r"(?:^|[;&|]\s*)pytest\s+(.*?)(?=\s*(?:\|\||&&|;|$))", line):
            commands.append(shlex.split(match.group(1)))
    return commands


def selection(args: Iterable[str]) -> List[str]:
    kept: List[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in RUN_OPTIONS_WITH_VALUE:
            skip = True
        elif arg in RUN_FLAGS or arg.split("=")[0] in RUN_OPTIONS_WITH_VALUE:
            continue
        else:
            kept.append(arg)
    return kept


def collect(python: str, args: List[str]) -> List[str]:
    command = [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    if done.returncode not in (0, 5):  # 5: nothing collected
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return [line for line in done.stdout.splitlines() if "::" in line]


def make_n(*targets: str) -> str:
    command = ["make", "-n", "--no-print-directory", *targets]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)  # noqa: S603
    return done.stdout


def nox_sessions(make_output: str) -> Tuple[List[str], List[str]]:
    """The sessions `nox -s A B C [-- posargs]` in `make -n pythons`, and the posargs."""
    for line in make_output.splitlines():
        words = shlex.split(line)
        if words[:2] == ["nox", "-s"]:
            rest = words[2:]
            cut = rest.index("--") if "--" in rest else len(rest)
            return rest[:cut], rest[cut + 1 :]
    raise SystemExit("make -n pythons runs no `nox -s ...`")


def load_noxfile() -> object:
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs_now(python: str) -> Tuple[Dict[str, Set[str]], List[str]]:
    """{test id: interpreters} for the runs of `make test` now, and the runs' descriptions."""
    version = [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    here = subprocess.run(version, capture_output=True, text=True, timeout=60, check=True).stdout.strip()  # noqa: S603
    where: Dict[str, Set[str]] = defaultdict(set)
    described = []
    for target in ("pytest", "demo-test"):
        for args in pytest_commands(make_n(target)):
            chosen = selection(args)
            ids = collect(python, chosen)
            described.append(f"`make {target}` ({here}, .venv): `pytest {shlex.join(chosen)}`: {len(ids)} tests")
            for test in ids:
                where[test].add(here)
    names, posargs = nox_sessions(make_n("pythons"))
    noxfile = load_noxfile()
    sessions = noxfile.SESSIONS  # type: ignore[attr-defined]
    for name in names:
        pythons, markers, extra = sessions[name]
        chosen = ["-m", markers, *posargs]
        ids = collect(python, chosen)
        suffix = FLOOR if any(e.startswith("redis==5.0") for e in extra) else ""
        for version in pythons:
            described.append(f"nox `{name}-{version}`{suffix}: `pytest {shlex.join(chosen)}`: {len(ids)} tests")
            for test in ids:
                where[test].add(version + suffix)
    return where, described


def read_ids(path: Path) -> List[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if "::" in line]


def order(label: str) -> Tuple[Tuple[int, ...], str]:
    version, _, rest = label.partition(" ")
    return tuple(int(p) for p in version.split(".")), rest


def labels(found: Iterable[str]) -> str:
    return ", ".join(sorted(found, key=order)) or "nowhere"


def grouped(tests: List[str], where: Dict[str, Set[str]]) -> str:
    """'3.9, 3.10 (12); 3.11 (3)': the interpreter sets of a module's tests, with counts."""
    counts: Dict[str, int] = defaultdict(int)
    for test in tests:
        counts[labels(where.get(test, set()))] += 1
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{key} ({n})" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-venv", type=Path, required=True)
    parser.add_argument("--baseline-nox", type=Path, required=True)
    parser.add_argument("--baseline-demo", type=Path, required=True)
    parser.add_argument("--baseline-venv-python", default="3.11")
    parser.add_argument("--baseline-sessions", default=BEFORE_SESSIONS, help="the nox file's interpreters, by comma")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="the .venv's python")
    parser.add_argument("--markdown", type=Path, help="write the comparison here")
    parser.add_argument("--command", default="", help="the command line, for the record in --markdown")
    parser.add_argument("--baseline-label", default="the baseline files", help="what the baseline is, for the record")
    options = parser.parse_args()

    before: Dict[str, Set[str]] = defaultdict(set)
    for test in read_ids(options.baseline_venv) + read_ids(options.baseline_demo):
        before[test].add(options.baseline_venv_python)
    for test in read_ids(options.baseline_nox):
        before[test].update(options.baseline_sessions.split(","))
    after, described = runs_now(options.python)

    existing = set(collect(options.python, []))  # every test in the tree, run or not
    gone = sorted(set(before) - set(after) - existing)  # renamed or removed in tests/ since the baseline
    lost = sorted(set(before) - set(after) - set(gone))  # still there, but in no run of make test
    added = sorted(set(after) - set(before))
    real = collect(options.python, ["-m", "portable and integration", "--ignore=tests/test_demo.py"])
    versions = sorted({label.split(" ")[0] for found in after.values() for label in found}, key=order)
    oldest, newest = versions[0], versions[-1]
    not_both = [t for t in real if not {oldest, newest} <= {label.split(" ")[0] for label in after.get(t, set())}]
    check = set(collect(options.python, ["-m", "check", "--ignore=tests/test_demo.py"]))

    modules: Dict[str, List[str]] = defaultdict(list)
    for test in sorted(set(before) | set(after)):
        if test in gone:
            continue
        modules[test.split("::")[0]].append(test)
    runs_before = sum(len(found) for found in before.values())
    runs_after = sum(len(found) for found in after.values())
    lines = [
        "# Test ids: where each one runs, before and after issue 24",
        "",
        f"Baseline: {options.baseline_label}.",
        "",
        "Made by `scripts/test_ids.py`, which reads the runs of `make test` from the Makefile",
        "(`make -n pytest demo-test pythons`) and noxfile.py, and collects each selection",
        "with `pytest --collect-only -q`. Before: the .venv suite (`pytest --ignore=tests/test_demo.py`),",
        "`make demo-test`, and five nox sessions (3.9, 3.10, 3.12, 3.13, redis-py 5.0 on 3.9) each running",
        '`-m "not fleet_scale and not browser and not alerter"` less test_demo, test_bench_smoke and',
        "test_doctor. Interpreter 3.11 is the .venv's. The baseline files are those runs' ids, collected at",
        "the baseline commit: `pytest --collect-only -q` with the .venv suite's arguments (ids_venv.txt),",
        "the nox sessions' (ids_nox.txt) and `tests/test_demo.py` (ids_demo.txt).",
        "",
        "```",
        options.command or "scripts/test_ids.py ...",
        "```",
        "",
        "Runs now:",
        "",
        *(f"- {d}" for d in described),
        "",
        f"Test runs in `make test`: {runs_before} before, {runs_after} after "
        f"({len(before)} ids before, {len(after)} after).",
        "",
        "| module | tests | before: interpreters | after: interpreters | in make check |",
        "| --- | --- | --- | --- | --- |",
    ]
    for module, tests in modules.items():
        in_check = sum(1 for t in tests if t in check)
        lines.append(
            f"| {module.removeprefix('tests/')} | {len(tests)} | {grouped(tests, before)} | {grouped(tests, after)} "
            f"| {in_check or ''} |"
        )
    lines += [
        "",
        f"- every test that ran still runs at least once: {'yes' if not lost else 'NO'}"
        + (f" ({len(lost)} lost: {', '.join(lost[:10])})" if lost else ""),
        *(
            [
                f"- baseline ids no longer in the tree (renamed or removed in tests/ by later commits, "
                f"left out of the table): {len(gone)} ({', '.join(sorted({t.split('::')[0] for t in gone}))})"
            ]
            if gone
            else []
        ),
        f"- listener real-supervisord tests (portable and integration, {len(real)}) on {oldest} and {newest}: "
        + ("yes" if real and not not_both else f"NO ({', '.join(not_both[:10])})"),
    ]
    if added:
        lines.append(f"- new since the baseline: {len(added)} ({', '.join(sorted({t.split('::')[0] for t in added}))})")
    text = "\n".join(lines) + "\n"
    if options.markdown:
        options.markdown.write_text(text, encoding="utf-8")
    print(text, end="")
    return 1 if lost or not real or not_both else 0


if __name__ == "__main__":
    sys.exit(main())
