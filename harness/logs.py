"""The records one logger emits, caught for a test."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, List


class LogRecords(logging.Handler):
    """Keeps the records one logger emits (see :func:`captured_log`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> List[str]:
        return [record.getMessage() for record in self.records]


@contextlib.contextmanager
def captured_log(name: str, level: int = logging.NOTSET) -> Iterator[LogRecords]:
    """The records of logger *name*, caught on that logger itself: configure_logging()
    stops "raptor" from propagating to the root logger, where caplog listens."""
    handler = LogRecords()
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
