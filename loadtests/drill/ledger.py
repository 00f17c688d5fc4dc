"""Reads the durable record for the drill, in a process of its own.

The ledger stores are asyncio code (asyncpg, sqlite3 in worker threads); Locust's process
is monkey-patched by gevent, where that is not safe. So the locustfile runs::

    python -m loadtests.drill.ledger --database-url URL [--redis-url URL --prefix P] SKU...

which prints one JSON object: the record's levels of those SKUs; what
``earmark verify --replay`` reports (the ledger's events summed from zero against
stock_levels); and, when the Redis is reachable from here (a drill that started its own
Redis), what ``earmark flush --once`` and ``earmark verify`` would report: the events
flushed and any Redis/record drift.
With an embedded store (Redis inside the server process) only the server's own
flusher can move events, so the caller waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.drill.verdict import DrillError, LedgerReading, Level

ROOT = Path(__file__).resolve().parents[2]
READ_TIMEOUT_SECONDS = 90.0  # the flush inside drains for at most 60 s (rebuild.DRAIN_...)
STDERR_SHOWN_CHARS_MAX = 600


class SubprocessLedger:
    """A ``verdict.LedgerSource`` that runs this module as a subprocess per read."""

    def __init__(self, database_url: str, redis_url: str | None = None, prefix: str = "em") -> None:
        self.database_url, self.redis_url, self.prefix = database_url, redis_url, prefix

    def command(self, skus: Sequence[str], location: str) -> list[str]:
        command = [sys.executable, "-m", "loadtests.drill.ledger"]
        command += ["--database-url", self.database_url, "--location", location]
        if self.redis_url:
            command += ["--redis-url", self.redis_url, "--prefix", self.prefix]
        return [*command, "--", *skus]

    def read(self, skus: Sequence[str], location: str) -> LedgerReading:
        try:
            done = subprocess.run(
                self.command(skus, location),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=READ_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DrillError(f"the ledger reader failed: {error}") from error
        if done.returncode != 0:
            raise DrillError(done.stderr.strip()[-STDERR_SHOWN_CHARS_MAX:] or "no output")
        return parse(json.loads(done.stdout))


def parse(payload: dict[str, Any]) -> LedgerReading:
    return LedgerReading(
        levels=[Level.from_json(item) for item in payload["levels"]],
        drift=tuple(payload.get("drift", ())),
        flushed_events=payload.get("flushed"),
    )


# -- the subprocess ------------------------------------------------------------------------


def describe(drift: Sequence[Any], copies: str) -> list[str]:
    """One line per drifted (sku, location): ``bucket first/second`` for each bucket."""
    return [
        f"{copies} drift on {d.sku}@{d.location}: "
        + ", ".join(f"{bucket} {a}/{b}" for bucket, (a, b) in sorted(d.buckets.items()))
        for d in drift
    ]


async def flush_and_verify(redis_url: str, prefix: str, database_url: str) -> dict[str, Any]:
    """``earmark flush --once`` then ``earmark verify``, through the library."""
    from earmark.durable import service as durable
    from earmark.engine.async_engine import AsyncEngine
    from earmark.engine.config import EngineConfig

    engine = AsyncEngine.from_url(redis_url, EngineConfig(prefix=prefix))
    try:
        await engine.start(initialize=False)
        flushed = await durable.flush(engine, database_url)
        report = await durable.verify_against(engine, database_url)
    finally:
        await engine.close()
    return {"flushed": flushed, "drift": describe(report.drift, "Redis/ledger")}


async def replay_drift(database_url: str) -> list[str]:
    """``earmark verify --replay``: the ledger's events summed from zero against
    stock_levels (a delta applied twice or skipped shows here)."""
    from earmark.durable import service as durable

    report = await durable.replay_check_at(database_url)
    return describe(report.drift, "replayed/stock_levels")


async def recorded_levels(database_url: str, skus: Sequence[str], location: str) -> list[Any]:
    from earmark.store.ledger import open_ledger

    ledger = open_ledger(database_url)
    try:
        levels = await ledger.stock_levels()
    finally:
        await ledger.close()
    wanted = set(skus)
    return [
        level.model_dump() for level in levels if level.sku in wanted and level.location == location
    ]


async def read(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"drift": []}
    if args.redis_url:
        result.update(await flush_and_verify(args.redis_url, args.prefix, args.database_url))
    result["drift"] += await replay_drift(args.database_url)
    result["levels"] = await recorded_levels(args.database_url, args.skus, args.location)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.drill.ledger",
        description="Print the durable record's stock levels of SKUs as JSON.",
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--location", default="default")
    parser.add_argument("--redis-url", help="flush and verify against this Redis first")
    parser.add_argument("--prefix", default="em", help="the server's EARMARK_PREFIX")
    parser.add_argument("skus", nargs="+", metavar="SKU")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(read(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
