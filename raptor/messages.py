"""The JSON messages published on the channel, in Velociraptor's format.

Velociraptor's dashboard reads these unchanged: keep every field and type. Extra
fields (``from_state``, ``seq``, ``run_id``, ``resync``) are ignored by it and let
other consumers detect gaps and listener restarts. The key order of each record
below is the order of its JSON text.
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, TypedDict, Union, cast

from .names import jsname, parse_proc_name

if TYPE_CHECKING:
    from .publisher.process_table import ProcessInfo


class Identity(TypedDict):
    """The fields that name a proc: host, id, name and the six parsed from the name."""

    host: str
    id: str
    name: str
    app_name: str
    version: str
    config_name: str
    hash: str
    proc_name: str
    port: int


class StateMessage(Identity):
    """A ``PROCESS_STATE_*`` transition: a full proc record plus ``event``."""

    event: str
    group: str
    jsname: str
    statename: str
    state: int
    pid: int
    exitstatus: int
    description: str
    spawnerr: str
    now: Optional[str]
    start_time: Optional[str]
    stop_time: Optional[str]
    logfile: str
    stdout_logfile: str
    stderr_logfile: str
    from_state: Optional[str]
    seq: int
    run_id: str
    resync: bool


class PayloadHeaders(TypedDict):
    groupname: str


class RemovalMessage(Identity):
    """``PROCESS_GROUP_REMOVED``: the dashboard destroys the proc with this ``id``."""

    event: str
    time: Optional[str]
    payload_headers: PayloadHeaders
    payload_data: str
    seq: int
    run_id: str
    resync: bool


Message = Union[StateMessage, RemovalMessage]


def iso_utc(epoch: Optional[float]) -> Optional[str]:
    """``2026-11-24T13:18:21+00:00``, or None where Supervisor reports 0."""
    if not epoch:
        return None
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat()


def proc_identity(host: str, name: str) -> Identity:
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


def identity(host: str, name: str) -> Dict[str, Any]:
    """:func:`proc_identity` as a plain dict, for consumers that extend it into their own records."""
    record: Dict[str, Any] = {}
    record.update(proc_identity(host, name))
    return record


def state_message(
    host: str,
    info: ProcessInfo,
    *,
    event: str,
    from_state: Optional[str],
    seq: int,
    run_id: str,
    resync: bool = False,
) -> StateMessage:
    """A full proc record plus ``event``, for a ``PROCESS_STATE_*`` transition."""
    return {
        "event": event,
        **proc_identity(host, info["name"]),
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


def removal_message(
    host: str, name: str, group: str, *, now: float, seq: int, run_id: str, resync: bool = False
) -> RemovalMessage:
    """``PROCESS_GROUP_REMOVED``: the dashboard destroys the proc with this ``id``."""
    return {
        "event": "PROCESS_GROUP_REMOVED",
        **proc_identity(host, name),
        "time": iso_utc(now),
        "payload_headers": {"groupname": group},
        "payload_data": "",
        "seq": seq,
        "run_id": run_id,
        "resync": resync,
    }


def encode(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# -- history entries (raptor.keys: proc_history, host_history:<host>) ---------------
# The fields of a stream entry, in this order in every entry (a stream stores the
# names once per node when entries share them). Values are strings; "" is None.
HISTORY_FIELDS = (
    "host",
    "name",
    "event",
    "group",  # "" when equal to name (the usual case)
    "statename",  # "" for PROCESS_GROUP_REMOVED
    "state",
    "from_state",
    "pid",
    "exitstatus",
    "expected",  # "1"/"0" on PROCESS_STATE_EXITED as supervisord said; else ""
    "now",  # epoch seconds: the message's now (or time, for a removal)
    "start",
    "stop",
    "description",
    "spawnerr",
    "seq",
    "run_id",
    "resync",
)


def _epoch(iso: Optional[str]) -> str:
    if not iso:
        return ""
    return str(int(datetime.datetime.fromisoformat(iso).timestamp()))


def history_entry(message: Message, expected: Optional[bool] = None) -> Dict[str, str]:
    """*message* as a stream entry: what cannot be derived from host and name.
    *expected* is supervisord's word on an exit, which the channel does not carry."""
    removal = message["event"] == "PROCESS_GROUP_REMOVED"
    get = cast(Mapping[str, Any], message).get
    group = get("payload_headers", {}).get("groupname", "") if removal else get("group", "")
    return {
        "host": message["host"],
        "name": message["name"],
        "event": message["event"],
        "group": "" if group == message["name"] else str(group),
        "statename": "" if removal else str(get("statename", "")),
        "state": "" if removal else str(get("state", "")),
        "from_state": get("from_state") or "",
        "pid": "" if removal else str(get("pid", 0)),
        "exitstatus": "" if removal else str(get("exitstatus", 0)),
        "expected": "" if expected is None else str(int(expected)),
        "now": _epoch(get("time") if removal else get("now")),
        "start": _epoch(get("start_time")),
        "stop": _epoch(get("stop_time")),
        "description": get("description") or "",
        "spawnerr": get("spawnerr") or "",
        "seq": str(message["seq"]),
        "run_id": message["run_id"],
        "resync": "1" if message["resync"] else "0",
    }


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except ValueError:
        return default


# A consumer catching up reads 100,000s of entries a second, of a few thousand
# processes and seconds: what they have in common is made once (a third of the time).
@functools.lru_cache(maxsize=65536)
def _iso(value: str) -> Optional[str]:
    return iso_utc(_int(value)) if value else None


@functools.lru_cache(maxsize=65536)
def _identity_items(host: str, name: str) -> Tuple[Tuple[str, Any], ...]:
    return tuple(proc_identity(host, name).items())


def message_from_entry(fields: Mapping[str, str]) -> Dict[str, Any]:
    """The message a history entry was made from, as consumers read it: every field
    of :func:`state_message` (or :func:`removal_message`) but the log file paths,
    plus ``expected`` (None when supervisord did not say). Raises KeyError or
    ValueError on an entry that is not one of raptor's."""
    host, name, event = fields["host"], fields["name"], fields["event"]
    group = fields.get("group") or name
    message: Dict[str, Any] = {"event": event}
    message.update(_identity_items(host, name))
    if event == "PROCESS_GROUP_REMOVED":
        message.update(
            {"time": _iso(fields.get("now", "")), "payload_headers": {"groupname": group}, "payload_data": ""}
        )
    else:
        message.update(
            {
                "group": group,
                "jsname": jsname(name),
                "statename": fields["statename"],
                "state": _int(fields.get("state", "")),
                "pid": _int(fields.get("pid", "")),
                "exitstatus": _int(fields.get("exitstatus", "")),
                "description": fields.get("description", ""),
                "spawnerr": fields.get("spawnerr", ""),
                "now": _iso(fields.get("now", "")),
                "start_time": _iso(fields.get("start", "")),
                "stop_time": _iso(fields.get("stop", "")),
                "from_state": fields.get("from_state") or None,
            }
        )
    expected = fields.get("expected", "")
    message.update(
        {
            "seq": int(fields["seq"]),
            "run_id": fields["run_id"],
            "resync": fields.get("resync") == "1",
            "expected": None if expected == "" else expected == "1",
        }
    )
    return message
