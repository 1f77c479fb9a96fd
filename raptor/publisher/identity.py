"""Which supervisord a listener runs under, as an identity two machines cannot share.

``raptor status`` calls two host names duplicates when one supervisord publishes
under both. Names and pids cannot tell: every container of a fleet has its own pid
namespace, so 400 containers running the same programs have the same names *and*
pids. Neither can the machine alone: ``/proc/sys/kernel/random/boot_id`` is the
same for every container on one kernel, and ``/etc/machine-id`` is often absent or
copied into images. Together they can::

    supervisord_id = <boot_id>:<pid namespace inode>:<supervisord pid>:<its start ticks>

- ``boot_id``: random per kernel boot: different machines (and VM clones) differ;
- the pid namespace's inode: different for each container on that kernel;
- supervisord's pid (the listener's parent) and its start time in clock ticks since
  boot (field 22 of ``/proc/<pid>/stat``): different for two supervisords in one
  namespace, and for a supervisord that reuses a dead one's pid.

Two listeners of one supervisord (under two HOSTNAMEs, or a host renamed while its
old name's snapshot lives) publish the same identity; nothing else does.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, Optional

from ..keys import META_SUPERVISORD_ID as FIELD

BOOT_ID = "/proc/sys/kernel/random/boot_id"
START_TIME_FIELD = 22  # of /proc/<pid>/stat, counted from 1 (man 5 proc)


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as file:
        return file.read()


def start_ticks(stat: str) -> Optional[str]:
    """Field 22 (starttime) of a /proc/<pid>/stat line, or None.

    The command name (field 2) is in parentheses and may hold spaces and
    parentheses itself, so fields are counted after the last ')'."""
    _, paren, rest = stat.rpartition(")")
    fields = rest.split()
    index = START_TIME_FIELD - 3  # rest starts at field 3
    if not paren or len(fields) <= index or not fields[index].isdigit():
        return None
    return fields[index]


def namespace_inode(link: str) -> Optional[str]:
    """'pid:[4026531836]' -> '4026531836'."""
    match = re.fullmatch(r"\w+:\[(\d+)\]", link.strip())
    return match.group(1) if match else None


def supervisord_id(
    ppid: int,
    read: Callable[[str], str] = _read,
    readlink: Callable[[str], str] = os.readlink,
) -> Optional[str]:
    """The identity of the supervisord whose pid is *ppid*; None where there is no /proc."""
    try:
        boot_id = read(BOOT_ID).strip()
        pid_ns = namespace_inode(readlink("/proc/self/ns/pid"))
    except OSError:
        return None
    if not boot_id or pid_ns is None:
        return None
    try:
        ticks = start_ticks(read(f"/proc/{ppid}/stat")) or ""
    except OSError:  # hidepid= can hide a parent running as another user
        ticks = ""
    return f"{boot_id}:{pid_ns}:{ppid}:{ticks}"


_cached: Dict[int, Dict[str, str]] = {}


def host_identity() -> Dict[str, str]:
    """``{"supervisord_id": ...}`` for the host's meta record, or ``{}`` without /proc.

    Called on every batch by the sink thread: read once, again only if the parent
    changes (supervisord died and the listener was re-parented)."""
    ppid = os.getppid()
    cached = _cached.get(ppid)
    if cached is None:
        identity = supervisord_id(ppid)
        cached = {FIELD: identity} if identity else {}
        _cached.clear()
        _cached[ppid] = cached
    return dict(cached)
