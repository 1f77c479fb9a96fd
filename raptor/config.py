"""Listener configuration, read once from the environment.

Every problem is reported as a :class:`ConfigError` naming the variable, so that
``proc_publisher`` can print one clear line and exit instead of a traceback.
"""

from __future__ import annotations

import inspect
import os
import socket
from dataclasses import dataclass, field
from typing import Callable, FrozenSet, Mapping, Optional, Set
from urllib.parse import SplitResult, parse_qs, quote, urlsplit, urlunsplit

from redis import ConnectionPool
from redis.exceptions import RedisError

from . import keys
from .keys import (
    DEFAULT_CHANNEL,
    DEFAULT_FLEET_HISTORY_MAXLEN,
    DEFAULT_HISTORY_MAX_AGE,
    DEFAULT_HISTORY_MAXLEN,
    DEFAULT_SNAPSHOT_TTL,
    MIN_HISTORY_MAX_AGE,
    MIN_HISTORY_MAXLEN,
    MIN_SNAPSHOT_TTL,
)

REDIS_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


class ConfigError(ValueError):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


def redact_url(url: str) -> str:
    """Return *url* with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        netloc = parts.netloc
    else:
        user = quote(parts.username or "", safe="")
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if "password=" in query:
        query = "&".join("password=***" if item.startswith("password=") else item for item in query.split("&"))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _check_location(url: str, variable: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(variable, f"is malformed ({exc}): {redact_url(url)}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            variable,
            f"has scheme {parts.scheme or '(none)'!r}: expected redis://, rediss:// or unix:// ({redact_url(url)})",
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(variable, f"has no socket path: expected unix:///path/to/redis.sock ({redact_url(url)})")
        return parts
    if not parts.hostname:
        raise ConfigError(variable, f"has no host: expected {parts.scheme}://host:6379/0 ({redact_url(url)})")
    if port == 0:
        raise ConfigError(variable, f"has port 0 ({redact_url(url)})")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ConfigError(variable, f"has database {db!r}: the path must be a number such as /0 ({redact_url(url)})")
    return parts


def _accepted_options(connection_class: type) -> FrozenSet[str]:
    """The keyword arguments *connection_class* takes, from its constructors' signatures.

    redis-py passes a URL's unknown query options on to the connection class, which
    rejects them with a TypeError whose wording changes between versions: read what
    the classes accept instead of matching that text."""
    names: Set[str] = set()
    for klass in connection_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return frozenset(names - {"self"})


def _check_options(url: str, parts: SplitResult, variable: str) -> None:
    query = parse_qs(parts.query)
    for option in TLS_FILE_OPTIONS:
        for path in query.get(option, []):
            if not os.path.isfile(path):
                raise ConfigError(variable, f"names {option}={path}, which is not a readable file ({redact_url(url)})")

    def rejected(problem: str) -> ConfigError:
        if parts.password:
            problem = problem.replace(parts.password, "***")
        return ConfigError(variable, f"is not accepted by redis-py ({problem}): {redact_url(url)}")

    # Let redis-py parse the rest (db, timeouts, ssl_cert_reqs, ...): it knows its
    # own options best. make_connection() builds the connection without connecting.
    try:
        pool = ConnectionPool.from_url(url)
    except (ValueError, TypeError, RedisError) as exc:
        raise rejected(str(exc)) from None
    unknown = sorted(set(pool.connection_kwargs) - _accepted_options(pool.connection_class))
    if unknown:
        raise rejected(", ".join(f"unknown option {name!r}" for name in unknown))
    if str(pool.connection_kwargs.get("protocol", 2)) != "2":
        # RESP3 changes the shape of stream and XINFO replies, which raptor reads as RESP2's.
        raise ConfigError(variable, f"asks for protocol={pool.connection_kwargs['protocol']}: raptor speaks RESP2; "
                          f"drop the option ({redact_url(url)})")  # fmt: skip
    try:
        pool.make_connection()
    except (ValueError, TypeError, RedisError) as exc:
        raise rejected(str(exc)) from None


def validate_redis_url(url: str, variable: str = "REDIS_URL") -> str:
    """Check *url* the way redis-py will use it; raise :class:`ConfigError` if not."""
    url = url.strip()
    if not url:
        raise ConfigError(variable, "is not set: give the Redis to publish to, e.g. redis://redis.example:6379/0")
    _check_options(url, _check_location(url, variable), variable)
    return url


def _positive_int(env: Mapping[str, str], variable: str, default: int, minimum: int, unit: str = "seconds") -> int:
    raw = env.get(variable, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise ConfigError(variable, f"must be a whole number of {unit}, got {env.get(variable, '').strip()!r}")
    value = int(raw)
    if value < minimum:
        raise ConfigError(variable, f"must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class ListenerConfig:
    """Everything ``proc_publisher`` needs, validated."""

    redis_url: str = field(repr=False)
    hostname: str
    channel: str = DEFAULT_CHANNEL
    snapshot_ttl: int = DEFAULT_SNAPSHOT_TTL
    supervisor_url: Optional[str] = None
    # supervisord names each child in SUPERVISOR_PROCESS_NAME: the listener finds itself
    # in getAllProcessInfo() by it (raptor.publisher.plan.plan_resync).
    process_name: Optional[str] = None
    supervisor_username: str = ""
    supervisor_password: str = field(default="", repr=False)
    log_level: str = "INFO"
    history_maxlen: int = DEFAULT_HISTORY_MAXLEN
    fleet_history_maxlen: int = DEFAULT_FLEET_HISTORY_MAXLEN
    history_max_age: int = DEFAULT_HISTORY_MAX_AGE

    @property
    def redacted_redis_url(self) -> str:
        return redact_url(self.redis_url)

    @property
    def snapshot_key(self) -> str:
        return keys.snapshot_key(self.hostname)

    @property
    def meta_key(self) -> str:
        return keys.meta_key(self.hostname)

    @property
    def history_key(self) -> str:
        return keys.history_key(self.hostname)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, getfqdn: Callable[[], str] = socket.getfqdn) -> ListenerConfig:
        redis_url = validate_redis_url(env.get("REDIS_URL", ""))

        hostname = env.get("HOSTNAME", "").strip() or getfqdn().strip()
        if not hostname:
            raise ConfigError("HOSTNAME", "is not set and socket.getfqdn() returned nothing: set HOSTNAME")
        if any(ch.isspace() for ch in hostname):
            raise ConfigError("HOSTNAME", f"must not contain white space, got {hostname!r}")

        channel = env.get("RAPTOR_CHANNEL", "").strip() or DEFAULT_CHANNEL
        if any(ch.isspace() for ch in channel):
            raise ConfigError("RAPTOR_CHANNEL", f"must not contain white space, got {channel!r}")
        ttl = _positive_int(env, "RAPTOR_SNAPSHOT_TTL", DEFAULT_SNAPSHOT_TTL, MIN_SNAPSHOT_TTL)

        history_maxlen = _positive_int(
            env, "RAPTOR_HISTORY_MAXLEN", DEFAULT_HISTORY_MAXLEN, MIN_HISTORY_MAXLEN, "entries"
        )
        fleet_history_maxlen = _positive_int(
            env, "RAPTOR_FLEET_HISTORY_MAXLEN", DEFAULT_FLEET_HISTORY_MAXLEN, MIN_HISTORY_MAXLEN, "entries"
        )
        history_max_age = _positive_int(env, "RAPTOR_HISTORY_MAX_AGE", DEFAULT_HISTORY_MAX_AGE, MIN_HISTORY_MAX_AGE)

        log_level = env.get("RAPTOR_LOG_LEVEL", "").strip().upper() or "INFO"
        if log_level not in LOG_LEVELS:
            raise ConfigError("RAPTOR_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

        if env.get("SUPERVISOR_ENABLED") != "1":
            raise ConfigError(
                "SUPERVISOR_ENABLED",
                "is not set: proc_publisher speaks the eventlistener protocol on stdin/stdout "
                "and must be started by supervisord as an [eventlistener:proc_publisher] section",
            )
        supervisor_url = env.get("SUPERVISOR_SERVER_URL", "").strip() or None
        if supervisor_url is not None:
            scheme = urlsplit(supervisor_url).scheme
            if scheme not in ("unix", "http"):
                raise ConfigError(
                    "SUPERVISOR_SERVER_URL",
                    f"has scheme {scheme!r}: expected unix:// or http:// ({redact_url(supervisor_url)})",
                )
        return cls(
            redis_url=redis_url,
            hostname=hostname,
            channel=channel,
            snapshot_ttl=ttl,
            supervisor_url=supervisor_url,
            process_name=env.get("SUPERVISOR_PROCESS_NAME", "").strip() or None,
            supervisor_username=env.get("SUPERVISOR_USERNAME", ""),
            supervisor_password=env.get("SUPERVISOR_PASSWORD", ""),
            log_level=log_level,
            history_maxlen=history_maxlen,
            fleet_history_maxlen=fleet_history_maxlen,
            history_max_age=history_max_age,
        )
