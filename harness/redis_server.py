"""A redis-server of the tests' own."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Iterable, List, Optional, Type

import redis

from .waiting import free_port, wait_for


class RedisServer:
    """A redis-server on a free loopback port, no persistence, its log in *directory*.

    ``with RedisServer(directory) as server:`` starts it and stops it at the end;
    stop() and start() in between are an outage and a restart (an empty one: nothing
    is saved), on the same port.
    """

    def __init__(
        self,
        directory: Path,
        port: Optional[int] = None,
        password: Optional[str] = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self.extra_args: List[str] = list(extra_args)
        self.process: Optional[subprocess.Popen[bytes]] = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> RedisServer:
        server = shutil.which("redis-server")
        if server is None:
            raise AssertionError("redis-server is not installed (make test installs it)")
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.client().ping(), 10, f"redis-server on port {self.port}")
        return self

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL: a crash); nothing to do if it is not running."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self if self.process is not None else self.start()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if self.process is not None:
            # A test that froze it (SIGSTOP) and failed before thawing it: SIGTERM waits for SIGCONT.
            self.process.send_signal(signal.SIGCONT)
        self.stop()
