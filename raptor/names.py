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
    """The name as vr.common 6.1.1's ``Proc.parse_name`` parses it, to the letter.

    Velociraptor's hosts API parses supervisord's names with that function: any
    difference files one process under two apps on its dashboard. So the port is
    whatever ``int()`` of this interpreter makes of the sixth part: ``+5000``,
    ``5_001``, ``05000``, a tab before the digits, fullwidth or Arabic-Indic digits
    are ports. A ``ValueError``, from the split or from ``int()``, means "not a
    Velociraptor name".
    """
    try:
        app_name, version, config_name, rel_hash, proc_name, port = name.split("-")
        return ProcName(app_name, version, config_name, rel_hash, proc_name, int(port))
    except ValueError:
        return ProcName(name, UNKNOWN, UNKNOWN, UNKNOWN, name, 0)


def jsname(name: str) -> str:
    """The name as the dashboard uses it in JavaScript identifiers."""
    return name.replace(".", "dot")
