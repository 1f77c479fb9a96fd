"""Redis ACL refusals: which permission a refused command lacked, and which ones a
command that went through needed. Pure: reads error texts, sends nothing."""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence, Set

import redis

_RUN_REFUSED = re.compile(r"permissions to run the '([^']+)' command", re.IGNORECASE)
_ACCESS_REFUSED = re.compile(r"permissions to access (?:one of the|a) (key|channel)", re.IGNORECASE)
# redis-py's prefix to the error of one command of a pipeline.
_PIPELINE_ERROR = re.compile(r"Command # \d+ \((.*?)\) of pipeline caused error: ", re.DOTALL)
# Commands whose arguments are all keys; the others here have one key, then values.
_ALL_KEYS = ("EXISTS", "DEL")
# Whatever went through also went through the connection's own commands.
_CONNECTION_PERMISSIONS = ("+client|setname", "+ping", "+select")


class Refused(Exception):
    """Redis refused a command for lack of an ACL permission."""

    def __init__(self, permission: str, command: str, reason: str) -> None:
        super().__init__(f"{command} refused: {reason}")
        self.permission = permission  # the ACL rule that grants it: +del, ~host_meta:web1, &proc_events
        self.command = command
        self.reason = reason


def _targets(command: Sequence[str]) -> Sequence[str]:
    return command[1:] if command[0].upper() in _ALL_KEYS else command[1:2]


def refusal(error: BaseException, command: Sequence[str] = ()) -> Optional[Refused]:
    """*error* as a :class:`Refused` if Redis refused for lack of a permission, else None.

    *command* is the command that met *error*, for the errors that do not say it
    (redis-py prefixes the errors of a pipeline's commands with the command)."""
    if not isinstance(error, redis.exceptions.ResponseError):
        return None
    text = str(error)
    annotated = _PIPELINE_ERROR.match(text)
    if annotated:
        command, text = annotated.group(1).split(" "), text[annotated.end() :]
    if text.startswith("EXEC without MULTI"):
        return Refused("+multi", "MULTI", f"{text}: Redis ran the transaction's commands one by one")
    run = _RUN_REFUSED.search(text)
    if run:
        name = run.group(1).lower()
        return Refused(f"+{name}", name.replace("|", " ").upper(), text)
    access = _ACCESS_REFUSED.search(text)
    if access and command:
        sigil = "~" if access.group(1).lower() == "key" else "&"
        return Refused(" ".join(sigil + target for target in _targets(command)), command[0].upper(), text)
    if access or isinstance(error, redis.exceptions.NoPermissionError):
        return Refused("(see ACL LOG)", command[0].upper() if command else "a command", text)
    return None


def permissions_used(commands: Iterable[Sequence[str]]) -> Set[str]:
    """The permissions that *commands*, which went through, needed (named as :func:`refusal` names them)."""
    used = set(_CONNECTION_PERMISSIONS)
    for command in commands:
        name = command[0].upper()
        used.add(f"+{name.lower()}")
        used.update(("&" if name == "PUBLISH" else "~") + target for target in _targets(command))
    return used
