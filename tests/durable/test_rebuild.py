"""Fencing, rebuild and verification against a real redis-server and a real PostgreSQL:
Redis restarted without persistence refuses every write until it is rebuilt from the
durable record, and selling resumes with the recorded counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import pytest

from earmark import (
    AsyncEngine,
    CustomerLimitExceeded,
    CustomerRequired,
    EngineConfig,
    InsufficientStock,
    StoreNotReady,
)
from earmark.durable.flusher import Flusher
from earmark.durable.rebuild import rebuild, replay_check, start_engine, verify
from earmark.errors import RebuildRefused
from earmark.store.ledger import Ledger, open_ledger
from tests.support.backends import alevel_of, fresh_prefix
from tests.support.durable import (
    caught_up,
    eventually,
    raw_levels,
    recorded_levels,
    recorded_status,
    run_flusher,
    stop_flusher,
)
from tests.support.servers import RedisCluster, RedisServer, ServerUnavailable, unavailable

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


@pytest.fixture
def lost_redis() -> Iterator[RedisServer]:
    """A redis-server of its own, without persistence: the tests kill it."""
    server = RedisServer()
    try:
        server.start()
    except ServerUnavailable as error:
        server.close()
        unavailable(str(error))
    yield server
    server.close()


async def engine_on(server: RedisServer, prefix: str, ledger: Ledger) -> AsyncEngine:
    engine = AsyncEngine.from_url(server.url, EngineConfig(prefix=prefix))
    started: AsyncEngine = await start_engine(engine, ledger)
    return started


async def test_a_lost_redis_is_fenced_until_rebuilt_then_sells_the_recorded_stock(
    lost_redis: RedisServer, pg_ledger: Ledger
) -> None:
    prefix = fresh_prefix()
    first = AsyncEngine.from_url(lost_redis.url, EngineConfig(prefix=prefix, partitions=4))
    await start_engine(first, pg_ledger)
    assert first.state is not None
    assert first.state.ready  # an empty record: a new store gets its markers
    flusher = Flusher.for_engine(first, pg_ledger, consumer="f1", block_ms=10, claim_idle_ms=500)
    stop, task = await run_flusher(flusher)  # keeps running through the loss

    for sku in ("A", "B", "C", "D"):
        await first.receive(sku, 20)
    shipped = await first.reserve([("A", 2)], idempotency_key="shipped")
    await first.commit(shipped.id)
    await first.ship(shipped.id)
    committed = await first.reserve([("A", 3), ("B", 4)], idempotency_key="committed")
    await first.commit(committed.id)
    held = await first.reserve([("C", 5), ("D", 1)], idempotency_key="held", ttl_seconds=600)
    await first.adjust("D", -2, "broken")
    await eventually(lambda: caught_up(first), what="the flush before the loss")
    before = await recorded_levels(pg_ledger)
    assert before[("C", "default")]["reserved"] == 5

    lost_redis.kill()
    lost_redis.restart()  # empty: no AOF, no RDB
    second = await engine_on(lost_redis, prefix, pg_ledger)
    assert second.state is not None
    assert not second.state.ready
    for refused in (
        second.receive("A", 1),
        second.reserve([("A", 1)], idempotency_key="too-soon"),
        second.adjust("B", 1, "count"),
    ):
        with pytest.raises(StoreNotReady):
            await refused

    report = await rebuild(second, pg_ledger)
    assert (report.partitions, report.stock_records, report.committed_parts) == (4, 4, 2)
    assert report.units_released == 6  # the live hold on C and D is gone
    assert report.reservations_expired == 1
    assert second.state is not None
    assert second.state.ready
    assert second.partitions == 4

    after = await recorded_levels(pg_ledger)
    assert after == await raw_levels(second)  # counts equal the record, bucket for bucket
    p = second.partition_of("A")
    assert await second.client.smembers(second.keys.locations(p, "A")) == {"default"}
    for key, levels in before.items():
        assert after[key] == {**levels, "reserved": 0}
    assert (await verify(second, pg_ledger)).ok
    assert await recorded_status(pg_ledger, held.id) == "expired"

    # Selling resumes: the restored committed reservation ships, new carts are held.
    assert (await second.ship(committed.id)).status == "shipped"
    again = await second.reserve([("C", 20)], idempotency_key="after")  # C fully free again
    await second.commit(again.id)
    with pytest.raises(InsufficientStock):
        await second.reserve([("C", 1)], idempotency_key="none-left")
    await eventually(lambda: caught_up(second), what="the flush after the rebuild")
    await stop_flusher(stop, task)
    report_after = await verify(second, pg_ledger)
    assert report_after.ok, report_after.drift
    replay = await replay_check(pg_ledger)
    assert replay.ok, replay.drift
    assert await recorded_status(pg_ledger, committed.id) == "shipped"
    for engine in (first, second):
        await engine.close()
    await flusher.close()


async def test_rebuild_refuses_a_live_redis_unless_forced(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    for sku in ("A", "B"):
        await aengine.receive(sku, 10)
    held = await aengine.reserve([("A", 4), ("B", 1)], idempotency_key="held", ttl_seconds=600)
    committed = await aengine.reserve([("B", 2)], idempotency_key="c")
    await aengine.commit(committed.id)
    with pytest.raises(RebuildRefused):
        await rebuild(aengine, pg_ledger)
    assert (await alevel_of(aengine, "A")).reserved == 4  # untouched

    report = await rebuild(aengine, pg_ledger, force=True)  # drains what Redis held first
    assert report.events_drained > 0
    assert report.stale_parts == len(aengine.parts_of(held.id))  # one per partition
    assert report.units_released == 5
    assert (await alevel_of(aengine, "A")).reserved == 0
    assert (await aengine.get_reservation(held.id)).status == "expired"
    assert (await aengine.ship(committed.id)).status == "shipped"
    verified = await verify(aengine, pg_ledger)
    assert verified.ok, verified.drift
    assert (await replay_check(pg_ledger)).ok


async def test_verify_reports_drift_per_sku_and_location(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await aengine.receive("A", 10)
    await aengine.receive("A", 3, location="berlin")
    assert (await verify(aengine, pg_ledger)).ok
    p = aengine.partition_of("A")
    await aengine.client.hincrby(aengine.keys.stock(p, "A", "berlin"), "damaged", 2)
    report = await verify(aengine, pg_ledger)
    assert not report.ok
    (drift,) = report.drift
    assert (drift.sku, drift.location, drift.buckets) == ("A", "berlin", {"damaged": (2, 0)})
    assert report.checked == 2


async def test_replay_catches_a_stock_level_the_ledger_does_not_explain(
    aengine: AsyncEngine, pg_ledger: Ledger, pg_url: str
) -> None:
    await aengine.receive("A", 10)
    held = await aengine.reserve([("A", 4)], idempotency_key="h")
    await aengine.commit(held.id)
    await Flusher.for_engine(aengine, pg_ledger, consumer="f1").drain()
    assert (await replay_check(pg_ledger)).ok
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("UPDATE stock_levels SET committed = committed + 1")
    finally:
        await conn.close()
    replay = await replay_check(pg_ledger)
    assert replay.events == 3
    assert [(d.sku, d.buckets) for d in replay.drift] == [("A", {"committed": (4, 5)})]


async def test_a_store_whose_record_is_unreachable_starts_but_stamps_nothing(
    redis_server: RedisServer,
) -> None:
    ledger = open_ledger("postgresql://postgres@127.0.0.1:1/none")  # nothing listens there
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    await start_engine(engine, ledger)
    assert engine.state is not None
    assert not engine.state.ready  # a new store waits for the record to answer
    with pytest.raises(StoreNotReady):
        await engine.receive("A", 1)
    await engine.close()
    await ledger.close()


@pytest.mark.cluster
async def test_flush_verify_and_forced_rebuild_on_a_redis_cluster(
    redis_cluster: RedisCluster, pg_ledger: Ledger
) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = await AsyncEngine.from_url(redis_cluster.url, config, cluster=True).start()
    for sku in ("A", "B", "C", "D"):
        await engine.receive(sku, 10)
    held = await engine.reserve([("A", 1), ("D", 2)], idempotency_key="x", ttl_seconds=600)
    committed = await engine.reserve([("B", 3), ("C", 1)], idempotency_key="y")
    await engine.commit(committed.id)
    report = await verify(engine, pg_ledger)
    assert report.ok, report.drift
    rebuilt = await rebuild(engine, pg_ledger, force=True)
    assert (rebuilt.units_released, rebuilt.committed_parts) == (3, 2)
    assert (await engine.get_reservation(held.id)).status == "expired"
    assert (await engine.ship(committed.id)).status == "shipped"
    after = await verify(engine, pg_ledger)
    assert after.ok, after.drift
    assert (await replay_check(pg_ledger)).ok
    await engine.close()


async def test_a_killed_redis_is_rebuilt_with_its_drops_and_allocations(
    lost_redis: RedisServer, pg_ledger: Ledger
) -> None:
    """SIGKILL after concurrent sales of a drop and of a channel's fence: the rebuilt store
    still refuses a customer at the limit, still fences the channel's units, and sells
    nothing the record does not cover."""
    prefix = fresh_prefix()
    first = AsyncEngine.from_url(lost_redis.url, EngineConfig(prefix=prefix, partitions=4))
    await start_engine(first, pg_ledger)
    flusher = Flusher.for_engine(first, pg_ledger, consumer="f1", block_ms=10, claim_idle_ms=500)
    stop, task = await run_flusher(flusher)
    seconds, _ = await first.client.time()
    await first.receive("DROP", 40)
    await first.receive("TEE", 30)
    opens = datetime.fromtimestamp(int(seconds) - 60, tz=UTC)
    await first.create_drop("launch", ["DROP"], opens_at=opens, per_customer_limit=2)
    await first.allocate("marketplace", "TEE", qty=10, idempotency_key="fence")

    async def shopper(n: int) -> None:
        for attempt in range(3):  # the third is over the limit
            try:
                held = await first.reserve(
                    [("DROP", 1)], idempotency_key=f"s{n}-{attempt}", customer=f"c{n}"
                )
            except CustomerLimitExceeded:
                continue
            await first.commit(held.id)

    async def marketplace(n: int) -> None:
        held = await first.reserve([("TEE", 2)], idempotency_key=f"m{n}", channel="marketplace")
        await first.commit(held.id)

    await asyncio.gather(*(shopper(n) for n in range(12)), *(marketplace(n) for n in range(3)))
    await first.reserve([("TEE", 4)], idempotency_key="plain-hold")  # lost with Redis
    await eventually(lambda: caught_up(first), what="the flush before the kill")
    await stop_flusher(stop, task)
    lost_redis.kill()
    lost_redis.restart()  # empty: no AOF, no RDB
    await first.close()

    second = await engine_on(lost_redis, prefix, pg_ledger)
    report = await rebuild(second, pg_ledger)
    assert (report.drops, report.units_allocated, report.units_released) == (1, 4, 4)
    drop = (await second.stock("DROP")).locations[0]
    assert (drop.on_hand, drop.committed, drop.reserved) == (40, 24, 0)  # 12 customers x 2
    with pytest.raises(CustomerLimitExceeded):
        await second.reserve([("DROP", 1)], idempotency_key="again", customer="C3")
    with pytest.raises(CustomerRequired):
        await second.reserve([("DROP", 1)], idempotency_key="anonymous")
    tee = (await second.stock("TEE")).locations[0]
    assert (tee.committed, tee.reserved, tee.available) == (6, 4, 20)  # 4 still fenced
    with pytest.raises(InsufficientStock):
        await second.reserve([("TEE", 21)], idempotency_key="everything")
    fenced = await second.reserve([("TEE", 24)], idempotency_key="mp", channel="marketplace")
    assert fenced.status == "held"
    assert (await verify(second, pg_ledger)).ok
    await second.close()
    await flusher.close()
