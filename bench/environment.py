"""What the benchmarks stand on: the listener's virtualenvs, the machine, small measures.

Nothing here starts a scenario. ``listener_venv`` builds the virtualenv of the
listener under test from this checkout, ``baseline_venv`` the same from another git
ref (exported with ``git archive``, never imported: only its ``proc_publisher``
console script runs).
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from raptor.publisher.listener import buffer_size_for

ROOT = Path(__file__).resolve().parents[1]
HOST = "benchhost"
LARGE = 1000  # programs of the large host's RSS figure (100 in --quick)


def role_buffer_size(programs: int) -> int:
    """What the role templates when proc_publisher_buffer_size is 0 (roles/proc_publisher/vars)."""
    return buffer_size_for(programs)


def _venv_with(venv: Path, packages: List[str]) -> Path:
    """A virtualenv like the role makes on a host: raptor and redis-py, nothing else."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheels = str(ROOT / "build" / "wheelhouse")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", wheels, *packages],
        check=True,
        timeout=300,
    )
    return venv / "bin" / "proc_publisher"


def listener_venv(workdir: Path, redis_spec: str) -> Path:
    """The working tree's listener, from the wheelhouse (rebuilt when raptor/ changed)."""
    subprocess.run(["scripts/wheelhouse.sh"], cwd=ROOT, check=True, capture_output=True, timeout=900)
    return _venv_with(workdir / "listener-venv", ["raptor", *([redis_spec] if redis_spec else [])])


def git(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def export_tree(ref: str, destination: Path, timeout: float = 300) -> str:
    """``git archive REF | tar -x`` into *destination*; returns the commit's full hash."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    destination.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    try:
        subprocess.run(["tar", "-x", "-C", str(destination)], stdin=archive.stdout, check=True, timeout=timeout)
        archive.stdout.close()  # so that git sees a broken pipe, not a reader, if tar stopped early
        if archive.wait(timeout) != 0:
            raise SystemExit(f"git archive {ref} failed")
    finally:
        if archive.poll() is None:
            archive.kill()
            archive.wait(10)
    return commit


def baseline_venv(workdir: Path, ref: str, redis_spec: str) -> Dict[str, Any]:
    """The listener of git ref *ref*, in its own virtualenv.

    The wheel is built with this venv's hatchling and no build isolation (the
    wheelhouse is offline, and the ref may lay its package out differently: only its
    console script is used). Returns the script and what was built."""
    source = workdir / "baseline-src"
    commit = export_tree(ref, source)
    wheels = workdir / "baseline-wheel"
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, timeout=600)
    wheel = next(wheels.glob("raptor-*.whl"))
    script = _venv_with(workdir / "baseline-venv", [str(wheel), *([redis_spec] if redis_spec else [])])
    if not script.exists():
        raise SystemExit(f"{ref} ({commit[:10]}) installs no proc_publisher script")
    return {"ref": ref, "commit": commit, "wheel": wheel.name, "script": script}


def working_tree() -> Dict[str, Any]:
    """Which code 'the working tree' was: HEAD and whether it had uncommitted changes."""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def short(figures: Dict[str, Any]) -> Dict[str, Any]:
    """Figures without their time series, for the log."""
    return {k: v for k, v in figures.items() if not k.endswith("series")}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 2)
    return 0.0


def median(values: List[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return None  # any run that did not converge makes the figure "did not"
    return round(statistics.median(known), 4)


def raise_open_files_limit(wanted: int = 16384) -> None:
    """supervisord keeps about 5 descriptors per program: 1,000 programs exceed a 1024 soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def machine() -> Dict[str, Any]:
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip(),
        "supervisor": __import__("supervisor.options").options.VERSION,
    }
