"""Helpers for the durable-record suites: polling, stream and stock snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from earmark import AsyncEngine
from earmark.durable.flusher import Flusher
from earmark.engine.ops.status import stream_lag
from earmark.engine.steps import run_commands
from earmark.store.ledger import BUCKETS, Ledger, migrations, open_ledger

POLL_INTERVAL_SECONDS = 0.02


async def migrated(url: str) -> Ledger:
    ledger = open_ledger(url)
    await ledger.migrate()
    return ledger


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_seconds: float = 30.0, what: str = "condition"
) -> None:
    """Polls ``check`` until it holds; fails the test after ``timeout_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_seconds}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def caught_up(engine: AsyncEngine, partitions: int | None = None) -> bool:
    lag = await run_commands(
        engine.client, stream_lag(engine.keys, partitions or engine.partitions)
    )
    return lag.events == 0


async def stream_total(engine: AsyncEngine) -> int:
    """Entries now in the partition streams (before any flush: every event written)."""
    lengths = [await engine.client.xlen(engine.keys.events(p)) for p in range(engine.partitions)]
    return int(sum(lengths))


async def events_written(engine: AsyncEngine) -> int:
    """Every entry ever added to the partition streams (trimming does not lower it)."""
    total = 0
    for p in range(engine.partitions):
        key = engine.keys.events(p)
        if await engine.client.exists(key):
            total += int((await engine.client.xinfo_stream(key))["entries-added"])
    return total


async def raw_levels(engine: AsyncEngine) -> dict[tuple[str, str], dict[str, int]]:
    """Every stock hash in Redis as stored (the buckets the ledger mirrors)."""
    found = {}
    for p in range(engine.partitions):
        for member in await engine.client.smembers(engine.keys.stock_index(p)):
            sku, location = member.split(":", 1)
            raw = await engine.client.hgetall(engine.keys.stock(p, sku, location))
            found[(sku, location)] = {b: int(raw.get(b, 0)) for b in BUCKETS}
    return found


async def recorded_levels(ledger: Ledger) -> dict[tuple[str, str], dict[str, int]]:
    return {
        (x.sku, x.location): {b: int(getattr(x, b)) for b in BUCKETS}
        for x in await ledger.stock_levels()
    }


async def run_flusher(flusher: Flusher) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(flusher.run(stop))


async def stop_flusher(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def recorded_status(ledger: Ledger, reservation_id: str) -> str:
    record = await ledger.reservation(reservation_id)
    assert record is not None, f"{reservation_id} is not in the record"
    return record.status


# Every migration a new record gets, and how `earmark migrate` lists them.
ALL_MIGRATIONS = [m.version for m in migrations("sqlite")]
MIGRATIONS_APPLIED = ", ".join(map(str, ALL_MIGRATIONS))


async def lose_redis(first: AsyncEngine, url: str, ledger: Ledger) -> AsyncEngine:
    """Drains ``first`` into ``ledger`` (verify must agree), wipes the Redis at ``url``
    (FLUSHALL: Redis lost), closes ``first`` and returns a new engine on the empty Redis,
    started fenced (as ``start_engine`` starts one once the record holds stock)."""
    from earmark.durable.rebuild import verify

    drained = await verify(first, ledger)
    assert drained.ok, drained.drift
    await first.client.flushall()
    await first.close()
    second = AsyncEngine.from_url(url, first.config)
    await second.start(initialize=False)
    return second
