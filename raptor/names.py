"""Velociraptor's process naming convention.

``{app_name}-{version}-{config_name}-{hash}-{proc_name}-{port}``, e.g.
``node_example-v2-local-f96054b7-web-5003``. Any other name still works: it is
reported with ``app_name = proc_name = name`` and ``UNKNOWN`` for the rest.
"""

from __future__ import annotations

from typing import NamedTuple

UNKNOWN = "UNKNOWN"


class ProcName(NamedTuple):
    app_name: str
    version: str
    config_name: str
    hash: str
    proc_name: str
    port: int


def parse_proc_name(name: str) -> ProcName:
    parts = name.split("-")
    if len(parts) == 6:
        port = parts[5]
        # isdigit() accepts other scripts' digits; the port must be plain ASCII.
        if port.isascii() and port.isdigit():
            return ProcName(parts[0], parts[1], parts[2], parts[3], parts[4], int(port))
    return ProcName(name, UNKNOWN, UNKNOWN, UNKNOWN, name, 0)


def jsname(name: str) -> str:
    """The name as the dashboard uses it in JavaScript identifiers."""
    return name.replace(".", "dot")
