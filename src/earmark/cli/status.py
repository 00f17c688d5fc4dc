"""``earmark status``: the store, stock buckets, live holds and the flusher's lag, read
from Redis alone. Each section is a function in ``STATUS_SECTIONS``; append one to add it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from earmark.cli.common import (
    Subparsers,
    sync_engine,
    table,
)
from earmark.engine.sync_engine import Engine
from earmark.models import StockLevel
from earmark.settings import Settings

STATUS_ROWS_DEFAULT = 200
STATUS_ROWS_MAX = 10_000
AVAILABILITY_CHUNK = 1_000  # limits.SKUS_PER_READ_MAX
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
