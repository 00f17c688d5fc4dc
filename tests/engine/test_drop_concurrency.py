"""300 customers race for a drop of 50 units with a limit of 2 each, on a real
redis-server and on a real Redis Cluster: 50 sold, nobody above the limit, nothing
oversold; then repeat shoppers send 5 carts each at once and none gets past the limit."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from earmark import (
    AsyncEngine,
    CustomerLimitExceeded,
    EngineConfig,
    InsufficientStock,
    RateLimited,
)
from tests.support.backends import alevel_of, fresh_prefix
from tests.support.servers import RedisCluster, RedisServer

CUSTOMERS, UNITS, LIMIT, ATTEMPTS = 300, 50, 2, 3


async def race(engine: AsyncEngine) -> Counter[str]:
    """Every customer tries ATTEMPTS carts of one unit at once; returns units held per
    customer (all committed)."""
    seconds, _ = await engine.client.time()
    opens = datetime.fromtimestamp(int(seconds), tz=UTC) - timedelta(seconds=5)
    await engine.receive("DROP-TEE", UNITS)
    await engine.create_drop("launch", ["DROP-TEE"], opens_at=opens, per_customer_limit=LIMIT)
    start = asyncio.Event()
    held: Counter[str] = Counter()
    refusals: Counter[str] = Counter()

    async def shopper(n: int, attempt: int) -> None:
        await start.wait()
        customer = f"Customer-{n}" if attempt % 2 else f"  customer-{n}  "  # one identity
        try:
            rsv = await engine.reserve(
                [("DROP-TEE", 1)], idempotency_key=f"c{n}-{attempt}", customer=customer
            )
        except (InsufficientStock, CustomerLimitExceeded, RateLimited) as error:
            refusals[error.code] += 1
            return
        await engine.commit(rsv.id)
        held[f"customer-{n}"] += 1

    tasks = [asyncio.create_task(shopper(n, a)) for n in range(CUSTOMERS) for a in range(ATTEMPTS)]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*tasks)
    assert refusals["insufficient_stock"] > 0
    return held


async def repeat_shoppers(engine: AsyncEngine) -> Counter[str]:
    """20 customers each send 5 carts at once for a drop with stock to spare: the limit,
    not the stock, stops them; returns units held per customer."""
    seconds, _ = await engine.client.time()
    opens = datetime.fromtimestamp(int(seconds), tz=UTC) - timedelta(seconds=5)
    await engine.receive("DROP-CAP", 1000)
    await engine.create_drop("caps", ["DROP-CAP"], opens_at=opens, per_customer_limit=LIMIT)
    held: Counter[str] = Counter()
    refused: Counter[str] = Counter()

    async def attempt(n: int, a: int) -> None:
        try:
            await engine.reserve(
                [("DROP-CAP", 1)], idempotency_key=f"cap{n}-{a}", customer=f"repeat-{n}"
            )
        except (CustomerLimitExceeded, RateLimited) as error:
            refused[error.code] += 1
            return
        held[f"repeat-{n}"] += 1

    await asyncio.gather(*(attempt(n, a) for n in range(20) for a in range(5)))
    assert max(held.values()) <= LIMIT
    assert sum(refused.values()) == 100 - sum(held.values()) >= 60
    level = await alevel_of(engine, "DROP-CAP")
    assert level.reserved == sum(held.values())
    return held


def check(held: Counter[str]) -> None:
    assert sum(held.values()) == UNITS
    assert max(held.values()) <= LIMIT


async def test_three_hundred_customers_race_for_fifty_units(redis_server: RedisServer) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    async with engine:
        held = await race(engine)
        check(held)
        level = await alevel_of(engine, "DROP-TEE")
        assert (level.committed, level.reserved, level.available) == (UNITS, 0, 0)
        assert (await engine.get_drop("launch")).sold == UNITS
        await repeat_shoppers(engine)


@pytest.mark.cluster
async def test_three_hundred_customers_race_on_the_cluster(redis_cluster: RedisCluster) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = AsyncEngine.from_url(redis_cluster.url, config, cluster=True)
    async with engine:
        held = await race(engine)
        check(held)
        level = await alevel_of(engine, "DROP-TEE")
        assert (level.committed, level.reserved, level.available) == (UNITS, 0, 0)
        await repeat_shoppers(engine)
