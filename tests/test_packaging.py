"""What the artifacts carry: `proc_publisher --version/--help`, the sdist, the wheel, the collection tarball.

The ecosystem's own validators (ansible-test sanity, galaxy-importer, antsibull-docs,
twine, check-wheel-contents) run in scripts/validate.sh; these are the cheap checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Set

import pytest

from harness import BIN
from raptor import __version__

ROOT = Path(__file__).parents[1]
PROC_PUBLISHER = BIN / "proc_publisher"
# What a non-integration test reads besides raptor/ and tests/: the sdist must carry it.
READ_BY_TESTS = [
    "plugins/filter/supervisor_env_value.py",
    "plugins/filter/wheel_bundle.py",
    "roles/common/tasks/install.yml",
    "roles/common/tasks/preflight.yml",
    "roles/common/vars/main.yml",
    "roles/common/vars/Debian.yml",
    "roles/common/vars/RedHat.yml",
    "roles/proc_publisher/tasks/install.yml",
    "roles/proc_publisher/defaults/main.yml",
    "roles/proc_publisher/meta/argument_specs.yml",
    "roles/proc_publisher/templates/proc_publisher.conf.j2",
    "roles/proc_publisher/vars/main.yml",
    "roles/proc_publisher/handlers/main.yml",
    "roles/proc_publisher/tasks/preflight.yml",
    "roles/raptor_web/defaults/main.yml",
    "roles/raptor_web/handlers/main.yml",
    "roles/raptor_web/meta/argument_specs.yml",
    "roles/raptor_web/tasks/configure.yml",
    "roles/raptor_web/tasks/preflight.yml",
    "roles/raptor_web/tasks/install.yml",
    "roles/raptor_web/templates/raptor_web.conf.j2",
    "roles/raptor_web/vars/main.yml",
    "roles/raptor_alert/defaults/main.yml",
    "roles/raptor_alert/handlers/main.yml",
    "roles/raptor_alert/meta/argument_specs.yml",
    "roles/raptor_alert/tasks/configure.yml",
    "roles/raptor_alert/tasks/preflight.yml",
    "roles/raptor_alert/tasks/install.yml",
    "roles/raptor_alert/templates/raptor_alert.conf.j2",
    "roles/raptor_alert/vars/main.yml",
]
COLLECTION_TOP_LEVEL = {
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "changelogs",
    "meta",
    "playbooks",
    "plugins",
    "roles",
}


def run_by_hand(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env: Dict[str, str] = {
        k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISOR_", "REDIS_", "RAPTOR_"))
    }
    env.update(extra_env)
    return subprocess.run(
        [str(PROC_PUBLISHER), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_version_and_help_answer_on_stdout_when_run_by_hand() -> None:
    version = run_by_hand("--version")
    assert (version.returncode, version.stdout, version.stderr) == (0, f"proc_publisher (raptor) {__version__}\n", "")
    usage = run_by_hand("--help")
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: proc_publisher"), usage.stdout
    for variable in ("REDIS_URL", "HOSTNAME", "RAPTOR_CHANNEL", "RAPTOR_SNAPSHOT_TTL", "SUPERVISOR_SERVER_URL"):
        assert variable in usage.stdout, variable


def test_a_wrong_argument_or_none_is_a_usage_error_on_stderr() -> None:
    wrong = run_by_hand("--verbose")
    assert wrong.returncode == 2
    assert wrong.stdout == ""
    assert "unrecognized arguments: --verbose" in wrong.stderr
    bare = run_by_hand()
    assert bare.returncode == 2
    assert bare.stdout == ""
    assert bare.stderr.startswith("proc_publisher: "), bare.stderr  # the configuration error, as before


def test_under_supervisord_arguments_are_not_read_and_stdout_stays_silent() -> None:
    # supervisord sets SUPERVISOR_ENABLED=1: stdout is the protocol, so --version must not
    # print there; the configuration error (no REDIS_URL) goes to stderr, as before.
    result = run_by_hand("--version", SUPERVISOR_ENABLED="1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "REDIS_URL" in result.stderr


def in_checkout() -> bool:
    return (ROOT / "galaxy.yml").is_file() and (ROOT / "pyproject.toml").is_file()


@pytest.fixture(scope="module")
def sdist_and_wheel(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, List[str]]:
    if not in_checkout():
        pytest.skip("not a checkout (galaxy.yml is not here): nothing to build from")
    hatchling_sdist = pytest.importorskip("hatchling.builders.sdist", reason="hatchling (the dev extra) builds it")
    hatchling_wheel = pytest.importorskip("hatchling.builders.wheel", reason="hatchling (the dev extra) builds it")
    out = tmp_path_factory.mktemp("dist")
    sdist = Path(next(hatchling_sdist.SdistBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])))
    wheel = Path(next(hatchling_wheel.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])))
    with tarfile.open(sdist) as tar:
        sdist_names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
    with zipfile.ZipFile(wheel) as zf:
        wheel_names = zf.namelist()
    return {"sdist": sdist_names, "wheel": wheel_names}


def test_the_sdist_carries_what_its_tests_read_and_one_readme(sdist_and_wheel: Dict[str, List[str]]) -> None:
    names = set(sdist_and_wheel["sdist"])
    assert {
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "pyproject.toml",
        "raptor/__init__.py",
        "tests/conftest.py",
        "harness/__init__.py",  # what the tests' fixtures are made of
    } <= names
    assert set(READ_BY_TESTS) <= names, set(READ_BY_TESTS) - names
    # An unanchored include of README.md pulls in the role's and bench/results' too.
    assert [name for name in names if name.endswith("README.md")] == ["README.md"]
    assert not [name for name in names if name.startswith(("bench/", "demo/", "molecule/", "scripts/", "build/"))]


def test_the_wheel_is_the_package_and_its_license(sdist_and_wheel: Dict[str, List[str]]) -> None:
    top: Set[str] = {name.split("/", 1)[0] for name in sdist_and_wheel["wheel"]}
    assert top == {"raptor", f"raptor-{__version__}.dist-info"}
    assert f"raptor-{__version__}.dist-info/licenses/LICENSE" in sdist_and_wheel["wheel"]
    assert "raptor/py.typed" in sdist_and_wheel["wheel"]
    # raptor web's page is files of the package: served from the wheel, nothing to build or fetch.
    static = {"index.html", "app.js", "app.css", "favicon.svg"}
    assert {f"raptor/web/static/{name}" for name in static} <= set(sdist_and_wheel["wheel"])


def test_the_collection_tarball_is_collection_content_only(tmp_path: Path) -> None:
    if not in_checkout():
        pytest.skip("not a checkout (galaxy.yml is not here): nothing to build from")
    galaxy = shutil.which("ansible-galaxy", path=str(BIN)) or shutil.which("ansible-galaxy")
    if galaxy is None:
        pytest.skip("ansible-galaxy (the rollout extra) builds the collection")
    env = {**os.environ, "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [galaxy, "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (tarball,) = tmp_path.glob("velociraptor-raptor-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    top = {name.split("/", 1)[0] for name in names}
    assert top <= COLLECTION_TOP_LEVEL, top - COLLECTION_TOP_LEVEL
    assert not [name for name in names if any(part.startswith(".") for part in name.split("/"))]
    assert {"plugins/filter/supervisor_env_value.py", "LICENSE", "changelogs/changelog.yaml"} <= set(names)
    assert {"roles/proc_publisher/tasks/main.yml", "roles/raptor_web/tasks/main.yml"} <= set(names)
    # Galaxy finds a plugin's docs by its file name: one file per filter, named after it.
    filters = [name for name in names if name.startswith("plugins/filter/") and name.endswith(".py")]
    assert sorted(filters) == ["plugins/filter/supervisor_env_value.py", "plugins/filter/wheel_bundle.py"]
