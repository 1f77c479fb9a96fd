"""``raptor web`` as the tests run it: a real server process on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

from .paths import BIN
from .waiting import free_port, wait_for


class WebServer:
    """``raptor web --port PORT`` reading *redis_url*; its stderr in *directory*/web.log.

    ``with WebServer(...) as web:`` starts it and waits until it answers; stop() and
    start() in between are a server restart on the same port.
    """

    def __init__(
        self,
        directory: Path,
        redis_url: str,
        *,
        port: Optional[int] = None,
        args: Optional[List[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        token: Optional[str] = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.port = port or free_port()
        self.args = list(args or [])
        self.env = dict(env or {})
        self.token = token  # what the test's own requests present
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> WebServer:
        command = [str(BIN / "raptor"), "web", "--redis-url", self.redis_url, "--port", str(self.port), *self.args]
        with open(self.directory / "web.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        wait_for(self._answers, 20, f"raptor web on port {self.port} (log: {self.directory / 'web.log'})")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"raptor web exited with {self.process.returncode}: {self.log_text()}")
        status, _ = self.get("healthz")
        return status in (200, 401, 503)  # 401: it answers, and wants a token

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(15)
        self.process = None

    def log_text(self) -> str:
        path = self.directory / "web.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def request(self, path: str, headers: Optional[Mapping[str, str]] = None) -> urllib.request.Request:
        headers = dict(headers or {})
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 (http://127.0.0.1 only)
        if self.token and "Authorization" not in headers:
            request.add_header("Authorization", f"Bearer {self.token}")
        return request

    def get(self, path: str, headers: Optional[Mapping[str, str]] = None, timeout: float = 30) -> Tuple[int, bytes]:
        """(status, body) of a GET; an HTTP error's status, not an exception."""
        try:
            with urllib.request.urlopen(self.request(path, headers), timeout=timeout) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str) -> Dict[str, Any]:
        status, body = self.get(path)
        assert status == 200, f"GET {path}: {status} {body[:500]!r}"
        found: Dict[str, Any] = json.loads(body)
        return found

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop()


@dataclass
class Event:
    event: str
    data: str
    id: Optional[str]

    def json(self) -> Any:
        return json.loads(self.data)


def read_events(
    web: WebServer,
    after: str,
    until: Callable[[List[Event]], bool],
    timeout: float,
    last_event_id: Optional[str] = None,
) -> List[Event]:
    """Server-sent events of ``api/events?after=AFTER`` (with a ``Last-Event-ID`` header
    when given), read until *until(events)* is true; AssertionError after *timeout* s,
    naming what arrived."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    if web.token:
        headers["Authorization"] = f"Bearer {web.token}"
    # One deadline for the whole read: a socket that timed out cannot be read again.
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=timeout)
    deadline = time.monotonic() + timeout
    events: List[Event] = []
    try:
        connection.request("GET", f"/api/events?after={after}", headers=headers)
        response = connection.getresponse()
        assert response.status == 200, f"api/events: {response.status} {response.read()[:300]!r}"
        fields: Dict[str, str] = {}
        while not until(events):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s reading events; got {events[-5:]!r}")
            try:
                raw = response.fp.readline()
            except (TimeoutError, socket.timeout):
                raise AssertionError(f"timed out after {timeout} s reading events; got {events[-5:]!r}") from None
            if not raw:
                raise AssertionError(f"the event stream ended; got {events[-5:]!r}")
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if "data" in fields:
                    events.append(Event(fields.get("event", "message"), fields["data"], fields.get("id")))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
    finally:
        connection.close()
    return events


def entries(events: List[Event]) -> List[Dict[str, Any]]:
    """The messages of the ``entries`` events, in order."""
    return [message for event in events if event.event == "entries" for message in event.json()]


ROOT = Path(__file__).resolve().parents[1]
NGINX = ROOT / "build" / "nginx" / "usr" / "sbin" / "nginx"  # scripts/nginx.sh unpacks it there

NGINX_CONF = """\
worker_processes 1;
pid nginx.pid;
error_log error.log info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location {prefix}/ {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_buffering off;  # server-sent events: each one as it comes
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx on a free loopback port, serving *target* under *prefix*:
    ``strip=True`` forwards ``{prefix}/x`` as ``/x`` (``proxy_pass http://.../;``),
    ``strip=False`` as it came. ``with Nginx(...) as proxy:``; ``proxy.url`` ends with
    the prefix and a slash."""

    def __init__(self, directory: Path, target_port: int, prefix: str, *, strip: bool = True) -> None:
        self.directory = directory
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.prefix = prefix
        upstream = f"http://127.0.0.1:{target_port}" + ("/" if strip else "")
        (directory / "nginx.conf").write_text(NGINX_CONF.format(port=self.port, prefix=prefix, upstream=upstream))
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    def start(self) -> Nginx:
        if not NGINX.exists():
            raise AssertionError(f"{NGINX} is missing: run scripts/nginx.sh (make pytest does)")
        command = [str(NGINX), "-p", str(self.directory), "-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for(self._listens, 20, f"nginx on port {self.port} (log: {self.directory / 'error.log'})")
        except BaseException:
            self.stop()  # __exit__ will not run: nothing is left behind
            raise
        return self

    def _listens(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.directory / "error.log").read_text(errors="replace")
            raise AssertionError(f"nginx exited with {self.process.returncode}: {log[-2000:]}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop()
