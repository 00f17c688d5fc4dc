"""``earmark serve``: the HTTP API as a command. It lives with the API (the CLI package
does not import the API); the console script (earmark.console) adds it to the others."""

from __future__ import annotations

import argparse
from typing import Any

from earmark.settings import Settings

Subparsers = Any  # argparse's _SubParsersAction


def add_serve(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API (with the sweeper and the flusher in-process)",
        description="Run the HTTP API with uvicorn. At start it migrates the durable record "
        "(EARMARK_DATABASE_URL) and, when the record holds stock, leaves a Redis that lost "
        "its data fenced until `earmark rebuild`; it runs the write-behind flusher "
        "in-process unless EARMARK_FLUSHER_IN_PROCESS=false. Without EARMARK_REDIS_URL it "
        "runs embedded (in-process fakeredis, for development and small single-process "
        "use): the flusher always runs, and each start restores the stock from the record "
        "(default the SQLite file ./earmark.db); live holds do not survive a restart. "
        "Authentication is decided at start: tokens are required (an empty key table "
        "lets nobody in), except with --no-auth or on the embedded first run without any "
        "key, both on a loopback address only and logged loudly.",
    )
    parser.add_argument("--host", help="bind address (default: EARMARK_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: EARMARK_PORT or 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (EARMARK_WORKERS)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without authentication: every request acts as 'anonymous' with every "
        "scope, API keys or not (loopback only; EARMARK_NO_AUTH)",
    )
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from earmark.api.server import serve  # uvicorn is imported only to serve

    overrides = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "no_auth": args.no_auth or None,
    }
    updates = {name: value for name, value in overrides.items() if value is not None}
    serve(Settings.model_validate({**settings.model_dump(), **updates}), access_log=args.access_log)
    return 0
