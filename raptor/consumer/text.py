"""What the consumers print of what they read from Redis: never a terminal control character.

Host and process names, descriptions and every other string in Redis are written by
whoever can write there. :func:`printable` shows a string with its non-printable
characters (C0 and C1 controls, DEL, format characters such as bidi overrides, line
separators) escaped as Python does (``\\x1b``, ``\\u202e``); :func:`json_text` is
``json.dumps`` with those characters as ``\\u`` escapes, so the JSON is the same data
and a terminal shows it inert.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

_SUSPECT = re.compile(r"[^ -~]")  # anything but printable ASCII
_SUSPECT_JSON = re.compile(r"[^\n -~]")  # the same, less the newlines json.dumps(indent=...) writes


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return char if char.isprintable() else char.encode("unicode_escape").decode("ascii")


def as_text(value: Any) -> str:
    """A Redis reply's bytes as text (undecodable bytes replaced), anything else as str()."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def printable(value: Any) -> str:
    """*value* as text, its non-printable characters escaped."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return _SUSPECT.sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # a surrogate pair, as JSON spells it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def json_text(value: Any, indent: Optional[int] = None) -> str:
    """``json.dumps(value)`` (non-ASCII kept as is) with non-printable characters escaped.
    Outside strings JSON has only printable ASCII and the newlines of *indent*, so
    every character escaped here is inside a string, and ``json.loads`` gives *value* back."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _SUSPECT_JSON.sub(_json_escape, text)
