"""The harness's servers as fixtures; each one is stopped at teardown, pass or fail."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from harness import Collector, RedisServer, Supervisords


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def collector(redis_server: RedisServer) -> Iterator[Collector]:
    with Collector(redis_server.port) as c:
        yield c


@pytest.fixture
def start_supervisord(tmp_path: Path) -> Iterator[Supervisords]:
    """``start_supervisord(programs, redis_url, **options)``: a started Supervisord
    (options as Supervisord's, plus directory= and kind=); all stopped at teardown."""
    with Supervisords(tmp_path) as started:
        yield started
