"""Real parts for raptor's tests and benchmarks: the harness.

Every server is a context manager whose exit stops what it started, even after a
failure (``with RedisServer(directory) as server:``); tests/conftest.py serves them
as fixtures. The parts:

- :mod:`harness.waiting`: ``wait_for`` (poll with a deadline; the failure names what
  it waited for) and ``free_port``.
- :mod:`harness.paths`: ``BIN``, where proc_publisher, raptor, supervisord and
  supervisorctl are installed.
- :mod:`harness.names`: ``velociraptor_names``, program names as Velociraptor deploys them.
- :mod:`harness.redis_server`: ``RedisServer``, a redis-server on a free port, to stop,
  kill and restart empty.
- :mod:`harness.supervisord`: ``Supervisord`` with programs and the listener, configured
  by ``ProgramSpec``, ``ListenerSpec`` and ``RpcSpec``; ``Supervisords`` starts several
  and stops them all.
- :mod:`harness.collector`: ``Collector``, a subscriber keeping every message of the channel.
- :mod:`harness.proxy`: ``TcpProxy``, a loopback proxy whose ``cut()`` is a partition.
- :mod:`harness.logs`: ``captured_log``, the records of one logger.
- :mod:`harness.checks`: the stored snapshot and the latest messages against
  supervisord's answer (``snapshot_differences``, ``latest_message_differences``,
  ``measure_convergence``, ``settled``).

Key names come from :mod:`raptor.keys`, never spelled here.
"""

from .checks import (
    LatestMessages,
    latest_message_differences,
    measure_convergence,
    settled,
    snapshot_differences,
    stored_snapshot,
)
from .collector import Collector
from .logs import LogRecords, captured_log
from .names import velociraptor_names
from .paths import BIN
from .proxy import TcpProxy
from .redis_server import RedisServer
from .supervisord import ListenerSpec, ProgramSpec, RpcSpec, Supervisord, Supervisords
from .waiting import free_port, wait_for

__all__ = [
    "BIN",
    "Collector",
    "LatestMessages",
    "ListenerSpec",
    "LogRecords",
    "ProgramSpec",
    "RedisServer",
    "RpcSpec",
    "Supervisord",
    "Supervisords",
    "TcpProxy",
    "captured_log",
    "free_port",
    "latest_message_differences",
    "measure_convergence",
    "settled",
    "snapshot_differences",
    "stored_snapshot",
    "velociraptor_names",
    "wait_for",
]
