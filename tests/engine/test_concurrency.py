"""Real concurrent clients against a real redis-server: the race for the last units."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from earmark import AsyncEngine, Engine, EngineConfig, InsufficientStock
from tests.support.backends import alevel_of, fresh_prefix, level_of
from tests.support.servers import RedisCluster, RedisServer

pytestmark = pytest.mark.redis_server

CLIENTS = 250
UNITS = 50


def event_types(engine: Engine) -> Counter[str]:
    counts: Counter[str] = Counter()
    for p in range(engine.partitions):
        for _, fields in engine.client.xrange(engine.keys.events(p)):
            counts[fields["type"]] += 1
    return counts


def test_threads_race_for_fifty_units(redis_server: RedisServer) -> None:
    engine = Engine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix())).start()
    engine.receive("HOT", UNITS)
    start = threading.Barrier(CLIENTS)
    held: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        start.wait()
        try:
            # long enough that no hold expires while 250 threads race on a loaded machine
            reservation = engine.reserve([("HOT", 1)], idempotency_key=f"c{n}", ttl_seconds=3)
        except InsufficientStock:
            with lock:
                refused.append(n)
        else:
            with lock:
                held.append(reservation.id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(held), len(refused)) == (UNITS, CLIENTS - UNITS)
    level = level_of(engine, "HOT")
    assert (level.on_hand, level.reserved, level.available) == (UNITS, UNITS, 0)

    # 20 commit, 15 release, 15 are left to expire.
    for rid in held[:20]:
        engine.commit(rid)
    for rid in held[20:35]:
        engine.release(rid)
    time.sleep(3.2)
    assert engine.sweep().expired == 15
    level = level_of(engine, "HOT")
    assert (level.on_hand, level.reserved, level.committed, level.available) == (50, 0, 20, 30)
    raw = engine.client.hgetall(engine.keys.stock(0, "HOT", "default"))
    assert (raw["reserved"], raw["committed"]) == ("0", "20")
    assert event_types(engine) == Counter(
        received=1, reserved=50, committed=20, released=15, expired=15
    )
    engine.close()


async def race(engine: AsyncEngine, clients: int, cart: list[tuple[str, int]]) -> list[str]:
    start = asyncio.Event()

    async def client(n: int) -> str | None:
        await start.wait()
        try:
            return (await engine.reserve(cart, idempotency_key=f"a{n}", ttl_seconds=30)).id
        except InsufficientStock:
            return None

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    await asyncio.sleep(0)
    start.set()
    return [rid for rid in await asyncio.gather(*tasks) if rid is not None]


async def test_asyncio_tasks_race_for_fifty_units(redis_server: RedisServer) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    async with engine:
        await engine.receive("HOT", UNITS)
        held = await race(engine, 300, [("HOT", 1)])
        assert len(held) == UNITS
        results = await asyncio.gather(*(engine.commit(rid) for rid in held[:25]))
        assert {r.status for r in results} == {"committed"}
        await asyncio.gather(*(engine.release(rid) for rid in held[25:]))
        level = await alevel_of(engine, "HOT")
        assert (level.reserved, level.committed, level.available) == (0, 25, 25)


@pytest.mark.cluster
async def test_carts_spanning_partitions_race_without_partial_holds(
    redis_cluster: RedisCluster,
) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = AsyncEngine.from_url(redis_cluster.url, config, cluster=True)
    async with engine:
        skus = ["SKU-0", "SKU-1"]
        assert len({engine.partition_of(s) for s in skus}) == 2
        await engine.receive("SKU-0", 30)
        await engine.receive("SKU-1", 50)
        cart = [("SKU-0", 1), ("SKU-1", 1)]
        held = await race(engine, 120, cart)
        # A cart across partitions holds one partition after the other, so a rival may be
        # refused by a hold that is rolled back a moment later: never more than 30 ...
        assert 0 < len(held) <= 30
        a, b = await engine.availability(skus)
        assert (a.reserved, b.reserved) == (len(held), len(held))  # ... and no partial hold
        while True:
            try:
                held.append((await engine.reserve(cart, idempotency_key=f"late{len(held)}")).id)
            except InsufficientStock:
                break
        assert len(held) == 30
        committed = await asyncio.gather(*(engine.commit(rid) for rid in held))
        assert {r.status for r in committed} == {"committed"}
        a, b = await engine.availability(skus)
        assert (a.committed, a.reserved, b.committed, b.reserved) == (30, 0, 30, 0)
