"""``raptor alert --config alert.yml``: read and check the file, then run the alerter until
SIGTERM or SIGINT. A file with problems: one line each on stderr, exit 2, nothing run."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, TextIO, Tuple

import redis

from ..config import redact_url
from ..logs import configure_logging, url_secrets

if TYPE_CHECKING:
    from .config import AlertConfig

log = logging.getLogger("raptor.alert")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the rules and targets (YAML)")
    parser.add_argument(
        "--consumer", default=f"{socket.gethostname()}:{os.getpid()}", help="this alerter's name in the group"
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a leader that stopped answering keeps the lead before another alerter takes over (default: 10)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the config file and exit: 0 if good, 2 with one line per problem (no Redis needed)",
    )


def read_config(path: Path) -> Tuple[Optional[AlertConfig], List[str]]:
    from .config import ConfigErrors, parse  # noqa: PLC0415 (pyyaml: the alert extra)

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read it ({type(exc).__name__}: {exc})"]
    try:
        return parse(text), []
    except ConfigErrors as exc:
        return None, [f"{path}: {problem}" for problem in exc.problems]


def missing_extra(exc: ImportError) -> str:
    return f"raptor alert needs its extra ({exc.name} is missing): pip install 'raptor[alert]'\n"


def load_config(path: Path, err: TextIO) -> Optional[AlertConfig]:
    """The config, or None once each problem (a missing extra included) is a line on *err*."""
    try:
        config, problems = read_config(path)
    except ImportError as exc:
        err.write(missing_extra(exc))
        return None
    for problem in problems:
        err.write(f"raptor alert: {problem}\n")
    return config


def check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``--check``: what a deployment runs before it installs a new file (the role's
    ``validate:``), so a bad file fails the rollout and the running alerter keeps the old one."""
    config = load_config(args.config, err)
    if config is None:
        return 2
    out.write(f"{args.config}: good: {len(config.rules)} rules, {len(config.targets)} targets\n")
    return 0


def serve(
    args: argparse.Namespace, client: redis.Redis, url: str, err: TextIO, stop: Optional[threading.Event] = None
) -> int:
    try:
        from .service import Alerter  # noqa: PLC0415 (apprise: the alert extra)
    except ImportError as exc:
        err.write(missing_extra(exc))
        return 2
    if not 1.0 <= args.lease <= 300.0:
        err.write(f"raptor alert: --lease must be 1-300 seconds, not {args.lease}\n")
        return 2
    config = load_config(args.config, err)
    if config is None:
        return 2
    secrets, credentials = url_secrets(url)
    for target in config.targets.values():  # never logged by raptor; redacted all the same
        more, pairs = url_secrets(target.url)
        secrets += more
        credentials += pairs
    configure_logging(err, args.log_level, secrets, credentials, program="raptor-alert")
    if stop is None:  # run as a program: SIGTERM (supervisorctl stop) and Ctrl-C end it
        stop = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())  # type: ignore[union-attr,unused-ignore]
    log.info(
        "alerting on Redis at %s as %s of group %s: %d rules, %d targets",
        redact_url(url),
        args.consumer,
        config.group,
        len(config.rules),
        len(config.targets),
    )
    Alerter(client, config, consumer=args.consumer, lease=args.lease).run(stop)
    return 0
