"""Ansible filters for writing supervisord configuration safely."""

from __future__ import annotations

from typing import Any, Callable, Dict

DOCUMENTATION = r"""
name: supervisor_env_value
short_description: Quote a value for a supervisord C(environment=) line
description:
  - supervisord expands C(%) in C(environment=) and splits it with non-POSIX shlex,
    which knows quotes but no escapes, then strips quote characters from both ends.
  - Doubles every C(%), wraps the value in single quotes (or double quotes when it
    holds a single quote), and fails for what cannot be written back faithfully.
options:
  _input:
    description: The value.
    type: str
    required: true
"""


class SupervisorQuotingError(ValueError):
    pass


def supervisor_env_value(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in "\r\n\0"):
        raise SupervisorQuotingError("a supervisord environment value cannot hold a line break or NUL")
    if text and (text[0] in "'\"" or text[-1] in "'\""):
        raise SupervisorQuotingError(
            "supervisord strips quotes from both ends of an environment value: "
            "percent-encode a leading or trailing quote (%22 for \", %27 for ')"
        )
    if "'" not in text:
        quote = "'"
    elif '"' not in text:
        quote = '"'
    else:
        raise SupervisorQuotingError(
            "supervisord cannot hold a value with both ' and \": percent-encode one of them in the URL "
            "(%22 for \", %27 for ')"
        )
    return quote + text.replace("%", "%%") + quote


class FilterModule:
    def filters(self) -> Dict[str, Callable[[Any], str]]:
        return {"supervisor_env_value": supervisor_env_value}
