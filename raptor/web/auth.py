"""Who may read ``raptor web``: loopback by default, elsewhere only with a token.

Pure: the decision at start (:func:`decide`) and the check of one request's
``Authorization`` header (:func:`authorized`). The token comes from the environment
(``RAPTOR_WEB_TOKEN``) or a file (``--token-file``), never from the command line, where
``ps`` would show it. It is accepted as ``Authorization: Bearer <token>`` (scripts) and
as the password of HTTP basic auth with any user name (browsers, whose EventSource
cannot send a bearer header but does resend basic credentials).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from ..config import ConfigError

TOKEN_VARIABLE = "RAPTOR_WEB_TOKEN"  # noqa: S105 (the variable's name, not a token)
MIN_TOKEN_LENGTH = 16
REALM = 'Basic realm="raptor", charset="UTF-8"'


@dataclass(frozen=True)
class Access:
    token: Optional[str]  # None: no authentication (loopback, or --no-auth)
    why: str  # for the start-up line: why this is the mode


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(env: Mapping[str, str], token_file: Optional[str]) -> Optional[str]:
    """The token from ``--token-file`` or the environment; ConfigError naming the source
    when it is unusable."""
    source, token = None, None
    if token_file is not None:
        source = f"--token-file {token_file}"
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(source, f"cannot be read ({type(exc).__name__}: {exc.args[-1]})") from None
    elif env.get(TOKEN_VARIABLE):
        source, token = TOKEN_VARIABLE, env[TOKEN_VARIABLE].strip()
    if source is None:
        return None
    if len(token or "") < MIN_TOKEN_LENGTH:
        raise ConfigError(source, f"holds a token shorter than {MIN_TOKEN_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in token or ""):
        raise ConfigError(source, "holds a token with spaces or control characters")
    return token


def decide(bind: str, token: Optional[str], no_auth: bool) -> Access:
    """How ``raptor web`` bound to *bind* admits readers; ConfigError when it must not start."""
    if token is not None and no_auth:
        raise ConfigError("--no-auth", f"and a token ({TOKEN_VARIABLE} or --token-file) were both given: choose one")
    if token is not None:
        return Access(token, "a token is required (bearer, or as the basic-auth password)")
    if no_auth:
        return Access(None, "--no-auth: anyone who reaches the address reads the fleet")
    if is_loopback(bind):
        return Access(None, "loopback only, no authentication")
    raise ConfigError(
        f"--bind {bind}",
        f"is not a loopback address: set {TOKEN_VARIABLE} or --token-file FILE to require a token, "
        "or pass --no-auth to serve without one",
    )


def authorized(header: Optional[str], token: str) -> bool:
    """Whether an ``Authorization`` header carries *token*, compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        offered = value
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        offered = decoded.partition(":")[2]
    else:
        return False
    return hmac.compare_digest(offered.encode("utf-8"), token.encode("utf-8"))
