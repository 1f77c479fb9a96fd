from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .support import Collector, RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def collector(redis_server: RedisServer) -> Iterator[Collector]:
    c = Collector(redis_server.port).start()
    yield c
    c.stop()
