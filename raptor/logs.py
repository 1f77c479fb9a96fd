"""Logging for the listener: stderr only, secrets redacted, repeats throttled."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Set, TextIO, Tuple
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

LOG_FORMAT = "%(asctime)s {program}[%(process)d] %(levelname)s %(name)s: %(message)s"
REDACTED = "***"
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _escaped_forms(text: str) -> Set[str]:
    """*text* as it reads inside a repr() or a JSON string, whatever the quoting."""
    forms = set()
    # repr() escapes a quote only if the whole string needs it, which depends on the
    # text around the secret: produce the single-quoted form with and without \\'.
    quoted = repr(text + "'\"")[1:-4]
    forms |= {quoted, quoted.replace("\\'", "'")}
    quoted = ascii(text + "'\"")[1:-4]
    forms |= {quoted, quoted.replace("\\'", "'")}
    for ensure_ascii in (True, False):
        dumped = json.dumps(text, ensure_ascii=ensure_ascii)[1:-1]
        forms |= {dumped, dumped.replace("/", "\\/")}
    return forms


def secret_forms(secret: str, username: str = "") -> Set[str]:
    """Every spelling of *secret* that may reach a log line: raw, percent-encoded (as
    urllib quotes it, either hex case), repr()/JSON-escaped (once or twice, as an
    exception repr inside a repr does), and base64 (an HTTP Basic header for
    *username*). Empty for an empty secret."""
    if not secret:
        return set()
    forms = {secret}
    for encoded in (quote(secret), quote(secret, safe=""), quote_plus(secret), quote_plus(secret, safe="/")):
        forms |= {encoded, _PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), encoded)}
    for form in list(forms):
        for once in _escaped_forms(form):
            forms.add(once)
            forms |= _escaped_forms(once)
    for raw in (f"{username}:{secret}", secret):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            token = encode(raw.encode()).decode("ascii")
            forms |= {token, token.rstrip("=")}
    return forms


class RedactingFilter(logging.Filter):
    """Replaces every form of every secret in a formatted record by ``***``.

    *secrets* are plain secrets; *credentials* are (username, password) pairs whose
    Basic header must be redacted too.
    """

    def __init__(self, secrets: Iterable[str], credentials: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__()
        forms: Set[str] = set()
        for secret in secrets:
            forms |= secret_forms(secret)
        for username, password in credentials:
            forms |= secret_forms(password, username)
        # Longest first: a form that contains another is replaced whole.
        self._forms: List[str] = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._forms:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: logging would print them raw in its error report
            message = f"{record.msg} (unformattable arguments: {record.args!r})"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class _RaptorHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, to replace it and no other."""


def url_secrets(url: str) -> Tuple[List[str], List[Tuple[str, str]]]:
    """The password of a URL as given and as the URL spells it (also a ``?password=``
    option), and its (user, password) pair: what a log must never show of it."""
    parts = urlsplit(url)
    secrets: List[str] = []
    credentials: List[Tuple[str, str]] = []
    if parts.password:
        secrets += [parts.password, unquote(parts.password)]
        credentials.append((unquote(parts.username or ""), unquote(parts.password)))
    secrets += parse_qs(parts.query).get("password", [])  # redis://h/0?password=...
    return secrets, credentials


def configure_logging(
    stream: TextIO,
    level: str,
    secrets: Iterable[str] = (),
    credentials: Iterable[Tuple[str, str]] = (),
    program: str = "proc_publisher",
) -> None:
    handler = _RaptorHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT.format(program=program)))
    handler.addFilter(RedactingFilter(secrets, credentials))
    raptor = logging.getLogger("raptor")
    raptor.handlers[:] = [handler]
    raptor.setLevel(level)
    raptor.propagate = False
    # Libraries (redis-py, urllib, warnings) log through the root logger: redact
    # those lines too rather than leave them to logging's unfiltered last resort.
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RaptorHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # warnings.warn() writes to stderr itself unless captured: through the same filter.
    logging.captureWarnings(True)


def log_uncaught_exceptions(logger: logging.Logger) -> None:
    """Send tracebacks that nothing caught, in any thread, through *logger* (and so
    through the redaction) instead of printing them raw on stderr."""

    def on_uncaught(exc_type: Any, exc: Any, tb: Any) -> None:
        logger.critical("uncaught exception", exc_info=(exc_type, exc, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit:
            logger.critical(
                "uncaught exception in thread %s",
                getattr(args.thread, "name", "?"),
                exc_info=args.exc_value,
            )

    sys.excepthook = on_uncaught
    threading.excepthook = on_thread


class Throttle:
    """Logs a repeated problem once per *interval*, then counts what it held back."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._seen: Dict[str, Tuple[float, int]] = {}

    def log(self, key: str, level: int, msg: str, *args: object, exc_info: object = None) -> None:
        now = self._clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._interval:
            self._seen[key] = (last, held + 1)
            return
        if held:
            msg += " (%d similar messages held back)"
            args = (*args, held)
        self._logger.log(level, msg, *args, exc_info=exc_info)  # type: ignore[arg-type]
        self._seen[key] = (now, 0)

    def clear(self, key: str) -> bool:
        """Forget *key*; True if it had been logged (so a recovery is worth saying)."""
        return self._seen.pop(key, None) is not None
