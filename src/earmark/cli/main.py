"""The ``earmark`` command.

Each subcommand is one ``add_<name>(subparsers)`` function that builds its parser and
sets ``handler``; ``COMMANDS`` lists them. A handler takes the parsed arguments and the
settings and returns the exit code. To add a subcommand, write its ``add_`` function
and append it to ``COMMANDS``. ``earmark status`` prints the sections of
``STATUS_SECTIONS`` in order; append a function there to add one.

Exit codes: 0 done; 1 the command ran and found a problem (drift, a refused rebuild, a
drain that could not finish); 2 it could not run (configuration, connection, bad input).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import redis.exceptions

from earmark.api.app import StartupRefused
from earmark.cli.common import (
    Handler,
    Subparsers,
    started_engine,
    sync_engine,
    table,
)
from earmark.cli.stock import add_ledger, add_po, add_stock
from earmark.durable import service as durable
from earmark.durable.flusher import DRAIN_TIMEOUT_SECONDS_DEFAULT
from earmark.durable.rebuild import Drift, RebuildReport, VerifyReport
from earmark.engine.ops import apikeys
from earmark.engine.sweeper import SWEEP_ERRORS, run_sweeper
from earmark.engine.sync_engine import Engine
from earmark.errors import EarmarkError, RebuildRefused
from earmark.models import StockLevel
from earmark.settings import Settings, get_settings
from earmark.store import ledger

STATUS_ROWS_DEFAULT = 200
STATUS_ROWS_MAX = 10_000
AVAILABILITY_CHUNK = 1_000  # limits.SKUS_PER_READ_MAX
# What the durable record's drivers raise that is not ours (a bad URL, a missing
# database, refused credentials): a message, not a traceback.
DATABASE_ERRORS = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError)
# Redis could not be reached (refused, timed out, wrong password): a message, exit 2.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


# -- serve ---------------------------------------------------------------------------


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
        "Without API keys it only binds to a loopback address, with auth off.",
    )
    parser.add_argument("--host", help="bind address (default: EARMARK_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: EARMARK_PORT or 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (EARMARK_WORKERS)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from earmark.api.server import serve  # uvicorn is only imported to serve

    overrides = {"host": args.host, "port": args.port, "workers": args.workers}
    updates = {name: value for name, value in overrides.items() if value is not None}
    serve(Settings.model_validate({**settings.model_dump(), **updates}), access_log=args.access_log)
    return 0


# -- sweep ---------------------------------------------------------------------------


def add_sweep(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="expire overdue holds once (or --loop)",
        description="Expire overdue holds and resolve stale multi-partition pins: one pass, "
        "or with --loop one pass every --interval seconds until interrupted. `serve` "
        "already runs this in-process.",
    )
    parser.add_argument("--loop", action="store_true", help="keep sweeping until interrupted")
    parser.add_argument(
        "--interval", type=float, help="seconds between passes (EARMARK_SWEEP_INTERVAL_SECONDS)"
    )
    parser.set_defaults(handler=run_sweep)


async def _sweep_forever(settings: Settings, interval: float) -> None:
    async with started_engine(settings, "sweep") as engine:
        await run_sweeper(engine, interval)


def run_sweep(args: argparse.Namespace, settings: Settings) -> int:
    if args.loop:
        interval = args.interval or settings.sweep_interval_seconds
        try:
            asyncio.run(_sweep_forever(settings, interval))
        except KeyboardInterrupt:
            return 0
        return 0
    with sync_engine(settings, "sweep") as engine:
        engine.start(initialize=False)
        try:
            report = engine.sweep()
        except SWEEP_ERRORS as error:
            print(f"earmark sweep: the pass failed: {error}", file=sys.stderr)
            return 1
    print(f"expired {report.expired} holds, resolved {report.pins_resolved} pins")
    return 0


# -- status --------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)


StatusSection = Callable[[Engine, Settings, argparse.Namespace], Section]


def add_status(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show stock buckets, live holds and the flusher's lag",
        description="Show the store, the buckets of every (sku, location) in the partitions' "
        "stock index, the number of live holds, and how far the durable record lags "
        "behind Redis (events waiting for the flusher, and the age of the oldest). Reads "
        "only, and only Redis.",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=STATUS_ROWS_DEFAULT,
        help=f"at most this many (sku, location) rows (default {STATUS_ROWS_DEFAULT})",
    )
    parser.set_defaults(handler=run_status)


def store_section(engine: Engine, settings: Settings, args: argparse.Namespace) -> Section:
    state = engine.state
    partitions = engine.partitions
    missing = [str(p) for p, g in enumerate(state.generations if state else ()) if not g]
    markers = f"missing in partitions {', '.join(missing)}" if missing else "present"
    return Section(
        "Store",
        [
            f"redis:       {settings.redis_description()}",
            f"prefix:      {settings.prefix}",
            f"partitions:  {partitions}",
            f"generation markers: {markers}",
        ],
    )


def stock_section(engine: Engine, settings: Settings, args: argparse.Namespace) -> Section:
    limit = max(1, min(args.limit, STATUS_ROWS_MAX))
    wanted = engine.indexed_stock(limit + 1)
    shown = wanted[:limit]
    levels: list[StockLevel] = []
    for start in range(0, len(shown), AVAILABILITY_CHUNK):
        levels += engine.availability(shown[start : start + AVAILABILITY_CHUNK])
    if not levels:
        return Section("Stock", ["(no stock received yet)"])
    headers = ("SKU", "LOCATION", "ON_HAND", "RESERVED", "COMMITTED", "AVAILABLE")
    rows = [(s.sku, s.location, s.on_hand, s.reserved, s.committed, s.available) for s in levels]
    lines = table(headers, rows)
    if len(wanted) > limit:
        lines.append(f"(first {limit} rows; raise --limit for more)")
    return Section("Stock", lines)


def holds_section(engine: Engine, settings: Settings, args: argparse.Namespace) -> Section:
    counts = engine.hold_counts()
    live = sum(c[0] for c in counts)
    overdue = sum(c[1] for c in counts)
    lines = [f"live holds:  {live}", f"overdue (expired, not yet swept): {overdue}"]
    if len(counts) > 1:
        rows = [(p, c[0], c[1]) for p, c in enumerate(counts)]
        lines += table(("PARTITION", "LIVE", "OVERDUE"), rows)
        lines.append("(a reservation spanning partitions counts once in each)")
    return Section("Holds", lines)


def durable_section(engine: Engine, settings: Settings, args: argparse.Namespace) -> Section:
    """The flusher's lag, from Redis alone (events not yet in the record)."""
    lag = engine.durable_lag()
    bound = settings.flusher_lag_seconds_max
    lines = [
        f"record:      {settings.database_description()}",
        f"flusher lag: {lag.events} events waiting, the oldest {lag.oldest_age_seconds:.3f}s old",
    ]
    if lag.oldest_age_seconds > bound:
        lines.append(
            f"(over EARMARK_FLUSHER_LAG_SECONDS_MAX={bound:g}s: /readyz fails. Is a flusher "
            "running, and is the record reachable?)"
        )
    if len(lag.partitions) > 1:
        rows = [(x.partition, x.events, f"{x.oldest_age_seconds:.3f}") for x in lag.partitions]
        lines += table(("PARTITION", "WAITING", "OLDEST_SECONDS"), rows)
    return Section("Durable record", lines)


STATUS_SECTIONS: list[StatusSection] = [
    store_section,
    stock_section,
    holds_section,
    durable_section,
]


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    with sync_engine(settings, "status") as engine:
        engine.start(initialize=False)
        for build in STATUS_SECTIONS:
            section = build(engine, settings, args)
            print(f"== {section.title} ==")
            print("\n".join(section.lines), end="\n\n")
    return 0


# -- keys ----------------------------------------------------------------------------


def add_keys(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="create, list or revoke API keys",
        description="Manage the API keys the HTTP API accepts as 'Authorization: Bearer'. "
        "Only a SHA-256 hash of each token is stored.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a key and print its token once",
        description="Create an API key NAME (the actor recorded on the events it writes) "
        "and print its token. The token is shown only this once.",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--scopes",
        required=True,
        help=f"comma-separated subset of {','.join(apikeys.SCOPES)}: read (GET), reserve "
        "(reserve, commit, release, extend), stock (receipts, adjustments, ship)",
    )
    create.set_defaults(handler=run_keys_create)
    listing = actions.add_parser(
        "list", help="list keys", description="List every key: name, scopes, creation time."
    )
    listing.set_defaults(handler=run_keys_list)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a key",
        description="Revoke the key NAME: servers refuse it within EARMARK_API_KEY_CACHE_SECONDS.",
    )
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=run_keys_revoke)


def run_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    scopes = apikeys.parse_scopes(args.scopes)
    with sync_engine(settings, "keys create") as engine:
        token, key = engine.run(apikeys.create_key(engine.keys, args.name, scopes))
    print(token)
    print(
        f"created API key {key.name!r} with scopes {','.join(sorted(key.scopes))}. "
        "This token is shown once and only its hash is stored: keep it now.",
        file=sys.stderr,
    )
    return 0


def run_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with sync_engine(settings, "keys list") as engine:
        keys = engine.run(apikeys.list_keys(engine.keys))
    if not keys:
        print("no API keys: `earmark serve` runs with auth off, and only on a loopback address")
        return 0
    rows = [
        (k.name, ",".join(sorted(k.scopes)), k.created_at.isoformat(timespec="seconds"))
        for k in keys
    ]
    print("\n".join(table(("NAME", "SCOPES", "CREATED"), rows)))
    return 0


def run_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with sync_engine(settings, "keys revoke") as engine:
        removed = engine.run(apikeys.revoke_key(engine.keys, args.name))
    if not removed:
        print(f"no API key named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked API key {args.name!r}")
    return 0


# -- the durable record ------------------------------------------------------------------


def add_migrate(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply the durable record's schema migrations",
        description="Apply the schema migrations that EARMARK_DATABASE_URL (PostgreSQL, or "
        "a SQLite file) has not had yet. Safe at any time and from several processes at "
        "once: applied migrations are skipped, and on PostgreSQL an advisory lock "
        "serialises migrators. `serve`, `flush`, `rebuild` and `verify` migrate on start "
        "as well. Needs no Redis.",
    )
    parser.set_defaults(handler=run_migrate)


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = asyncio.run(ledger.migrate(settings.database_url))
    where = settings.database_description()
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))} to {where}")
    else:
        print(f"{where} is up to date")
    return 0


def add_flush(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "flush",
        help="move events from Redis into the durable record",
        description="Run the write-behind flusher: record the events of every partition's "
        "stream in EARMARK_DATABASE_URL until interrupted (SIGINT or SIGTERM; the batch in "
        "hand is finished first). `serve` already runs one in-process unless "
        "EARMARK_FLUSHER_IN_PROCESS=false; several flushers may run at once, and none "
        "records an event twice. Needs EARMARK_REDIS_URL.",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="record every event waiting now, then exit (exit 1 if writers outpace it "
        f"for {DRAIN_TIMEOUT_SECONDS_DEFAULT:g}s)",
    )
    parser.set_defaults(handler=run_flush)


async def _flush(settings: Settings, once: bool) -> int:
    async with started_engine(settings, "flush") as engine:
        if once:
            return await durable.flush(engine, settings.database_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print("flushing until interrupted", file=sys.stderr)
        try:
            return await durable.flush(engine, settings.database_url, stop=stop)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def run_flush(args: argparse.Namespace, settings: Settings) -> int:
    try:
        handled = asyncio.run(_flush(settings, args.once))
    except TimeoutError as error:
        print(f"earmark flush: {error}; run it again, or run it without --once", file=sys.stderr)
        return 1
    print(f"flushed {handled} events into {settings.database_description()}")
    return 0


def add_rebuild(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "rebuild",
        help="restore Redis's stock from the durable record",
        description="Restore Redis from the durable record after Redis lost its data: "
        "every stock bucket as recorded, except reserved, which becomes 0 (holds live at "
        "the loss are gone; the record learns it through a holds_lost event); the stock "
        "index; committed, unshipped reservations, so they can still ship. Then stamp new "
        "generation markers, so selling resumes. Refused (exit 1) while any partition "
        "still has its marker: that Redis was not lost. Restart `earmark serve` processes "
        "afterwards if they started while Redis was fenced. Needs EARMARK_REDIS_URL.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild a Redis that still has its markers (e.g. after `earmark verify` "
        "found drift): fence it (writes refused from then on), flush what it holds into "
        "the record, expire its live holds, restore it from the record",
    )
    parser.set_defaults(handler=run_rebuild)


async def _rebuild(settings: Settings, force: bool) -> RebuildReport:
    async with started_engine(settings, "rebuild") as engine:
        return await durable.rebuild_from(engine, settings.database_url, force=force)


def run_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = asyncio.run(_rebuild(settings, args.force))
    except RebuildRefused as refused:
        live = refused.details.get("partitions")
        if live is None:  # the record and Redis disagree about the store itself
            print(f"earmark rebuild: refused: {refused}", file=sys.stderr)
            return 1
        print(
            f"earmark rebuild: refused: Redis still has generation markers on partitions "
            f"{', '.join(map(str, live))}, so it was not lost. Compare it with the record "
            "(`earmark verify`); `earmark rebuild --force` overwrites it from the record.",
            file=sys.stderr,
        )
        return 1
    print(f"rebuilt Redis from {settings.database_description()}:")
    print(durable.describe_rebuild(report))
    return 0


def add_verify(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="compare Redis with the durable record",
        description="Flush the events waiting in Redis, then compare every stock bucket "
        "in Redis with the record's stock_levels, per (sku, location). Prints each "
        "difference; exits 1 on drift, 0 when they agree. Under traffic, writes can land "
        "between the two reads: run it when the store is quiet. Needs EARMARK_REDIS_URL "
        "(not with --replay).",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="instead, sum every ledger event's deltas from zero and compare the result "
        "with stock_levels: exits 1 if any delta was skipped or applied twice. Needs "
        "only EARMARK_DATABASE_URL",
    )
    parser.set_defaults(handler=run_verify)


def drift_lines(drift: Sequence[Drift], first: str, second: str) -> list[str]:
    rows = [
        (d.sku, d.location, bucket, a, b, b - a)
        for d in drift
        for bucket, (a, b) in sorted(d.buckets.items())
    ]
    return table(("SKU", "LOCATION", "BUCKET", first, second, f"{second}-{first}"), rows)


async def _verify(settings: Settings) -> VerifyReport:
    async with started_engine(settings, "verify") as engine:
        return await durable.verify_against(engine, settings.database_url)


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    where = settings.database_description()
    if args.replay:
        replayed = asyncio.run(durable.replay_check_at(settings.database_url))
        summary = f"replayed {replayed.events} events over {replayed.checked} (sku, location)"
        if replayed.ok:
            print(f"{summary}: stock_levels of {where} agree with the ledger")
            return 0
        print(f"{summary}: stock_levels of {where} DISAGREE with the ledger:")
        print("\n".join(drift_lines(replayed.drift, "REPLAYED", "STOCK_LEVELS")))
        return 1
    report = asyncio.run(_verify(settings))
    summary = f"compared {report.checked} (sku, location) of {settings.redis_description()}"
    if report.lag.events:
        summary += f" ({report.lag.events} events still waiting: writers are active)"
    if report.ok:
        print(f"{summary}: Redis agrees with {where}")
        return 0
    print(f"{summary}: Redis DRIFTED from {where}:")
    print("\n".join(drift_lines(report.drift, "REDIS", "RECORD")))
    print("`earmark rebuild --force` restores Redis from the record.", file=sys.stderr)
    return 1


# -- entry point -------------------------------------------------------------------------

COMMANDS: list[Callable[[Subparsers], None]] = [
    add_serve,
    add_sweep,
    add_status,
    add_keys,
    add_migrate,
    add_flush,
    add_rebuild,
    add_verify,
    add_stock,
    add_po,
    add_ledger,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earmark",
        description="earmark: a Redis-backed stock reservation engine. Settings come from "
        "EARMARK_* environment variables (EARMARK_REDIS_URL, EARMARK_DATABASE_URL, ...).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    try:
        return handler(args, get_settings())
    except (EarmarkError, StartupRefused, ValueError) as error:
        print(f"earmark {command}: {error}", file=sys.stderr)
        return 2
    except (*DATABASE_ERRORS, *REDIS_ERRORS) as error:
        print(f"earmark {command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
