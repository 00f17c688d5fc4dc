"""AsyncEngine runs the same operations as Engine (one implementation, two drivers)."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest

from earmark import AsyncEngine, EngineConfig, InsufficientStock, ReservationReleased
from tests.support.backends import alevel_of, fresh_prefix
from tests.support.servers import RedisServer


async def test_the_async_engine_covers_every_operation() -> None:
    engine = AsyncEngine.embedded(EngineConfig(partitions=2), server=fakeredis.FakeServer())
    async with engine:
        assert (await engine.receive("A", 5)).on_hand == 5
        assert (await engine.adjust("A", 1, "found")).on_hand == 6
        await engine.receive("B", 2)
        held = await engine.reserve([("A", 2), ("B", 1)], idempotency_key="c")
        assert (await engine.reserve([("A", 2), ("B", 1)], idempotency_key="c")).id == held.id
        with pytest.raises(InsufficientStock):
            await engine.reserve([("B", 2)], idempotency_key="d")
        assert (await engine.extend(held.id, 60)).status == "held"
        assert (await engine.commit(held.id)).status == "committed"
        assert (await engine.ship(held.id)).status == "shipped"
        other = await engine.reserve([("A", 1)], idempotency_key="e")
        assert (await engine.release(other.id)).status == "released"
        with pytest.raises(ReservationReleased):
            await engine.commit(other.id)
        a, b = await engine.availability(["A", "B"])
        assert (a.on_hand, a.available, b.on_hand, b.available) == (4, 4, 1, 1)
        assert (await engine.get_reservation(held.id)).status == "shipped"
        assert (await alevel_of(engine, "A")).version > 0
        assert (await engine.sweep()).expired == 0


@pytest.mark.redis_server
async def test_concurrent_calls_share_pipelines_and_survive_a_script_flush(
    redis_server: RedisServer,
) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    async with engine:
        await engine.receive("A", 100)
        pipelines = 0
        real_pipeline = engine.client.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            nonlocal pipelines
            pipelines += 1
            return real_pipeline(*args, **kwargs)

        engine.client.pipeline = counting_pipeline
        await engine.client.script_flush()  # every coalesced call meets NOSCRIPT first
        held = await asyncio.gather(
            *(engine.reserve([("A", 1)], idempotency_key=f"k{i}") for i in range(60))
        )
        assert {h.status for h in held} == {"held"}
        assert pipelines < 10  # 60 calls, a handful of pipelines
        assert (await alevel_of(engine, "A")).reserved == 60


@pytest.mark.redis_server
async def test_callers_beyond_the_pool_queue_fairly_without_coalescing(
    redis_server: RedisServer,
) -> None:
    """More callers than connections: they queue in the engine (FIFO) instead of at the
    pool, where newcomers overtake waiters. A pool that gives up at once proves it."""
    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        redis_server.url, decode_responses=True, max_connections=4, timeout=0.001
    )
    engine = AsyncEngine(
        redis.asyncio.Redis.from_pool(pool),
        EngineConfig(prefix=fresh_prefix()),
        coalesce=False,
        max_connections=4,
    )
    async with engine:
        await engine.receive("A", 1000)
        held = await asyncio.gather(
            *(engine.reserve([("A", 1)], idempotency_key=f"q{i}") for i in range(300))
        )
        assert len({h.id for h in held}) == 300
        assert (await alevel_of(engine, "A")).reserved == 300
