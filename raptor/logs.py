"""Logging for the listener: stderr only, secrets redacted, repeats throttled."""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Iterable, List, TextIO, Tuple

LOG_FORMAT = "%(asctime)s proc_publisher[%(process)d] %(levelname)s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Replaces every secret in a formatted record by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets: List[str] = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        for secret in self._secrets:
            message = message.replace(secret, "***")
            exc_text = exc_text.replace(secret, "***")
        record.msg, record.args = message, None
        record.exc_text = exc_text or None
        return True


def configure_logging(stream: TextIO, level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger("raptor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Throttle:
    """Logs a repeated problem once per *interval*, then counts what it held back."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._seen: Dict[str, Tuple[float, int]] = {}

    def log(self, key: str, level: int, msg: str, *args: object) -> None:
        now = self._clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._interval:
            self._seen[key] = (last, held + 1)
            return
        if held:
            msg += " (%d similar messages held back)"
            args = (*args, held)
        self._logger.log(level, msg, *args)
        self._seen[key] = (now, 0)

    def clear(self, key: str) -> bool:
        """Forget *key*; True if it had been logged (so a recovery is worth saying)."""
        return self._seen.pop(key, None) is not None
