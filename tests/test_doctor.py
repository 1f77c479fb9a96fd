"""`make doctor`: says in seconds whether this machine can run the demo and the tests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCTOR = ROOT / "scripts" / "doctor.sh"
PACKAGES = [
    "redis-server",
    "podman",
    "runc",
    "debootstrap",
    "golang-github-containernetworking-plugin-dnsname",
    "chromium",
]
pytestmark = pytest.mark.integration


def doctor(*packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOCTOR), *packages], capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ)
    )


def test_doctor_passes_on_this_machine_in_seconds() -> None:
    started = time.monotonic()
    result = doctor(*PACKAGES)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    # The check that a fresh machine failed: containers resolving each other by name.
    assert any(line.startswith("ok    containers reach each other by name") for line in lines), result.stdout
    assert lines[-1] == "doctor: this machine can run make demo and make test"
    assert elapsed < 60, f"doctor took {elapsed:.0f} s"


def test_a_failed_check_names_what_to_do() -> None:
    result = doctor("redis-server", "raptor-no-such-package")
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == ["FAIL  Debian packages missing: raptor-no-such-package -> run: make deps"]
