"""Real parts for the tests: redis-server, supervisord, a channel collector."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from supervisor.xmlrpc import SupervisorTransport

from raptor.consumer.follow import next_message, parse_message

T = TypeVar("T")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll *condition* until it returns something truthy; fail after *timeout* s."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may touch a server that is coming up
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


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


def velociraptor_names(count: int, app: str = "node_example") -> List[str]:
    return [f"{app}-v{1 + i % 3}-local-f96054b7-web-{5000 + i}" for i in range(count)]


class RedisServer:
    """A redis-server of the tests' own, on a free loopback port."""

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
        self.extra_args = list(extra_args)
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
        assert server, "redis-server is not installed (make test installs it)"
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
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(10)
        self.process = None


class Supervisord:
    """A supervisord of the tests' own, with programs and the proc_publisher listener."""

    def __init__(
        self,
        directory: Path,
        programs: Iterable[str],
        redis_url: str,
        hostname: str = "testhost",
        buffer_size: int = 1024,
        with_rpc: bool = True,
        listener_env: Optional[Dict[str, str]] = None,
        listeners: Optional[Dict[str, str]] = None,
        autostart: bool = True,
        program_command: str = "sleep 100000",
        listener_command: Optional[str] = None,
        group: Optional[str] = None,
        program_options: Optional[Dict[str, str]] = None,
        program_commands: Optional[Dict[str, str]] = None,
        rpc_username: Optional[str] = None,
        rpc_password: Optional[str] = None,
        inet_port: Optional[int] = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.programs = list(programs)
        self.redis_url = redis_url
        self.hostname = hostname
        self.buffer_size = buffer_size
        self.with_rpc = with_rpc
        self.listener_env = listener_env or {}
        # listener section name -> HOSTNAME; default: one proc_publisher
        self.listeners = listeners or {"proc_publisher": hostname}
        self.autostart = autostart
        self.program_command = program_command
        self.listener_command = listener_command or str(BIN / "proc_publisher")
        # All programs in one [group:...], so `restart GROUP:*` leaves the listener alone.
        self.group = group
        self.program_options = program_options or {}
        self.program_commands = program_commands or {}
        # [unix_http_server] (and [inet_http_server]) credentials; the listener gets
        # them only through listener_env, as the role passes them.
        self.rpc_username = rpc_username
        self.rpc_password = rpc_password
        # With a port, an [inet_http_server] too, and the listener talks to it over http://.
        self.inet_port = inet_port
        self.socket = directory / "supervisor.sock"
        self.conf = directory / "supervisord.conf"
        self.log = directory / "supervisord.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.write_config()

    @staticmethod
    def conf_value(value: str) -> str:
        """A plain (unquoted) supervisord.conf value: only % is special there."""
        return value.replace("%", "%%")

    def _auth_lines(self) -> List[str]:
        if self.rpc_username is None:
            return []
        return [f"username={self.rpc_username}", f"password={self.conf_value(self.rpc_password or '')}"]

    @staticmethod
    def quote(value: str) -> str:
        return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'

    def write_config(self) -> None:
        d = self.directory
        lines = [
            "[supervisord]",
            f"logfile={d / 'supervisord.log'}",
            f"pidfile={d / 'supervisord.pid'}",
            f"childlogdir={d}",
            "nodaemon=true",
            "loglevel=info",
            "minfds=1024",
            "",
        ]
        if self.with_rpc:
            lines += ["[unix_http_server]", f"file={self.socket}", *self._auth_lines(), ""]
            if self.inet_port:
                lines += ["[inet_http_server]", f"port=127.0.0.1:{self.inet_port}", *self._auth_lines(), ""]
            lines += [
                "[rpcinterface:supervisor]",
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                "",
                "[supervisorctl]",
                f"serverurl=unix://{self.socket}",
                *self._auth_lines(),
                "",
            ]
        for name, hostname in self.listeners.items():
            env = {"REDIS_URL": self.redis_url, "HOSTNAME": hostname, **self.listener_env}
            environment = ",".join(f"{k}={self.quote(v)}" for k, v in env.items())
            lines += [
                f"[eventlistener:{name}]",
                f"command={self.listener_command}",
                "events=PROCESS_STATE,PROCESS_GROUP,TICK_60",
                f"buffer_size={self.buffer_size}",
                f"environment={environment}",
                *([f"serverurl=http://127.0.0.1:{self.inet_port}"] if self.inet_port else []),
                f"stderr_logfile={d / (name + '.stderr.log')}",
                "",
            ]
        for name in self.programs:
            options = {"startsecs": "1", "stopwaitsecs": "5", **self.program_options}
            lines += [
                f"[program:{name}]",
                f"command={self.program_commands.get(name, self.program_command)}",
                f"autostart={'true' if self.autostart else 'false'}",
                *(f"{k}={v}" for k, v in options.items()),
                "",
            ]
        if self.group:
            lines += [f"[group:{self.group}]", f"programs={','.join(self.programs)}", ""]
        self.conf.write_text("\n".join(lines), encoding="utf-8")

    def start(self) -> Supervisord:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        self.process = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if self.with_rpc:
            wait_for(lambda: self.rpc().supervisor.getState()["statename"] == "RUNNING", 20, "supervisord to run")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def rpc(self) -> Any:
        return xmlrpc.client.ServerProxy(
            "http://127.0.0.1",
            transport=SupervisorTransport(self.rpc_username or "", self.rpc_password or "", f"unix://{self.socket}"),
        )

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ctl_in_background(self, *args: str) -> subprocess.Popen[bytes]:
        """supervisorctl running while the caller does something else (a burst)."""
        return subprocess.Popen(
            [str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def truth(self) -> Dict[str, Dict[str, Any]]:
        return {info["name"]: info for info in self.rpc().supervisor.getAllProcessInfo()}

    def listener_info(self, name: str = "proc_publisher") -> Dict[str, Any]:
        return dict(self.rpc().supervisor.getProcessInfo(f"{name}:{name}"))

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def listener_log(self, name: str = "proc_publisher") -> str:
        path = self.directory / f"{name}.stderr.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def programs_running(self) -> bool:
        truth = self.truth()
        return all(truth.get(name, {}).get("statename") == "RUNNING" for name in self.programs)

    def discarded_events(self) -> int:
        """Events supervisord threw away because the listener's buffer was full."""
        return self.log_text().count("event buffer overflowed, discarding event")


class Collector:
    """Subscribes to the channel and keeps every JSON message; reconnects after outages."""

    def __init__(self, port: int, channel: str = "proc_events", password: Optional[str] = None) -> None:
        self.port = port
        self.channel = channel
        self.password = password
        self.messages: List[Dict[str, Any]] = []
        self.non_json = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Collector:
        self._thread.start()
        wait_for(self._subscribed.is_set, 10, "the collector to subscribe")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # No retries: redis-py must not reconnect behind the collector's back,
                # or `connections` would not count the reconnects that lose messages.
                client = redis.Redis(
                    host="127.0.0.1",
                    port=self.port,
                    password=self.password,
                    socket_connect_timeout=2,
                    retry=Retry(NoBackoff(), 0),
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.connections += 1
                self._subscribed.set()
                while not self._stop.is_set():
                    raw = next_message(pubsub, 0.2)
                    if raw is None:
                        continue
                    message = parse_message(raw["data"])
                    if message is None:
                        self.non_json += 1
                        continue
                    message["_received"] = time.monotonic()
                    with self._lock:
                        self.messages.append(message)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                time.sleep(0.1)

    def snapshot(self) -> List[Dict[str, Any]]:
        with self._lock:
            return list(self.messages)

    def latest_by_name(self) -> Dict[str, Dict[str, Any]]:
        latest: Dict[str, Dict[str, Any]] = {}
        for message in self.snapshot():
            latest[message["name"]] = message
        return latest


def stored_snapshot(client: redis.Redis, host: str) -> Dict[str, Dict[str, Any]]:
    raw = client.hgetall(f"host_procs:{host}")
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def snapshot_differences(client: redis.Redis, host: str, sup: Supervisord) -> List[str]:
    """What differs between host_procs:<host> and supervisord's getAllProcessInfo()."""
    stored = stored_snapshot(client, host)
    truth = sup.truth()
    problems = [f"missing {name}" for name in truth if name not in stored]
    problems += [f"extra {name}" for name in stored if name not in truth]
    for name, info in truth.items():
        if name in stored:
            mine = stored[name]
            if (mine["statename"], mine["pid"]) != (info["statename"], info["pid"]):
                problems.append(
                    f"{name}: stored {mine['statename']}/{mine['pid']} real {info['statename']}/{info['pid']}"
                )
    return problems


def latest_message_differences(collector: Collector, sup: Supervisord) -> List[str]:
    latest = collector.latest_by_name()
    problems = []
    for name, info in sup.truth().items():
        message = latest.get(name)
        if message is None:
            problems.append(f"no message for {name}")
        elif (message.get("statename"), message.get("pid")) != (info["statename"], info["pid"]):
            problems.append(
                f"{name}: last message {message.get('statename')}/{message.get('pid')} real {info['statename']}"
            )
    return problems


class TcpProxy:
    """A loopback TCP proxy that can cut the link, as a network partition would."""

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

    def stall_next_reply(self, seconds: float) -> None:
        """Deliver the next large chunk from Redis in two halves, `seconds` apart, as a
        busy server writing a big reply in pieces would."""
        self._stall = seconds

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
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
                    time.sleep(pause)
                    data = data[len(data) // 2 :]
                dst.sendall(data)
        except OSError:
            pass
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
