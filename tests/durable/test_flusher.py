"""The write-behind flusher against a real redis-server and a real PostgreSQL: exactness,
replays, a flusher killed with SIGKILL mid-batch, PostgreSQL going away during a burst,
and two flushers racing over one burst."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import earmark.durable.flusher
from earmark import AsyncEngine, EarmarkError, InsufficientStock
from earmark.durable.flusher import GROUP_DEFAULT, Flusher
from earmark.durable.rebuild import replay_check, verify
from earmark.errors import LedgerMismatch, LedgerUnavailable
from earmark.store.ledger import Event, Ledger, open_ledger
from tests.support.durable import (
    ALL_MIGRATIONS,
    caught_up,
    events_written,
    eventually,
    raw_levels,
    recorded_levels,
    run_flusher,
    stop_flusher,
    stream_total,
)
from tests.support.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
SKUS = ["TEE-S", "TEE-M", "TEE-L", "CAP", "MUG", "SOCK"]


async def stock_up(engine: AsyncEngine, units: int = 1_000) -> None:
    for sku in SKUS:
        await engine.receive(sku, units, reference="PO-1")


async def sell(engine: AsyncEngine, carts: int, seed: int, concurrency: int = 16) -> None:
    """``carts`` reservations, each then committed (and maybe shipped), released or left
    held; many at once, as a storm of checkout calls would."""
    rng = random.Random(seed)
    plans = [
        (rng.sample(SKUS, rng.randint(1, 2)), rng.random(), rng.random()) for _ in range(carts)
    ]
    gate = asyncio.Semaphore(concurrency)

    async def checkout(i: int, skus: list[str], fate: float, ship: float) -> None:
        async with gate:
            try:
                held = await engine.reserve(
                    [(sku, 1 + i % 3) for sku in skus], idempotency_key=f"{seed}-{i}"
                )
            except InsufficientStock:
                return
            if fate < 0.6:
                await engine.commit(held.id)
                if ship < 0.5:
                    await engine.ship(held.id)
            elif fate < 0.85:
                await engine.release(held.id)

    await asyncio.gather(*(checkout(i, *plan) for i, plan in enumerate(plans)))


async def assert_exact(engine: AsyncEngine, ledger: Ledger, events: int) -> None:
    """The record holds every event once, its stock equals Redis bucket for bucket, and
    replaying the ledger from zero reproduces its stock."""
    assert await count_rows(ledger) == events
    assert await recorded_levels(ledger) == await raw_levels(engine)
    replay = await replay_check(ledger)
    assert replay.ok, replay.drift
    assert replay.events == events


async def count_rows(ledger: Ledger) -> int:
    rows, after = 0, None
    while batch := await ledger.events(after, 10_000):
        rows, after = rows + len(batch), batch[-1].key
    return rows


# -- basics ------------------------------------------------------------------------------


async def test_a_flush_records_every_event_and_empties_the_streams(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await stock_up(aengine, 50)
    await aengine.adjust("CAP", -5, "cycle count")
    held = await aengine.reserve([("TEE-M", 2), ("MUG", 1)], idempotency_key="a", channel="web")
    await aengine.commit(held.id)
    shipped = await aengine.reserve([("CAP", 3)], idempotency_key="b")
    await aengine.commit(shipped.id)
    await aengine.ship(shipped.id)
    released = await aengine.reserve([("SOCK", 4)], idempotency_key="c")
    await aengine.release(released.id)
    open_hold = await aengine.reserve([("TEE-L", 1)], idempotency_key="d", ttl_seconds=600)
    await aengine.extend(open_hold.id, 900)
    events = await stream_total(aengine)

    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="f1", batch_size_max=4)
    assert await flusher.drain() == events
    await assert_exact(aengine, pg_ledger, events)
    assert flusher.stats.inserted == events
    assert await stream_total(aengine) == 0  # trimmed once recorded
    assert (await flusher.lag()).events == 0

    for reservation in (held, shipped, released, open_hold):
        recorded = await pg_ledger.reservation(reservation.id)
        assert recorded is not None
        live = await aengine.get_reservation(reservation.id)
        assert recorded.status == live.status
        assert set(recorded.to_model().lines) == set(live.lines)
    web = await pg_ledger.reservation(held.id)
    assert web is not None
    assert web.channel == "web"
    await flusher.close()


async def test_events_replayed_into_the_ledger_are_never_applied_twice(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await stock_up(aengine, 10)
    await sell(aengine, 20, seed=1)
    entries = []
    for p in range(aengine.partitions):
        entries += [(p, e) for e in await aengine.client.xrange(aengine.keys.events(p))]
    events = [Event.from_stream(p, eid, fields) for p, (eid, fields) in entries]
    assert await pg_ledger.persist(events[: len(events) // 2]) == len(events) // 2
    assert await pg_ledger.persist(events) == len(events) - len(events) // 2
    assert await pg_ledger.persist(events) == 0  # a full replay inserts nothing
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="f1")
    assert await flusher.drain() == len(events)  # the stream replays every entry again
    assert flusher.stats.inserted == 0
    await assert_exact(aengine, pg_ledger, len(events))
    await flusher.close()


async def test_on_recorded_is_called_only_for_batches_that_recorded_new_events(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    """The in-process webhook dispatcher wakes on it (docs/webhooks.md)."""
    calls: list[None] = []
    await stock_up(aengine, 10)
    flusher = Flusher.for_engine(
        aengine, pg_ledger, consumer="f1", on_recorded=lambda: calls.append(None)
    )
    assert await flusher.drain() == len(SKUS)
    assert len(calls) >= 1
    seen = len(calls)
    assert await flusher.drain() == 0
    assert len(calls) == seen  # nothing new recorded: no call
    await flusher.close()


async def test_lag_counts_waiting_events_and_the_age_of_the_oldest(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="f1")
    assert (await flusher.lag()).events == 0
    await stock_up(aengine, 5)
    await asyncio.sleep(0.05)  # the oldest event must be measurably old
    before = await flusher.lag()
    assert before.events == len(SKUS)
    assert 0.04 <= before.oldest_age_seconds < 30
    assert sum(x.events for x in before.partitions) == len(SKUS)
    await flusher.flush_once()
    await flusher.drain()
    after = await flusher.lag()
    assert (after.events, after.oldest_age_seconds) == (0, 0.0)
    await flusher.close()


async def test_a_record_of_another_store_is_refused(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await pg_ledger.bind_store("someone-else", 4)
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="f1")
    with pytest.raises(LedgerMismatch):
        await flusher.flush_once()
    await flusher.close()


async def test_migrations_apply_once(pg_url: str) -> None:
    assert await earmark.store.ledger.migrate(pg_url) == ALL_MIGRATIONS
    assert await earmark.store.ledger.migrate(pg_url) == []
    ledger = open_ledger(pg_url)
    assert not await ledger.has_stock()
    await ledger.close()


# -- crashes and outages ---------------------------------------------------------------------


def spawn_flusher(
    redis_url: str, engine: AsyncEngine, ledger_url: str, consumer: str, delay_ms: int
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.support.flusher_proc", redis_url, engine.keys.prefix]
    cmd += [str(engine.partitions), ledger_url, consumer, "--batch", "3"]
    cmd += ["--delay-ms", str(delay_ms)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


async def test_a_flusher_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    aengine: AsyncEngine, pg_ledger: Ledger, pg_url: str, redis_server: RedisServer
) -> None:
    await stock_up(aengine, 100)
    await sell(aengine, 60, seed=2)
    events = await stream_total(aengine)
    proc = spawn_flusher(redis_server.url, aengine, pg_url, "doomed", delay_ms=150)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "flushing"

        async def mid_batch() -> bool:  # some events recorded, a batch read but not acked
            pending = 0
            for p in range(aengine.partitions):
                key = aengine.keys.events(p)
                groups = (
                    await aengine.client.xinfo_groups(key)
                    if await aengine.client.exists(key)
                    else []
                )
                pending += sum(g["pending"] for g in groups if g["name"] == GROUP_DEFAULT)
            return pending > 0 and 0 < await count_rows(pg_ledger) < events

        await eventually(mid_batch, what="the flusher to be mid-batch")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    recorded_by_the_dead = await count_rows(pg_ledger)
    assert recorded_by_the_dead < events

    heir = Flusher.for_engine(aengine, pg_ledger, consumer="heir", claim_idle_ms=200)
    stop, task = await run_flusher(heir)
    await eventually(lambda: caught_up(aengine), what="the heir to catch up")
    await stop_flusher(stop, task)
    assert heir.stats.claimed > 0  # it took over the dead flusher's pending entries
    assert heir.stats.inserted == events - recorded_by_the_dead
    await assert_exact(aengine, pg_ledger, events)
    await heir.close()


async def test_postgres_down_during_a_burst_then_everything_flushes(
    aengine: AsyncEngine,
    pg_ledger: Ledger,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(earmark.durable.flusher, "BACKOFF_MS_MAX", 400)
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="f1", batch_size_max=50, block_ms=10)
    stop, task = await run_flusher(flusher)
    await stock_up(aengine, 500)
    burst = asyncio.create_task(sell(aengine, 150, seed=3, concurrency=4))
    try:
        await eventually(lambda: _recorded_more_than(pg_ledger, 20), what="the burst to flush")
        postgres_server.stop()  # mid-burst
        try:
            with pytest.raises(LedgerUnavailable):
                await pg_ledger.has_stock()
            await burst
            await sell(aengine, 100, seed=5)  # selling goes on: Redis alone decides
            waiting = await flusher.lag()
            assert waiting.events >= 100
            await eventually(lambda: _failed(flusher), what="the flusher to notice the outage")
        finally:
            postgres_server.start()
    finally:
        await burst
    # Well inside the claim_idle_ms it would take to recover stranded entries by claiming.
    await eventually(lambda: caught_up(aengine), timeout_seconds=10, what="the catch-up")
    await stop_flusher(stop, task)
    report = await verify(aengine, pg_ledger, flush=False)
    assert report.ok, report.drift
    await assert_exact(aengine, pg_ledger, await events_written(aengine))
    assert flusher.stats.failures > 0
    await flusher.close()


async def _recorded_more_than(ledger: Ledger, rows: int) -> bool:
    return await count_rows(ledger) > rows


async def _failed(flusher: Flusher) -> bool:
    return flusher.stats.failures > 0


async def test_two_flushers_over_one_burst_apply_every_event_once(
    aengine: AsyncEngine, pg_url: str, pg_ledger: Ledger
) -> None:
    await stock_up(aengine, 400)
    second_ledger = open_ledger(pg_url)  # as if in another process: its own pool
    first = Flusher.for_engine(aengine, pg_ledger, consumer="one", batch_size_max=7, block_ms=5)
    second = Flusher.for_engine(
        aengine, second_ledger, consumer="two", batch_size_max=5, block_ms=5, claim_idle_ms=20
    )
    runs = [await run_flusher(first), await run_flusher(second)]
    await sell(aengine, 200, seed=4)
    await eventually(lambda: caught_up(aengine), what="both flushers to catch up")
    for stop, task in runs:
        await stop_flusher(stop, task)
    events = await events_written(aengine)
    assert first.stats.inserted + second.stats.inserted == events
    assert first.stats.events > 0
    assert second.stats.events > 0
    await assert_exact(aengine, pg_ledger, events)
    await second_ledger.close()
    for flusher in (first, second):
        await flusher.close()


def test_an_event_on_an_unknown_bucket_is_refused_not_half_applied() -> None:
    fields = {"type": "teleported", "sku": "X", "location": "default", "deltas": '{"aura": 1}'}
    with pytest.raises(EarmarkError, match="unknown buckets"):
        Event.from_stream(0, "1-0", fields)


class VanishingRedis:
    """A ledger that, as soon as a batch is recorded, loses every stream (Redis died and
    came back empty between the commit and the XACK)."""

    def __init__(self, inner: Ledger, engine: AsyncEngine) -> None:
        self.inner, self.engine = inner, engine
        self.dialect = inner.dialect

    async def persist(self, events: Sequence[Event]) -> int:
        inserted = await self.inner.persist(events)
        for p in range(self.engine.partitions):
            await self.engine.client.delete(self.engine.keys.events(p))
        return inserted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_stream_lost_between_the_commit_and_the_ack_is_not_an_error(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await aengine.receive("A", 3)
    ledger: Any = VanishingRedis(pg_ledger, aengine)
    flusher = Flusher(aengine.client, aengine.keys, aengine.partitions, ledger, consumer="f1")
    assert await flusher.flush_once() == 1
    assert await count_rows(pg_ledger) == 1
    assert await flusher.flush_once() == 0  # groups recreated, nothing left to read
