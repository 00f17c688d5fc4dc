"""Property: whatever operations run, once flushed the durable record equals Redis bucket
for bucket, replaying the ledger from zero reproduces stock_levels, and every
reservation's recorded status is the engine's. PostgreSQL on a real redis-server, and
SQLite on the embedded engine (fakeredis), through the same flusher code."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark import (
    AsyncEngine,
    EngineConfig,
    InsufficientOnHand,
    InsufficientStock,
    ReservationNotHeld,
    WouldOversell,
)
from earmark.durable.flusher import Flusher
from earmark.durable.rebuild import replay_check
from earmark.store.ledger import Ledger
from tests.support.backends import fresh_prefix
from tests.support.durable import migrated, raw_levels, recorded_levels
from tests.support.servers import RedisServer

SKUS = ["A", "D", "TEE"]  # partitions 1, 0, 1 of 2: carts span partitions
LOCATIONS = ["default", "x"]
EXPECTED = (InsufficientStock, WouldOversell, InsufficientOnHand, ReservationNotHeld)
BASE = settings(
    deadline=None,
    derandomize=True,  # CI runs the same examples every time
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

where = st.tuples(st.sampled_from(SKUS), st.sampled_from(LOCATIONS))
operation = st.one_of(
    st.tuples(st.just("receive"), where, st.integers(1, 20)),
    st.tuples(st.just("adjust"), where, st.integers(-10, 10).filter(bool), st.booleans()),
    st.tuples(
        st.just("reserve"),
        st.lists(
            st.tuples(where, st.integers(1, 6)), min_size=1, max_size=3, unique_by=lambda x: x[0]
        ),
    ),
    st.tuples(st.sampled_from(["commit", "release", "ship", "extend"]), st.integers(0, 99)),
)
operations = st.lists(operation, min_size=3, max_size=30)


async def apply(engine: AsyncEngine, ops: list[tuple[Any, ...]]) -> list[str]:
    """Stocks every (sku, location), then runs the operations; refusals the engine is meant
    to make are part of the game. Returns the reservations made."""
    for sku in SKUS:
        for location in LOCATIONS:
            await engine.receive(sku, 15, location=location)
    held: list[str] = []
    for i, (name, *args) in enumerate(ops):
        try:
            if name == "receive":
                (sku, location), qty = args
                await engine.receive(sku, qty, location=location)
            elif name == "adjust":
                (sku, location), delta, force = args
                await engine.adjust(sku, delta, "count", location=location, force=force)
            elif name == "reserve":
                lines = [(sku, qty, location) for (sku, location), qty in args[0]]
                reservation = await engine.reserve(lines, idempotency_key=f"k{i}", ttl_seconds=600)
                held.append(reservation.id)
            elif held:
                rid = held[args[0] % len(held)]
                if name == "extend":
                    await engine.extend(rid, 900)
                else:
                    await getattr(engine, name)(rid)
        except EXPECTED:
            continue
    return held


async def check(engine: AsyncEngine, ledger: Ledger, ops: list[tuple[Any, ...]]) -> None:
    held = await apply(engine, ops)
    flusher = Flusher.for_engine(engine, ledger, consumer="prop", batch_size_max=7)
    try:
        await flusher.drain()
    finally:
        await flusher.close()
    assert await recorded_levels(ledger) == await raw_levels(engine)
    replay = await replay_check(ledger)
    assert replay.ok, replay.drift
    for rid in held:
        recorded = await ledger.reservation(rid)
        assert recorded is not None
        assert recorded.status == (await engine.get_reservation(rid)).status


async def wipe(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE ledger, stock_levels, reservations, store_meta")
    finally:
        await conn.close()


@pytest.mark.redis_server
@pytest.mark.postgres
@settings(BASE, max_examples=30)
@given(ops=operations)
def test_postgres_record_equals_redis_and_its_own_replay(
    ops: list[tuple[Any, ...]], redis_server: RedisServer, pg_url: str
) -> None:
    async def scenario() -> None:
        await wipe_or_migrate(pg_url)
        engine = AsyncEngine.from_url(
            redis_server.url, EngineConfig(prefix=fresh_prefix(), partitions=2)
        )
        ledger = await migrated(pg_url)
        try:
            await engine.start()
            await check(engine, ledger, ops)
        finally:
            await ledger.close()
            await engine.close()

    asyncio.run(scenario())


async def wipe_or_migrate(url: str) -> None:
    ledger = await migrated(url)
    await ledger.close()
    await wipe(url)


@settings(BASE, max_examples=15)
@given(ops=operations)
def test_sqlite_record_equals_the_embedded_engine_and_its_own_replay(
    ops: list[tuple[Any, ...]], tmp_path: Path
) -> None:
    async def scenario() -> None:
        config = EngineConfig(prefix=fresh_prefix(), partitions=2)
        engine = AsyncEngine.embedded(config, server=fakeredis.FakeServer())
        ledger = await migrated(f"sqlite:///{tmp_path}/{uuid.uuid4().hex}.db")
        try:
            await engine.start()
            await check(engine, ledger, ops)
        finally:
            await ledger.close()
            await engine.close()

    asyncio.run(scenario())
