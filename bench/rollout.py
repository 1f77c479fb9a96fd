"""The roll-out's cost: the listener's first roll-out on N fresh containers, then the same
playbook again with nothing to change, for N = 1, 3 and 8, with this checkout's collection
and a baseline commit's, side by side in one run.

    .venv/bin/python -m bench.rollout --baseline REF [--sizes 1 3 8] [--out bench/results]

The hosts are podman containers of localhost/raptor-debian:12 (make images) with Debian's
supervisor installed (an image made once, localhost/raptor-bench-supervisor:12) and
supervisord running; the controller is this machine, the connection containers.podman's
(podman exec, no pipelining: it has none), Ansible's default 5 forks. The playbook is the
same for both sides: gather facts, then the proc_publisher role with the project's
wheelhouse (build/wheelhouse, make wheelhouse). No Redis is needed to install: the URL
names a host that does not exist, and the listener retries calmly.

Module calls are counted from the connection itself: every `podman exec` that runs an
AnsiballZ payload in a host is one module call there (a podman wrapper logs each call).
Sizes alternate which side goes first, so a change of the machine's load weighs on both.

Writes rollout.json, rollout.md and rollout.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.environment import machine

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
WORK = ROOT / "build" / "bench-rollout"
BASE_IMAGE = "localhost/raptor-debian:12"
IMAGE = "localhost/raptor-bench-supervisor:12"
PREFIX = "raptor-bench-rollout"
PLAYBOOK = """---
- name: Roll the listener out
  hosts: all
  gather_facts: true
  roles:
    - role: velociraptor.raptor.proc_publisher
"""


def run(argv: List[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A command under a deadline; its output in the error when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except subprocess.TimeoutExpired as expired:
        raise SystemExit(f"bench.rollout: gave up after {timeout} s waiting for {' '.join(argv[:4])}") from expired
    if done.returncode != 0:
        failures = "\n".join(line[:2000] for line in done.stdout.splitlines() if line.startswith(("fatal:", "failed:")))
        raise SystemExit(
            f"bench.rollout: {' '.join(argv[:4])} failed ({done.returncode}):\n{failures}\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def podman(*args: str, timeout: float = 120) -> str:
    return run(["podman", *args], timeout).stdout


def supervisor_image() -> None:
    """Debian 12 with its supervisor package, made once (apt inside the container)."""
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode == 0:
        return
    name = f"{PREFIX}-image"
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)
    podman("run", "-d", "--name", name, BASE_IMAGE, "sleep", "infinity")
    try:
        podman(
            "exec",
            name,
            "sh",
            "-c",
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends supervisor",
            timeout=600,
        )
        podman(
            "commit",
            "--change",
            'CMD ["/usr/bin/supervisord", "-n", "-c", "/etc/supervisor/supervisord.conf"]',
            name,
            IMAGE,
            timeout=300,
        )
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)


def collection(side: str, source: Path) -> Path:
    """A collections path whose velociraptor.raptor is `source`."""
    path = WORK / f"collections-{side}"
    link = path / "ansible_collections" / "velociraptor" / "raptor"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source)
    return path


def baseline_tree(ref: str) -> Path:
    tree = WORK / "baseline"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True, timeout=120)
    return tree


def start_hosts(names: List[str]) -> None:
    for name in names:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)
        podman("run", "-d", "--name", name, "--hostname", f"{name}.bench.test", IMAGE)
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            probe = subprocess.run(
                ["podman", "exec", name, "supervisorctl", "pid"], capture_output=True, text=True, check=False
            )
            if probe.returncode == 0 and probe.stdout.strip().isdigit():
                break
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"bench.rollout: gave up after 60 s waiting for supervisord in {name}: {probe.stdout}{probe.stderr}"
                )
            time.sleep(0.5)


def stop_hosts(names: List[str]) -> None:
    if names:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *names], capture_output=True, check=False, timeout=300)


def playbook_run(side: str, collections: Path, names: List[str], label: str) -> Dict[str, Any]:
    """One ansible-playbook run: wall seconds, module calls per host, the recap's changed counts."""
    directory = WORK / f"run-{side}"
    directory.mkdir(parents=True, exist_ok=True)
    inventory = directory / "inventory.yml"
    hosts = {
        name: {
            "ansible_connection": "containers.podman.podman",
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        for name in names
    }
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": hosts,
                    "vars": {
                        "proc_publisher_redis_url": "redis://bench-redis.invalid:6379/0",
                        "proc_publisher_wheelhouse": str(ROOT / "build" / "wheelhouse"),
                    },
                }
            }
        ),
        encoding="utf-8",
    )
    (directory / "site.yml").write_text(PLAYBOOK, encoding="utf-8")
    log = directory / f"podman-{label}.log"
    log.unlink(missing_ok=True)
    wrapper = WORK / "podman-logged"
    # Each call of the connection's podman, one line, then the real podman.
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "$RAPTOR_BENCH_PODMAN_LOG"\nexec {shutil.which("podman")} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_PODMAN_EXECUTABLE": str(wrapper),
        "RAPTOR_BENCH_PODMAN_LOG": str(log),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_LOCAL_TEMP": str(directory / "tmp"),
        "HOME": str(directory),
    }
    start = time.monotonic()
    done = run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(directory / "site.yml")], 1800, env=env, cwd=directory
    )
    seconds = time.monotonic() - start
    # A module call: the exec that runs its AnsiballZ payload with Python (the mkdir, the
    # chmod and the rm around it, and the podman cp of the payload, are its round trips).
    calls = {name: 0 for name in names}
    trips = {name: 0 for name in names}
    for line in log.read_text(encoding="utf-8").splitlines():
        words = line.split()
        host = next((name for name in names if name in words), None)
        if host is None or words[0] not in ("exec", "cp"):
            continue
        trips[host] += 1
        if words[0] == "exec" and re.search(r" -c \S*python\S* \S*/AnsiballZ_\w+\.py", line):
            calls[host] += 1
    changed = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout, re.M)
    }
    return {"seconds": round(seconds, 1), "calls": calls, "trips": trips, "changed": changed}


def measure(sides: Dict[str, Path], sizes: List[int]) -> List[Dict[str, Any]]:
    rows = []
    for index, size in enumerate(sizes):
        order = list(sides) if index % 2 == 0 else list(reversed(list(sides)))
        for side in order:
            names = [f"{PREFIX}-{side}-{i}" for i in range(size)]
            start_hosts(names)
            try:
                first = playbook_run(side, sides[side], names, f"{size}-first")
                again = playbook_run(side, sides[side], names, f"{size}-again")
            finally:
                stop_hosts(names)
            row = {
                "side": side,
                "hosts": size,
                "first_s": first["seconds"],
                "again_s": again["seconds"],
                "first_calls_per_host": max(first["calls"].values()),
                "again_calls_per_host": max(again["calls"].values()),
                "first_podman_per_host": max(first["trips"].values()),
                "again_podman_per_host": max(again["trips"].values()),
                "again_changed": sum(again["changed"].values()),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def report(rows: List[Dict[str, Any]], baseline: str, out: Path, seconds: float, earlier: int = 0) -> None:
    sides = list(dict.fromkeys(r["side"] for r in rows))
    host = machine()
    lines = [
        "# Roll-out benchmark",
        "",
        f"`python -m bench.rollout --baseline {baseline}` on {host['cpus']} CPUs ({host['cpu']}), "
        f"{host['memory_gb']} GB, {host['date']}, "
        f"{seconds:.0f} s in all.",
        "",
        "The proc_publisher role on N fresh podman containers (Debian 12, its supervisor running), then the same "
        "playbook again with nothing to change. `baseline` is the collection at "
        f"`{baseline}`, `current` this checkout's. Module calls: `podman exec` runs of an AnsiballZ payload in the "
        "host (the most of any host), counted by a wrapper around podman; podman calls: every `podman exec` and "
        "`podman cp` into the host (a module call costs four or five: mkdir, copy, chmod, run, rm).",
        "",
        *(
            [
                f"The first {earlier} rows are an earlier run's of the same command on the same machine "
                "(`--rows-from`); the others, and the time above, this run's.",
                "",
            ]
            if earlier
            else []
        ),
        "| hosts | side | first roll-out (s) | module calls (podman calls) per host | re-run (s) "
        "| module calls (podman calls) per host | changed on re-run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in sorted(rows, key=lambda r: (r["hosts"], sides.index(r["side"]))):
        lines.append(
            f"| {row['hosts']} | {row['side']} | {row['first_s']} | {row['first_calls_per_host']} "
            f"({row['first_podman_per_host']}) | {row['again_s']} | {row['again_calls_per_host']} "
            f"({row['again_podman_per_host']}) | {row['again_changed']} |"
        )
    lines += [
        "",
        "How to read it: lower is better everywhere. The re-run is what a playbook run costs on a fleet where nothing "
        "changed (target: at most 10 module calls per host, `changed=0`). The first roll-out includes pip installing "
        "raptor and redis-py into a new virtualenv in each host. One run of each: on this shared 2-core VM a timing "
        "moves by tens of percent; the call counts are exact.",
        "",
        "![rollout](rollout.png)",
        "",
    ]
    (out / "rollout.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "rollout.json").write_text(
        json.dumps({"baseline": baseline, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = sorted({r["hosts"] for r in rows})
    width = 0.8 / len(sides)
    for axis, key, title in ((axes[0], "first_s", "first roll-out"), (axes[1], "again_s", "re-run, nothing to change")):
        for i, side in enumerate(sides):
            values = [next(r[key] for r in rows if r["side"] == side and r["hosts"] == n) for n in sizes]
            axis.bar([x + i * width for x in range(len(sizes))], values, width, label=side)
        axis.set_xticks([x + width * (len(sides) - 1) / 2 for x in range(len(sizes))], [f"{n} hosts" for n in sizes])
        axis.set_ylabel("seconds")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out / "rollout.png", dpi=100)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", required=True, help="git ref of the baseline collection, e.g. main before a change"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--rows-from",
        type=Path,
        help="JSON lines of rows an earlier run printed (other sizes), reported with this run's",
    )
    args = parser.parse_args(argv)
    if not (ROOT / "build" / "wheelhouse" / ".built").exists():
        raise SystemExit("bench.rollout: build/wheelhouse is missing: run make wheelhouse")
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "molecule" / "containers.conf"))
    WORK.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    supervisor_image()
    sides = {"baseline": collection("baseline", baseline_tree(args.baseline)), "current": collection("current", ROOT)}
    earlier = [json.loads(line) for line in args.rows_from.read_text().splitlines()] if args.rows_from else []
    rows = earlier + measure(sides, args.sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    report(rows, args.baseline, args.out, time.monotonic() - start, len(earlier))
    print((args.out / "rollout.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
