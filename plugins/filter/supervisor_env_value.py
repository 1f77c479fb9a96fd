"""Ansible filters for writing supervisord configuration safely."""

from __future__ import annotations

from typing import Any, Callable, Dict

DOCUMENTATION = r"""
name: supervisor_env_value
short_description: Quote a value for a supervisord C(environment=) line
version_added: 3.0.0
author: raptor developers
description:
  - supervisord expands C(%) in C(environment=) and splits it with non-POSIX shlex,
    which knows quotes but no escapes, then strips quote characters from both ends.
  - Doubles every C(%), wraps the value in single quotes (or double quotes when it
    holds a single quote), and fails for what cannot be written back faithfully.
  - Fails for a value that holds a line break or NUL, both kinds of quote, or a quote
    at either end. In a URL, percent-encode the quote instead (C(%22) for V("), C(%27) for V(')).
options:
  _input:
    description: The value. Anything else than a string is converted to one first.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Pass a Redis URL whose password holds a percent-encoded @ to a supervisord eventlistener
  ansible.builtin.copy:
    dest: /etc/supervisor/conf.d/proc_publisher.conf
    mode: "0600"
    content: |
      [eventlistener:proc_publisher]
      command=/opt/raptor/bin/proc_publisher
      events=PROCESS_STATE,TICK_60
      environment=REDIS_URL={{ redis_url | velociraptor.raptor.supervisor_env_value }}

# "redis://:p%40ss@redis:6379/0" | velociraptor.raptor.supervisor_env_value
# gives 'redis://:p%%40ss@redis:6379/0' (single quotes included),
# which supervisord reads back as redis://:p%40ss@redis:6379/0
"""

RETURN = r"""
_value:
  description: The value quoted for an C(environment=) line of a supervisord program or eventlistener section.
  type: str
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
