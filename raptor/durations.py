"""Durations as people write them on command lines and in config files: ``30s``, ``10m``,
``2h``, ``1d`` (and a plain number of seconds where a config file allows it)."""

from __future__ import annotations

import re

DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXAMPLES = "30s, 10m, 2h, 1d"


def parse_duration(text: str) -> float:
    """Seconds; ValueError for anything but a number and one unit of ``s m h d``."""
    match = DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration ({EXAMPLES})")
    return float(match.group(1)) * UNITS[match.group(2)]
