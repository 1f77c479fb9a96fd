"""Ansible filter: the one archive of wheels a host's Python needs, made on the controller."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
import zipfile
from email.parser import HeaderParser
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

# packaging ships with ansible-core (a controller without it gets a clear error when the
# filter runs). Hand-written on top of it rather than pip download --python-version,
# because pip evaluates environment markers for the interpreter it runs on, not the
# target's (exceptiongroup; python_version < "3.11" would go missing).
try:
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import Version

    MISSING = ""
except ImportError as missing:  # pragma: no cover - ansible-core depends on packaging
    MISSING = str(missing)

DOCUMENTATION = r"""
name: wheel_bundle
short_description: Make one archive of the wheels that a requirement needs on one Python
version_added: 3.0.0
author: raptor developers
description:
  - Reads a wheelhouse directory on the controller (wheels for several Pythons and several
    versions of a package, as C(pip download --python-version) leaves them) and picks the
    wheels that install O(requirement) on the given Python and machine, that is, the newest
    version of each distribution whose tags, C(Requires-Python) and the specifiers of what
    requires it fit, following C(Requires-Dist) with its environment markers evaluated for
    that Python.
  - Writes them into one uncompressed tar archive in O(cache_dir) whose bytes depend only on
    the wheels (sorted names, no times, no owners), so the same wheels give the same checksum
    on every run and a copy to the host happens only when something changed.
  - Fails, naming the distribution, when the wheelhouse lacks a wheel the requirement needs.
  - Remembers its answer in O(cache_dir), keyed by the wheelhouse's listing (names, sizes,
    modification times), so a run with nothing changed reads no wheel.
options:
  _input:
    description: The wheelhouse directory on the controller.
    type: path
    required: true
  requirement:
    description: The requirement, such as V(raptor[web]==3.0.0).
    type: str
    required: true
  python:
    description: The host's Python version, V(3.11) or V(3.11.2).
    type: str
    required: true
  machine:
    description: The host's machine (C(uname -m)), such as V(x86_64) or V(aarch64).
    type: str
    required: true
  cache_dir:
    description: Controller directory for the archives, which must be this user's and writable by
      no one else; C($XDG_CACHE_HOME/raptor-bundles) (C(~/.cache/raptor-bundles)) when empty.
    type: path
    default: ""
"""

EXAMPLES = r"""
- name: Choose the wheels this host's Python needs
  ansible.builtin.set_fact:
    bundle: >-
      {{ '/srv/wheelhouse' | velociraptor.raptor.wheel_bundle('raptor[web]==3.0.0',
         python=ansible_facts['python_version'], machine=ansible_facts['architecture']) }}
"""

RETURN = r"""
_value:
  description: Where the archive is and what it holds.
  type: dict
  contains:
    path:
      description: The archive on the controller.
      type: str
    sha256:
      description: Its checksum.
      type: str
    wheels:
      description: The file names of the wheels in it.
      type: list
      elements: str
"""

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # the unit tests import the pure functions without Ansible
    AnsibleFilterError = ValueError  # type: ignore[assignment,misc]


# What a wheel's platform tag may say to run on a glibc Linux of that machine: the host's
# pip chooses among manylinux variants of one version, all of which travel.
_LINUX = re.compile(r"^(manylinux\d*(_\d+_\d+)?|linux)_(?P<machine>.+)$")
_FORMAT = 1  # bump when what the cache remembers changes shape


class BundleError(ValueError):
    """The wheelhouse cannot satisfy the requirement on that Python."""


def _python_tuple(python: str) -> Tuple[int, int]:
    match = re.match(r"^(\d+)\.(\d+)", python.strip())
    if not match:
        raise BundleError(f"python must look like 3.11, not {python!r}")
    return int(match.group(1)), int(match.group(2))


def tag_fits(interpreter: str, abi: str, platform: str, python: Tuple[int, int], machine: str) -> bool:
    """Whether one tag triple of a wheel installs on CPython `python` on a glibc Linux `machine`."""
    major, minor = python
    cp = f"cp{major}{minor}"
    if platform != "any":
        linux = _LINUX.match(platform)
        if not linux or linux.group("machine") != machine:
            return False
    if interpreter in (f"py{major}", f"py{major}{minor}"):
        return abi == "none"
    if interpreter == cp:
        return abi in ("none", cp, "abi3")
    if abi == "abi3" and interpreter.startswith(f"cp{major}"):
        # abi3 wheels built for an older CPython 3 run on every later one
        return int(interpreter[len(f"cp{major}") :] or 0) <= minor
    return False


class _Wheel:
    def __init__(self, path: str) -> None:
        self.path = path
        self.filename = os.path.basename(path)
        try:
            name, version, _build, tags = parse_wheel_filename(self.filename)
        except InvalidWheelFilename as error:
            raise BundleError(f"{path} is not a wheel's name: {error}") from error
        self.name = canonicalize_name(name)
        self.version = version
        self.tags = tags
        self._metadata: Optional[Tuple[Optional[SpecifierSet], List[Requirement]]] = None

    def fits(self, python: Tuple[int, int], machine: str) -> bool:
        return any(tag_fits(t.interpreter, t.abi, t.platform, python, machine) for t in self.tags)

    def metadata(self) -> Tuple[Optional[SpecifierSet], List[Requirement]]:
        """Its Requires-Python and Requires-Dist, read from the wheel's METADATA."""
        if self._metadata is None:
            try:
                with zipfile.ZipFile(self.path) as archive:
                    names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
                    if len(names) != 1:
                        raise BundleError(f"{self.path} holds {len(names)} .dist-info/METADATA, not one")
                    headers = HeaderParser().parsestr(archive.read(names[0]).decode("utf-8"))
                requires_python = headers.get("Requires-Python")
                self._metadata = (
                    SpecifierSet(requires_python) if requires_python else None,
                    [Requirement(text) for text in headers.get_all("Requires-Dist") or []],
                )
            except (OSError, zipfile.BadZipFile, UnicodeDecodeError, InvalidRequirement, InvalidSpecifier) as error:
                raise BundleError(f"{self.path} cannot be read as a wheel: {error}") from error
        return self._metadata


def _environment(python: Tuple[int, int], machine: str) -> Dict[str, str]:
    """Marker variables of CPython `python` on Linux `machine` (the micro version unknown: .0 is
    the conservative guess, as python_full_version < "3.11.3" then holds)."""
    env = dict(default_environment())
    env.update(
        python_version=f"{python[0]}.{python[1]}",
        python_full_version=f"{python[0]}.{python[1]}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        os_name="posix",
        platform_system="Linux",
        platform_machine=machine,
    )
    return env


def select_wheels(paths: Iterable[str], requirement: str, python: str, machine: str) -> List[str]:
    """The wheels that install `requirement` on that Python and machine: for each distribution
    needed, every wheel of the newest version that fits all the specifiers met on the way."""
    version = _python_tuple(python)
    python_version = Version(f"{version[0]}.{version[1]}.0")
    env = _environment(version, machine)
    by_name: Dict[str, List[_Wheel]] = {}
    for path in paths:
        if path.endswith(".whl"):
            wheel = _Wheel(path)
            if wheel.fits(version, machine):
                by_name.setdefault(wheel.name, []).append(wheel)

    def applies(dependency: Requirement, extras: FrozenSet[str]) -> bool:
        marker = dependency.marker
        return marker is None or any(marker.evaluate({**env, "extra": e}) for e in ("", *sorted(extras)))

    # No backtracking (pip's resolver has it): the wheelhouse was made by pip for each
    # Python, so the newest version that fits every specifier is the one pip chose. A
    # round that chose a version a later requirement excludes is done again, knowing it.
    known: Dict[str, SpecifierSet] = {}
    for _round in range(10):
        chosen: Dict[str, _Wheel] = {}
        expanded: Dict[str, FrozenSet[str]] = {}
        specifiers: Dict[str, SpecifierSet] = {}
        extras: Dict[str, Set[str]] = {}
        try:
            stack = [Requirement(requirement)]
        except InvalidRequirement as error:
            raise BundleError(f"{requirement!r} is not a requirement: {error}") from error
        while stack:
            req = stack.pop()
            name = canonicalize_name(req.name)
            specifiers[name] = specifiers.get(name, SpecifierSet()) & req.specifier
            extras.setdefault(name, set()).update(req.extras)
            if name not in chosen:
                wanted = known.get(name, SpecifierSet()) & req.specifier
                wheel = _newest(by_name.get(name, []), wanted, python_version)
                if wheel is None:
                    raise BundleError(
                        f"the wheelhouse has no wheel of {req.name}{wanted} for Python {version[0]}.{version[1]} "
                        f"on {machine} (needed by {requirement}): add it with pip download --only-binary=:all: "
                        f"--python-version {version[0]}.{version[1]}"
                    )
                chosen[name] = wheel
            now = frozenset(extras[name])
            if expanded.get(name) != now:
                expanded[name] = now
                stack.extend(d for d in chosen[name].metadata()[1] if applies(d, now))
        broken = [n for n, w in chosen.items() if not specifiers[n].contains(w.version, prereleases=True)]
        if not broken:
            return sorted(w.path for name, c in chosen.items() for w in by_name[name] if w.version == c.version)
        # Only what excluded a choice is carried to the next round: the specifiers that
        # came from wheels no longer chosen must not narrow it.
        for name in broken:
            known[name] = known.get(name, SpecifierSet()) & specifiers[name]
    raise BundleError(f"the requirements of {requirement} did not settle on one version each")


def _newest(wheels: List[_Wheel], specifier: SpecifierSet, python: Version) -> Optional[_Wheel]:
    # Final releases first, as pip chooses; a pre-release only when nothing else fits.
    for wheel in sorted(wheels, key=lambda w: (not w.version.is_prerelease, w.version), reverse=True):
        if not specifier.contains(wheel.version, prereleases=True):
            continue
        requires_python = wheel.metadata()[0]
        if requires_python is not None and not requires_python.contains(python, prereleases=True):
            continue
        return wheel
    return None


def write_archive(paths: List[str], directory: str) -> Tuple[str, str]:
    """An uncompressed tar of the wheels, flat, whose bytes depend only on their names and
    contents; named after its checksum. Returns (path, sha256)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for path in sorted(paths, key=os.path.basename):
            info = tarfile.TarInfo(os.path.basename(path))
            info.size = os.path.getsize(path)
            info.mode = 0o644
            info.mtime = 0
            with open(path, "rb") as wheel:
                archive.addfile(info, wheel)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    target = os.path.join(directory, f"wheels-{sha256[:20]}.tar")
    if not os.path.exists(target):
        fd, partial = tempfile.mkstemp(dir=directory, suffix=".partial")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(partial, target)  # atomic: forks making the same archive never see half of one
    return target, sha256


def bundle(wheelhouse: str, requirement: str, python: str, machine: str, cache_dir: str = "") -> Dict[str, Any]:
    if not os.path.isdir(wheelhouse):
        raise BundleError(f"the wheelhouse {wheelhouse} is not a directory on the controller")
    directory = cache_dir or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "raptor-bundles"
    )
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # What is in it is installed as root on every host: another user must not be able to
    # put an archive or an answer there.
    owner = os.lstat(directory)
    if not stat.S_ISDIR(owner.st_mode) or owner.st_uid != os.getuid() or owner.st_mode & 0o022:
        raise BundleError(
            f"the cache directory {directory} must be a directory of this user's that no one else may write"
        )
    paths = sorted(os.path.join(wheelhouse, name) for name in os.listdir(wheelhouse) if name.endswith(".whl"))
    listing = [(os.path.basename(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    key = hashlib.sha256(
        json.dumps([_FORMAT, os.path.abspath(wheelhouse), requirement, python, machine, listing]).encode()
    ).hexdigest()
    remembered = os.path.join(directory, f"{key}.json")
    try:
        with open(remembered, encoding="utf-8") as saved:
            answer: Dict[str, Any] = json.load(saved)
        if os.path.exists(answer["path"]):
            return answer
    except (OSError, ValueError, KeyError):
        pass
    wheels = select_wheels(paths, requirement, python, machine)
    path, sha256 = write_archive(wheels, directory)
    answer = {"path": path, "sha256": sha256, "wheels": [os.path.basename(w) for w in wheels]}
    fd, partial = tempfile.mkstemp(dir=directory, suffix=".partial")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(answer, out)
    os.replace(partial, remembered)
    return answer


def wheel_bundle(wheelhouse: str, requirement: str, python: str, machine: str, cache_dir: str = "") -> Dict[str, Any]:
    """The filter: bundle(), its errors as Ansible's."""
    if MISSING:
        raise AnsibleFilterError(f"wheel_bundle needs the packaging library on the controller: {MISSING}")
    try:
        return bundle(str(wheelhouse), str(requirement), str(python), str(machine), str(cache_dir or ""))
    except (BundleError, OSError, zipfile.BadZipFile) as error:
        raise AnsibleFilterError(f"wheel_bundle: {error}") from error


class FilterModule:
    def filters(self) -> Dict[str, Any]:
        return {"wheel_bundle": wheel_bundle}
