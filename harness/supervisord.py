"""A supervisord of the tests' own, running programs and the proc_publisher listener."""

from __future__ import annotations

import os
import subprocess
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Type

from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

from .paths import BIN
from .waiting import wait_for

LISTENER = "proc_publisher"


@dataclass(frozen=True)
class ProgramSpec:
    """How each ``[program:NAME]`` is written."""

    command: str = "sleep 100000"
    # NAME -> its own command, instead of `command`
    commands: Mapping[str, str] = field(default_factory=dict)
    autostart: bool = True
    # more keys, or other values than startsecs=1, stopwaitsecs=5
    options: Mapping[str, str] = field(default_factory=dict)
    # All programs in one [group:GROUP], so `restart GROUP:*` leaves the listener alone.
    group: Optional[str] = None


@dataclass(frozen=True)
class ListenerSpec:
    """How each ``[eventlistener:NAME]`` is written."""

    command: str = str(BIN / "proc_publisher")
    # more environment, over REDIS_URL and HOSTNAME
    env: Mapping[str, str] = field(default_factory=dict)
    buffer_size: int = 1024
    # listener NAME -> the HOSTNAME it publishes as; empty: one proc_publisher, as the
    # supervisord's hostname
    hosts: Mapping[str, str] = field(default_factory=dict)
    # TICK_5 instead of the role's TICK_60: a snapshot refreshed every 5 s (stale-host tests)
    events: str = "PROCESS_STATE,PROCESS_GROUP,TICK_60"


@dataclass(frozen=True)
class RpcSpec:
    """supervisord's XML-RPC: ``[unix_http_server]``, and ``[inet_http_server]`` with a port.

    The credentials reach the listener only through ListenerSpec.env, as the role
    passes them; with inet_port the listener talks to supervisord over http://.
    """

    username: Optional[str] = None
    password: Optional[str] = None
    inet_port: Optional[int] = None


def conf_value(value: str) -> str:
    """A plain (unquoted) supervisord.conf value: only % is special there."""
    return value.replace("%", "%%")


def quoted(value: str) -> str:
    """A quoted value of an ``environment=`` line."""
    return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


class Supervisord:
    """supervisord with *programs* and the listener publishing to *redis_url*.

    Writes its configuration, log, socket and the listeners' stderr logs in
    *directory*. ``with Supervisord(...) as sup:`` starts it (and waits for RPC to
    answer) and stops it at the end. rpc=None: no RPC at all, as on hosts without
    ``[unix_http_server]``. Change `programs` or `listener`, then write_config() and
    ``ctl("update")`` or ``ctl("reload")``: supervisord's own ways of changing.
    """

    def __init__(
        self,
        directory: Path,
        programs: Iterable[str],
        redis_url: str,
        *,
        hostname: str = "testhost",
        program: ProgramSpec = ProgramSpec(),
        listener: ListenerSpec = ListenerSpec(),
        rpc: Optional[RpcSpec] = RpcSpec(),
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.programs: List[str] = list(programs)
        self.redis_url = redis_url
        self.hostname = hostname
        self.program = program
        self.listener = listener
        self.rpc_spec = rpc
        self.socket = directory / "supervisor.sock"
        self.conf = directory / "supervisord.conf"
        self.log = directory / "supervisord.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.write_config()

    @property
    def listener_hosts(self) -> Mapping[str, str]:
        return self.listener.hosts or {LISTENER: self.hostname}

    @property
    def inet_port(self) -> Optional[int]:
        return self.rpc_spec.inet_port if self.rpc_spec else None

    def _auth_lines(self) -> List[str]:
        rpc = self.rpc_spec
        if rpc is None or rpc.username is None:
            return []
        return [f"username={rpc.username}", f"password={conf_value(rpc.password or '')}"]

    def _rpc_sections(self) -> List[str]:
        lines = ["[unix_http_server]", f"file={self.socket}", *self._auth_lines(), ""]
        if self.inet_port:
            lines += ["[inet_http_server]", f"port=127.0.0.1:{self.inet_port}", *self._auth_lines(), ""]
        return [
            *lines,
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
            *self._auth_lines(),
            "",
        ]

    def _listener_sections(self) -> List[str]:
        lines: List[str] = []
        for name, hostname in self.listener_hosts.items():
            env = {"REDIS_URL": self.redis_url, "HOSTNAME": hostname, **self.listener.env}
            environment = ",".join(f"{k}={quoted(v)}" for k, v in env.items())
            lines += [
                f"[eventlistener:{name}]",
                f"command={self.listener.command}",
                f"events={self.listener.events}",
                f"buffer_size={self.listener.buffer_size}",
                f"environment={environment}",
                *([f"serverurl=http://127.0.0.1:{self.inet_port}"] if self.inet_port else []),
                f"stderr_logfile={self.directory / (name + '.stderr.log')}",
                "",
            ]
        return lines

    def _program_sections(self) -> List[str]:
        spec = self.program
        lines: List[str] = []
        for name in self.programs:
            options = {"startsecs": "1", "stopwaitsecs": "5", **spec.options}
            lines += [
                f"[program:{name}]",
                f"command={spec.commands.get(name, spec.command)}",
                f"autostart={'true' if spec.autostart else 'false'}",
                *(f"{k}={v}" for k, v in options.items()),
                "",
            ]
        if spec.group:
            lines += [f"[group:{spec.group}]", f"programs={','.join(self.programs)}", ""]
        return lines

    def write_config(self) -> None:
        d = self.directory
        lines = [
            "[supervisord]",
            f"logfile={self.log}",
            f"pidfile={d / 'supervisord.pid'}",
            f"childlogdir={d}",
            "nodaemon=true",
            "loglevel=info",
            "minfds=1024",
            "",
        ]
        if self.rpc_spec is not None:
            lines += self._rpc_sections()
        lines += self._listener_sections() + self._program_sections()
        self.conf.write_text("\n".join(lines), encoding="utf-8")

    def command(self) -> List[str]:
        """How supervisord is run (a subclass may wrap it)."""
        return [str(BIN / "supervisord"), "-c", str(self.conf)]

    def start(self) -> Supervisord:
        # Not the SUPERVISOR_* of a supervisord the tests themselves may run under.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if self.rpc_spec is not None:
            wait_for(lambda: self.rpc().supervisor.getState()["statename"] == "RUNNING", 20, "supervisord to run")
        return self

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 30 s; nothing to do if it is not running."""
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

    def __enter__(self) -> Supervisord:
        return self if self.process is not None else self.start()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop()

    # -- talking to it ---------------------------------------------------------------

    def rpc(self) -> Any:
        rpc = self.rpc_spec or RpcSpec()
        return xmlrpc.client.ServerProxy(
            "http://127.0.0.1",
            transport=SupervisorTransport(rpc.username or "", rpc.password or "", f"unix://{self.socket}"),
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

    # -- what it says ------------------------------------------------------------------

    def truth(self) -> Dict[str, Dict[str, Any]]:
        """getAllProcessInfo() by process name: what a snapshot must match."""
        return {info["name"]: info for info in self.rpc().supervisor.getAllProcessInfo()}

    def listener_info(self, name: str = LISTENER) -> Dict[str, Any]:
        return dict(self.rpc().supervisor.getProcessInfo(f"{name}:{name}"))

    def listener_pid(self, name: str = LISTENER) -> int:
        """The pid of a listener that must be RUNNING."""
        info = self.listener_info(name)
        if info["statename"] != "RUNNING":
            raise AssertionError(info)
        return int(info["pid"])

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def listener_log(self, name: str = LISTENER) -> str:
        path = self.directory / f"{name}.stderr.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def programs_running(self) -> bool:
        truth = self.truth()
        return all(truth.get(name, {}).get("statename") == "RUNNING" for name in self.programs)

    def discarded_events(self) -> int:
        """Events supervisord threw away because the listener's buffer was full."""
        return self.log_text().count("event buffer overflowed, discarding event")


class Supervisords:
    """Starts supervisords in *directory* (``sup``, ``sup2``, ...) and stops every one
    of them at exit, whatever happened in between: the ``start_supervisord`` fixture."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: List[Supervisord] = []

    def __call__(
        self,
        programs: Iterable[str],
        redis_url: str,
        *,
        hostname: str = "testhost",
        program: ProgramSpec = ProgramSpec(),
        listener: ListenerSpec = ListenerSpec(),
        rpc: Optional[RpcSpec] = RpcSpec(),
        directory: Optional[Path] = None,
        kind: Type[Supervisord] = Supervisord,
    ) -> Supervisord:
        """A started supervisord (of class *kind*); the options are Supervisord's."""
        number = len(self.started) + 1
        where = directory or self.directory / ("sup" if number == 1 else f"sup{number}")
        sup = kind(where, programs, redis_url, hostname=hostname, program=program, listener=listener, rpc=rpc)
        self.started.append(sup)
        return sup.start()

    def stop_all(self) -> None:
        """Stop each one, the last started first; the first failure is raised after the rest."""
        failure: Optional[BaseException] = None
        while self.started:
            try:
                self.started.pop().stop()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> Supervisords:
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop_all()
