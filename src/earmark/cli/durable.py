"""``earmark migrate | flush | rebuild | verify``: the durable record."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from earmark.cli.common import (
    Subparsers,
    started_engine,
    table,
)
from earmark.durable import service as durable
from earmark.durable.flusher import DRAIN_TIMEOUT_SECONDS_DEFAULT
from earmark.durable.rebuild import Drift, RebuildReport, VerifyReport
from earmark.errors import RebuildRefused
from earmark.settings import Settings
from earmark.store import ledger


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
        "every stock bucket as recorded, except reserved, which keeps only the channel "
        "allocations (holds live at the loss are gone; the record learns it through a "
        "holds_lost event); the stock index; committed, unshipped reservations, so they "
        "can still ship; channel rules and reorder settings; every drop's "
        "rules and its customers' committed units (not its waitlist). Then stamp new "
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
