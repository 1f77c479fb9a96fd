"""Supervisor's XML-RPC interface, over its unix socket or HTTP.

Only used off the event path, by the sink thread. No dependency on the supervisor
package: the listener's virtualenv stays small.
"""

from __future__ import annotations

import base64
import http.client
import socket
import xmlrpc.client
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_TIMEOUT = 5.0
# The URL the XML-RPC client sees; the real endpoint is the transport's. It never
# carries credentials, so no error text built from it can show them.
RPC_URL = "http://localhost/RPC2"


def basic_auth_header(username: str, password: str) -> str:
    """The Authorization value supervisord expects (it splits at the first ':')."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def split_credentials(server_url: str) -> Tuple[str, str, str]:
    """``http://user:pw@host:9001`` -> (``http://host:9001``, user, pw), unquoted."""
    parts = urlsplit(server_url)
    if "@" not in parts.netloc:
        return server_url, "", ""
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")


class SupervisorAuthError(RuntimeError):
    """supervisord answered 401: the credentials are missing or wrong."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    def __init__(self, server_url: str, timeout: float, authorization: Optional[str]) -> None:
        super().__init__()
        self._parts = urlsplit(server_url)
        self._timeout = timeout
        self._authorization = authorization

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # Replaces the base version entirely (it would also parse credentials out of
        # the URL, which carries none): send_headers adds the Authorization header.
        if self._parts.scheme == "unix":
            return _UnixHTTPConnection(self._parts.path, self._timeout)
        return http.client.HTTPConnection(self._parts.netloc, timeout=self._timeout)

    def send_headers(self, connection: http.client.HTTPConnection, headers: List[Tuple[str, str]]) -> None:
        if self._authorization is not None:
            headers = [*headers, ("Authorization", self._authorization)]
        super().send_headers(connection, headers)


class SupervisorRPC:
    """The few calls raptor makes to the supervisord that runs it."""

    def __init__(self, server_url: str, username: str = "", password: str = "", timeout: float = DEFAULT_TIMEOUT):
        # supervisord passes a bare SUPERVISOR_SERVER_URL; credentials written into it
        # by hand still work, but neither a log line nor the RPC URL ever shows them.
        self.server_url, url_username, url_password = split_credentials(server_url)
        if not username:
            username, password = url_username, url_password
        self._username = username
        self._authorization = basic_auth_header(username, password) if username else None
        self._timeout = timeout
        # How many processes the last getAllProcessInfo() listed; read by the event
        # path to size its advice when supervisord discards events (no I/O there).
        self.last_process_count: Optional[int] = None

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        # A fresh proxy per call: no stale keep-alive connection after a reload.
        transport = _Transport(self.server_url, self._timeout, self._authorization)
        return xmlrpc.client.ServerProxy(RPC_URL, transport=transport, allow_none=True)

    def _call(self, method: str) -> Any:
        try:
            return getattr(self._proxy().supervisor, method)()
        except xmlrpc.client.ProtocolError as exc:
            if exc.errcode != 401:
                raise
            if self._username:
                who = f"SUPERVISOR_USERNAME {self._username!r} and its SUPERVISOR_PASSWORD"
            else:
                who = "a request without credentials (SUPERVISOR_USERNAME is not set)"
            raise SupervisorAuthError(
                f"supervisord refused {who} (HTTP 401): they must match the username and password "
                "of its [unix_http_server] or [inet_http_server] section"
            ) from None

    def get_all_process_info(self) -> List[Dict[str, Any]]:
        result = self._call("getAllProcessInfo")
        if not isinstance(result, list):
            raise TypeError(f"getAllProcessInfo returned {type(result).__name__}")
        self.last_process_count = len(result)
        return result

    def get_pid(self) -> Any:
        """The cheapest call: its answer means supervisord went round its loop."""
        return self._call("getPID")
