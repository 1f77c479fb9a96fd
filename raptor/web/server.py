"""``raptor web``: serve :mod:`raptor.web.app` with uvicorn.

Loopback by default; another address only with a token or ``--no-auth``
(:mod:`raptor.web.auth`). Behind a reverse proxy under a path prefix, pass the prefix
as ``--root-path`` (the pages use relative URLs, so they work either way). Logs go to
stderr with the token and the Redis password redacted; no access log (URLs hold host
names, which are the fleet's business, and the log would grow with every poll).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from typing import Mapping, Optional, TextIO

import redis

from ..config import ConfigError, redact_url
from ..consumer.fleet import STALE_AFTER
from ..logs import configure_logging, url_secrets
from .auth import decide, read_token

ROOT_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")

log = logging.getLogger("raptor.web")
DEFAULT_PORT = 8642
SHUTDOWN_GRACE = 3  # seconds open event streams get to close at shutdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--root-path", default="", help="the path prefix a reverse proxy serves this under")
    parser.add_argument(
        "--token-file", help="a file holding the token readers must present (else $RAPTOR_WEB_TOKEN, if set)"
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="serve a non-loopback --bind without a token (anyone can read)"
    )
    parser.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER,
        metavar="SECONDS",
        help=f"a host whose snapshot was not refreshed for this long shows STALE (default: {STALE_AFTER:.0f}, "
        "two TICK_60s)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def serve(
    args: argparse.Namespace, client: redis.Redis, url: str, err: TextIO, env: Optional[Mapping[str, str]] = None
) -> int:
    """Run until interrupted; 2 with one line on *err* for a configuration that must not start."""
    try:
        import uvicorn  # noqa: PLC0415 (an optional extra)

        from .app import create_app  # noqa: PLC0415
    except ImportError as exc:
        err.write(f"raptor web needs its extra ({exc.name} is missing): pip install 'raptor[web]'\n")
        return 2
    try:
        if not 0 < args.port < 65536:
            raise ConfigError("--port", f"must be 1-65535, not {args.port}")
        if not args.stale_after > 0:
            raise ConfigError("--stale-after", f"must be a positive number of seconds, not {args.stale_after}")
        if args.root_path and not ROOT_PATH.fullmatch(args.root_path):
            # The role's preflight has the same rule. It also keeps out "//host" (the bare
            # prefix's redirect would leave the site) and what the Location header cannot carry.
            raise ConfigError("--root-path", "must be a path like /raptor or /ops/raptor (letters, digits, ._~-)")
        token = read_token(os.environ if env is None else env, args.token_file)
        access = decide(args.bind, token, args.no_auth)
    except ConfigError as exc:
        err.write(f"raptor web: {exc}\n")
        return 2
    secrets, credentials = url_secrets(url)
    configure_logging(err, args.log_level, [*secrets, *([token] if token else [])], credentials, program="raptor-web")
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    log.info(
        "serving http://%s:%d%s/ from Redis at %s (%s)", host, args.port, args.root_path, redact_url(url), access.why
    )
    config = uvicorn.Config(
        create_app(client, url, token=access.token, stale_after=args.stale_after, root_path=args.root_path),
        host=args.bind,
        port=args.port,
        access_log=False,
        log_config=None,  # our handler, with its redaction, not uvicorn's
        log_level=args.log_level.lower(),
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 2
