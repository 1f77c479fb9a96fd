"""The JSON messages published on the channel, in Velociraptor's format.

Velociraptor's dashboard reads these unchanged: keep every field and type. Extra
fields (``from_state``, ``seq``, ``run_id``, ``resync``) are ignored by it and let
other consumers detect gaps and listener restarts.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, Mapping, Optional

from .names import jsname, parse_proc_name

Message = Dict[str, Any]


def iso_utc(epoch: Optional[float]) -> Optional[str]:
    """``2026-11-24T13:18:21+00:00``, or None where Supervisor reports 0."""
    if not epoch:
        return None
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat()


def identity(host: str, name: str) -> Message:
    """The fields that name a proc: host, id, name and the six parsed from the name."""
    parsed = parse_proc_name(name)
    return {
        "host": host,
        "id": f"{host}-{name}",
        "name": name,
        "app_name": parsed.app_name,
        "version": parsed.version,
        "config_name": parsed.config_name,
        "hash": parsed.hash,
        "proc_name": parsed.proc_name,
        "port": parsed.port,
    }


def state_message(
    host: str,
    info: Mapping[str, Any],
    *,
    event: str,
    from_state: Optional[str],
    seq: int,
    run_id: str,
    resync: bool = False,
) -> Message:
    """A full proc record plus ``event``, for a ``PROCESS_STATE_*`` transition."""
    message: Message = {"event": event}
    message.update(identity(host, info["name"]))
    message.update(
        {
            "group": info["group"],
            "jsname": jsname(info["name"]),
            "statename": info["statename"],
            "state": int(info["state"]),
            "pid": int(info["pid"]),
            "exitstatus": int(info["exitstatus"]),
            "description": info["description"],
            "spawnerr": info["spawnerr"],
            "now": iso_utc(info["now"]),
            "start_time": iso_utc(info["start"]),
            "stop_time": iso_utc(info["stop"]),
            "logfile": info["logfile"],
            "stdout_logfile": info["stdout_logfile"],
            "stderr_logfile": info["stderr_logfile"],
            "from_state": from_state,
            "seq": seq,
            "run_id": run_id,
            "resync": resync,
        }
    )
    return message


def removal_message(
    host: str, name: str, group: str, *, now: float, seq: int, run_id: str, resync: bool = False
) -> Message:
    """``PROCESS_GROUP_REMOVED``: the dashboard destroys the proc with this ``id``."""
    message: Message = {"event": "PROCESS_GROUP_REMOVED"}
    message.update(identity(host, name))
    message.update(
        {
            "time": iso_utc(now),
            "payload_headers": {"groupname": group},
            "payload_data": "",
            "seq": seq,
            "run_id": run_id,
            "resync": resync,
        }
    )
    return message


def encode(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
