"""Concurrent reserves on two channels against a real redis-server and a real Redis
Cluster: never an oversell, and never a unit of one channel's buffer or allocation taken
by the other (docs/channels.md). Asyncio tasks also go through the batched reserve path
(reserve_batch), which runs the same cart function."""

from __future__ import annotations

import asyncio

import pytest

from earmark import AsyncEngine, EngineConfig, InsufficientStock
from tests.support.backends import alevel_of, fresh_prefix
from tests.support.servers import RedisCluster, RedisServer

UNITS = 60
FENCED = 10  # allocated to marketplace
BUFFER = 20  # kept back from marketplace (of the 50 shared)
SHOPPERS = 150  # per channel, each wanting one unit


async def race(engine: AsyncEngine) -> dict[str, int]:
    await engine.receive("HOT", UNITS)
    await engine.allocate("marketplace", "HOT", qty=FENCED)
    await engine.set_channel("marketplace", buffer_units=BUFFER)

    async def shopper(channel: str, n: int) -> str | None:
        try:
            await engine.reserve(
                [("HOT", 1)], idempotency_key=f"{channel}-{n}", channel=channel, ttl_seconds=60
            )
        except InsufficientStock:
            return None
        return channel

    tasks = [shopper(c, n) for n in range(SHOPPERS) for c in ("marketplace", "web")]
    won = [c for c in await asyncio.gather(*tasks) if c is not None]
    return {c: won.count(c) for c in ("marketplace", "web")}


async def check(engine: AsyncEngine) -> None:
    held = await race(engine)
    level = await alevel_of(engine, "HOT")
    # never oversold: every unit is held once at most
    assert held["marketplace"] + held["web"] <= UNITS
    assert level.reserved == held["marketplace"] + held["web"] and level.available >= 0
    # web never takes marketplace's allocation: at most the 50 shared units
    assert held["web"] <= UNITS - FENCED
    # marketplace never takes its buffer: its fence plus what the shared pool showed it
    assert held["marketplace"] <= FENCED + (UNITS - FENCED - BUFFER)
    # and marketplace always gets its fence: web cannot reach it
    assert held["marketplace"] >= FENCED
    # demand far beyond supply: every unit ends up held (web drains the shared pool)
    assert held["marketplace"] + held["web"] == UNITS and level.available == 0


@pytest.mark.redis_server
async def test_two_channels_race_on_a_redis_server(redis_server: RedisServer) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    async with engine:
        await check(engine)


@pytest.mark.cluster
async def test_two_channels_race_on_a_cluster(redis_cluster: RedisCluster) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = AsyncEngine.from_url(redis_cluster.url, config, cluster=True)
    async with engine:
        await check(engine)
