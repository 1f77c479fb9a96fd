"""The collection's wheel_bundle filter: which wheels a host's Python gets, in one archive.

The wheels here are made by the test (a METADATA file in a zip is all the filter reads);
the molecule scenario installs from real bundles of the real wheelhouse.
"""

from __future__ import annotations

import importlib.util
import os
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

PLUGIN = Path(__file__).parents[1] / "plugins" / "filter" / "wheel_bundle.py"


def _plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheel_bundle_filter", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wb = _plugin()


def wheel(directory: Path, filename: str, *requires: str, requires_python: str = "") -> Path:
    name, version = filename.split("-")[:2]
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    path = directory / filename
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


def names(paths: List[str]) -> List[str]:
    return sorted(os.path.basename(p) for p in paths)


@pytest.fixture
def house(tmp_path: Path) -> Path:
    d = tmp_path / "wheelhouse"
    d.mkdir()
    wheel(d, "app-1.0-py3-none-any.whl", "lib>=2", 'fast>=1; extra == "web"', 'backport; python_version < "3.11"')
    wheel(d, "lib-2.0-py3-none-any.whl")
    wheel(d, "lib-3.0-py3-none-any.whl", requires_python=">=3.12")
    wheel(d, "backport-1.0-py3-none-any.whl")
    for py in ("39", "311", "313"):
        # as long as hiredis' names: over the 100 characters a plain tar header holds
        wheel(d, f"fast-1.5-cp{py}-cp{py}-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl")
        wheel(d, f"fast-1.5-cp{py}-cp{py}-musllinux_1_1_x86_64.whl")
    wheel(d, "fast-1.5-cp311-cp311-manylinux_2_17_aarch64.whl")
    return d


def select(house: Path, requirement: str, python: str, machine: str = "x86_64") -> List[str]:
    return names(wb.select_wheels([str(p) for p in house.iterdir()], requirement, python, machine))


def test_markers_are_judged_for_the_hosts_python_not_the_controllers(house: Path) -> None:
    """backport; python_version < "3.11" is for a 3.9 host, whatever Python the controller runs."""
    assert select(house, "app==1.0", "3.9") == [
        "app-1.0-py3-none-any.whl",
        "backport-1.0-py3-none-any.whl",
        "lib-2.0-py3-none-any.whl",
    ]
    assert select(house, "app==1.0", "3.11") == ["app-1.0-py3-none-any.whl", "lib-2.0-py3-none-any.whl"]


def test_requires_python_picks_the_newest_version_the_host_can_run(house: Path) -> None:
    assert "lib-3.0-py3-none-any.whl" in select(house, "app==1.0", "3.13")
    assert "lib-2.0-py3-none-any.whl" in select(house, "app==1.0", "3.11")


def test_an_extra_brings_the_compiled_wheel_of_that_python_and_machine_only(house: Path) -> None:
    chosen = select(house, "app[web]==1.0", "3.11")
    assert [n for n in chosen if n.startswith("fast")] == [
        "fast-1.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"
    ]
    assert [n for n in select(house, "app[web]==1.0", "3.11", "aarch64") if n.startswith("fast")] == [
        "fast-1.5-cp311-cp311-manylinux_2_17_aarch64.whl"
    ]


def test_a_missing_wheel_is_named_with_the_python_and_machine(house: Path) -> None:
    with pytest.raises(wb.BundleError, match=r"no wheel of fast>=1 for Python 3\.12 on x86_64 \(needed by app\[web\]"):
        select(house, "app[web]==1.0", "3.12")
    with pytest.raises(wb.BundleError, match=r"no wheel of app==2\.0"):
        select(house, "app==2.0", "3.11")


def test_abi3_wheels_fit_every_later_cpython(tmp_path: Path) -> None:
    wheel(tmp_path, "crypto-44.0-cp39-abi3-manylinux_2_28_x86_64.whl")
    assert select(tmp_path, "crypto", "3.13") == ["crypto-44.0-cp39-abi3-manylinux_2_28_x86_64.whl"]
    with pytest.raises(wb.BundleError):
        select(tmp_path, "crypto", "3.8")


def test_a_later_specifier_sends_an_earlier_choice_back(tmp_path: Path) -> None:
    """top needs b and a; b needs a<2: the newest a (2.0), chosen first, is replaced by 1.0."""
    wheel(tmp_path, "top-1.0-py3-none-any.whl", "b", "a")
    wheel(tmp_path, "a-1.0-py3-none-any.whl")
    wheel(tmp_path, "a-2.0-py3-none-any.whl")
    wheel(tmp_path, "b-1.0-py3-none-any.whl", "a<2")
    assert select(tmp_path, "top", "3.11") == [
        "a-1.0-py3-none-any.whl",
        "b-1.0-py3-none-any.whl",
        "top-1.0-py3-none-any.whl",
    ]


def test_the_archive_is_the_same_bytes_each_time_and_holds_only_the_chosen_wheels(house: Path, tmp_path: Path) -> None:
    first = wb.bundle(str(house), "app[web]==1.0", "3.11", "x86_64", str(tmp_path / "cache1"))
    for path in house.iterdir():  # a wheelhouse made again: new times, same wheels
        os.utime(path, (1, 1))
    second = wb.bundle(str(house), "app[web]==1.0", "3.11", "x86_64", str(tmp_path / "cache2"))
    assert first["sha256"] == second["sha256"]
    assert Path(first["path"]).read_bytes() == Path(second["path"]).read_bytes()
    with tarfile.open(first["path"]) as archive:
        members = archive.getmembers()
    assert sorted(m.name for m in members) == first["wheels"] == select(house, "app[web]==1.0", "3.11")
    assert {(m.mtime, m.uid, m.mode) for m in members} == {(0, 0, 0o644)}


def test_names_longer_than_a_plain_tar_header_holds_travel_whole(tmp_path: Path) -> None:
    """charset_normalizer's and hiredis' wheel names pass the 100 characters of a ustar name."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    long = (
        "charset_normalizer_with_a_longer_name-3.5.3-cp311-cp311-"
        "manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl"
    )
    assert len(long) > 100
    wheel(house, long)
    made = wb.bundle(str(house), "charset-normalizer-with-a-longer-name", "3.11", "x86_64", str(tmp_path / "cache"))
    with tarfile.open(made["path"]) as archive:
        assert archive.getnames() == [long]


def test_a_run_with_nothing_changed_reads_no_wheel(
    house: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = str(tmp_path / "cache")
    first = wb.bundle(str(house), "app==1.0", "3.11", "x86_64", cache)

    def must_not_select(*args: object) -> List[str]:
        raise AssertionError("the wheels were read again")

    monkeypatch.setattr(wb, "select_wheels", must_not_select)
    assert wb.bundle(str(house), "app==1.0", "3.11", "x86_64", cache) == first
    wheel(house, "lib-2.1-py3-none-any.whl")  # the wheelhouse changed: chosen again
    with pytest.raises(AssertionError, match="read again"):
        wb.bundle(str(house), "app==1.0", "3.11", "x86_64", cache)


def test_a_wheelhouse_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(wb.BundleError, match="is not a directory on the controller"):
        wb.bundle(str(tmp_path / "nowhere"), "app", "3.11", "x86_64", str(tmp_path / "cache"))


def test_a_second_round_forgets_what_only_a_discarded_choice_required(tmp_path: Path) -> None:
    """a 2.0 (chosen first) wants c<1; b wants a<2; a 1.0 wants c>=1: pip's answer is a 1.0, b, c 1.0."""
    wheel(tmp_path, "top-1.0-py3-none-any.whl", "b", "a")
    wheel(tmp_path, "a-2.0-py3-none-any.whl", "c<1")
    wheel(tmp_path, "a-1.0-py3-none-any.whl", "c>=1")
    wheel(tmp_path, "b-1.0-py3-none-any.whl", "a<2")
    wheel(tmp_path, "c-0.5-py3-none-any.whl")
    wheel(tmp_path, "c-1.0-py3-none-any.whl")
    assert select(tmp_path, "top", "3.11") == [
        "a-1.0-py3-none-any.whl",
        "b-1.0-py3-none-any.whl",
        "c-1.0-py3-none-any.whl",
        "top-1.0-py3-none-any.whl",
    ]


def test_a_final_release_is_chosen_before_a_newer_pre_release(tmp_path: Path) -> None:
    wheel(tmp_path, "a-1.0-py3-none-any.whl")
    wheel(tmp_path, "a-2.0b1-py3-none-any.whl")
    assert select(tmp_path, "a", "3.11") == ["a-1.0-py3-none-any.whl"]
    assert select(tmp_path, "a>=2.0b1", "3.11") == ["a-2.0b1-py3-none-any.whl"]


def test_a_file_that_is_not_a_wheel_is_named(tmp_path: Path) -> None:
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(wb.BundleError, match=r"junk\.whl is not a wheel's name"):
        select(tmp_path, "a", "3.11")
    (tmp_path / "junk.whl").unlink()
    (tmp_path / "a-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(wb.BundleError, match=r"a-1\.0-py3-none-any\.whl cannot be read as a wheel"):
        select(tmp_path, "a", "3.11")


def test_a_cache_directory_others_may_write_is_refused(house: Path, tmp_path: Path) -> None:
    """What the cache holds is installed as root on every host."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(wb.BundleError, match="no one else may write"):
        wb.bundle(str(house), "app==1.0", "3.11", "x86_64", str(shared))


def test_the_default_cache_is_the_users_own(house: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    made = wb.bundle(str(house), "app==1.0", "3.11", "x86_64")
    assert Path(made["path"]).parent == tmp_path / "xdg" / "raptor-bundles"
    assert (tmp_path / "xdg" / "raptor-bundles").stat().st_mode & 0o077 == 0
