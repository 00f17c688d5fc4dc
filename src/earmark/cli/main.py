"""The ``earmark`` command: the parser and the entry point.

Each command group is a module of this package; each subcommand is one
``add_<name>(subparsers)`` function that builds its parser and sets ``handler``;
``COMMANDS`` lists them. A handler takes the parsed arguments and the
settings and returns the exit code. To add a subcommand, write its ``add_`` function
and append it to ``COMMANDS``. ``earmark status`` prints the sections of
``STATUS_SECTIONS`` in order; append a function there to add one.

Exit codes: 0 done; 1 the command ran and found a problem (drift, a refused rebuild, a
drain that could not finish); 2 it could not run (configuration, connection, bad input).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence

import asyncpg
import redis.exceptions

from earmark import __version__
from earmark.cli import (
    channels,
    drops,
    durable,
    keys,
    ledger,
    po,
    reconcile,
    reservations,
    seats,
    status,
    stock,
    sweep,
    webhooks,
)
from earmark.cli.common import Handler, Subparsers
from earmark.errors import EarmarkError
from earmark.settings import get_settings

# What the durable record's drivers raise that is not ours (a bad URL, a missing
# database, refused credentials): a message, not a traceback.
DATABASE_ERRORS = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError)
# Redis could not be reached (refused, timed out, wrong password): a message, exit 2.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


# The command groups of this package, in --help order. ``earmark serve`` belongs to the
# API (earmark.api.command); the console script (earmark.console) puts it first.
COMMANDS: list[Callable[[Subparsers], None]] = [
    sweep.add_sweep,
    status.add_status,
    keys.add_keys,
    durable.add_migrate,
    durable.add_flush,
    durable.add_rebuild,
    durable.add_verify,
    stock.add_stock,
    po.add_po,
    ledger.add_ledger,
    webhooks.add_webhooks,
    drops.add_drop,
    channels.add_channel,  # issue 13
    seats.add_seats,
    reconcile.add_reconcile,  # issue 15
    reservations.add_reservations,
]


def build_parser(
    commands: Sequence[Callable[[Subparsers], None]] = COMMANDS,
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earmark",
        description="earmark: a Redis-backed stock reservation engine. Settings come from "
        "EARMARK_* environment variables (EARMARK_REDIS_URL, EARMARK_DATABASE_URL, ...).",
    )
    parser.add_argument("--version", action="version", version=f"earmark {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in commands:
        add(subparsers)
    return parser


def main(
    argv: Sequence[str] | None = None,
    commands: Sequence[Callable[[Subparsers], None]] = COMMANDS,
) -> int:
    args = build_parser(commands).parse_args(argv)
    handler: Handler = args.handler
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    try:
        return handler(args, get_settings())
    except (EarmarkError, ValueError) as error:
        print(f"earmark {command}: {error}", file=sys.stderr)
        return 2
    except (*DATABASE_ERRORS, *REDIS_ERRORS) as error:
        print(f"earmark {command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
