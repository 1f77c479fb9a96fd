"""A loopback TCP proxy: a network partition on demand."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import List, Optional, Type

from .waiting import free_port


class TcpProxy:
    """Forwards a free loopback port to *target_port*; cut() partitions, start() heals.

    ``with TcpProxy(port) as proxy:`` listens at once and cuts every link at the end.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: Optional[socket.socket] = None
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._stall = 0.0

    @property
    def up(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpProxy:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def __enter__(self) -> TcpProxy:
        return self if self.up else self.start()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop()

    def stall_next_reply(self, seconds: float) -> None:
        """Deliver the next large chunk from Redis in two halves, `seconds` apart, as a
        busy server writing a big reply in pieces would."""
        self._stall = seconds

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut(): the listening socket is gone
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_redis: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if from_redis and self._stall and len(data) > 1000:
                    pause, self._stall = self._stall, 0.0
                    dst.sendall(data[: len(data) // 2])
                    time.sleep(pause)  # the stall itself, not a wait for something
                    data = data[len(data) // 2 :]
                dst.sendall(data)
        except OSError:
            pass  # the other side or cut() closed the link
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def stop(self) -> None:
        self.cut()
