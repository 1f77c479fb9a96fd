"""Real notification receivers on loopback, for the alerter's tests: an HTTP server that
keeps every JSON body posted to it (what Apprise's ``json://`` sends), and an SMTP
server (aiosmtpd) that keeps every mail (Apprise's ``mailto://``)."""

from __future__ import annotations

import email
import json
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

from .waiting import free_port


class HttpReceiver:
    """``start()`` listens on *port* (a free one by default), ``stop()`` closes it; the
    same port can be started again (a receiver that was down comes back)."""

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.bodies: List[Dict[str, Any]] = []
        self.arrivals: List[float] = []  # time.time() each body arrived (the benchmark's clock)
        self._server: Optional[ThreadingHTTPServer] = None
        self._lock = threading.Lock()

    def start(self) -> HttpReceiver:
        bodies, arrivals, lock = self.bodies, self.arrivals, self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls it so
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with lock:
                    arrivals.append(time.time())
                    bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def titles(self) -> List[str]:
        with self._lock:
            return [str(body.get("title")) for body in self.bodies]

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class SmtpReceiver:
    """A real SMTP server on a loopback port (aiosmtpd), keeping every message it accepts."""

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.messages: List[Message] = []
        self._controller: Any = None

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller  # noqa: PLC0415 (the test extra)

        messages = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it so
                messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def subjects(self) -> List[str]:
        return [str(message["Subject"]) for message in list(self.messages)]

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
