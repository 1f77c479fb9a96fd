"""Supervisor's XML-RPC interface, over its unix socket or HTTP.

Only used off the event path, by the sink thread. No dependency on the supervisor
package: the listener's virtualenv stays small.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from typing import Any, Dict, List, Optional
from urllib.parse import quote, urlsplit

DEFAULT_TIMEOUT = 5.0


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
    def __init__(self, server_url: str, timeout: float) -> None:
        super().__init__()
        self._parts = urlsplit(server_url)
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # Host info (with credentials for the Authorization header) is still parsed
        # by the base class; only the socket differs.
        if self._parts.scheme == "unix":
            return _UnixHTTPConnection(self._parts.path, self._timeout)
        return http.client.HTTPConnection(self._parts.netloc.rpartition("@")[2], timeout=self._timeout)


class SupervisorRPC:
    """The few calls raptor makes to the supervisord that runs it."""

    def __init__(self, server_url: str, username: str = "", password: str = "", timeout: float = DEFAULT_TIMEOUT):
        self.server_url = server_url
        self._username = username
        self._password = password
        self._timeout = timeout

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        auth = ""
        if self._username:
            auth = f"{quote(self._username, safe='')}:{quote(self._password, safe='')}@"
        # A fresh proxy per call: no stale keep-alive connection after a reload.
        return xmlrpc.client.ServerProxy(
            f"http://{auth}localhost/RPC2", transport=_Transport(self.server_url, self._timeout), allow_none=True
        )

    def get_all_process_info(self) -> List[Dict[str, Any]]:
        result = self._proxy().supervisor.getAllProcessInfo()
        if not isinstance(result, list):
            raise TypeError(f"getAllProcessInfo returned {type(result).__name__}")
        return result

    def get_pid(self) -> Optional[int]:
        pid = self._proxy().supervisor.getPID()
        return int(pid) if isinstance(pid, int) else None
