"""Channel rule changes, allocation moves and holds that draw allocations down reach the
durable record: verify and verify --replay agree with Redis, and the rule events, which
sit at no location, make no stock row (real redis-server and PostgreSQL, 4 partitions)."""

from __future__ import annotations

import pytest

from earmark import AsyncEngine, ChannelRule, EngineConfig, InsufficientStock
from earmark.durable.flusher import Flusher
from earmark.durable.rebuild import rebuild, replay_check, start_engine, verify
from earmark.store.ledger import Ledger
from tests.support.backends import fresh_prefix
from tests.support.durable import caught_up, eventually, lose_redis, run_flusher, stop_flusher
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


async def test_channel_events_verify_and_replay(
    redis_server: RedisServer, pg_ledger: Ledger
) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = AsyncEngine.from_url(redis_server.url, config)
    await start_engine(engine, pg_ledger)
    flusher = Flusher.for_engine(engine, pg_ledger, consumer="f1", block_ms=10)
    stop, task = await run_flusher(flusher)
    await engine.receive("TEE", 10)
    await engine.set_channel("marketplace", buffer_units=1, buffer_percent=10, floor=1)
    await engine.set_channel_sku("marketplace", "TEE", buffer_units=2)
    await engine.allocate("marketplace", "TEE", qty=5, idempotency_key="fence")
    drew = await engine.reserve([("TEE", 6)], idempotency_key="m", channel="marketplace")
    await engine.allocate("marketplace", "TEE", qty=2, idempotency_key="fence-2")
    await engine.allocate("marketplace", "TEE", qty=-1, idempotency_key="back")
    await engine.commit(drew.id)
    await engine.deallocate("marketplace", "TEE", idempotency_key="all")
    await engine.remove_channel_sku("marketplace", "TEE")
    await eventually(lambda: caught_up(engine), what="the flush")
    await stop_flusher(stop, task)
    report = await verify(engine, pg_ledger)
    assert report.ok, report.drift
    replay = await replay_check(pg_ledger)
    assert replay.ok, replay.drift
    assert replay.events > 0
    rows = {(level.sku, level.location) for level in await pg_ledger.stock_levels()}
    assert rows == {("TEE", "default")}
    (level,) = await pg_ledger.stock_levels()
    assert (level.on_hand, level.reserved, level.committed) == (10, 0, 6)
    await engine.close()
    await flusher.close()


async def test_channel_rules_and_allocations_survive_a_rebuild(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await aengine.receive("TEE", 20)
    await aengine.receive("CAP", 1)
    await aengine.set_channel("marketplace", buffer_units=9)
    await aengine.set_channel("marketplace", buffer_units=4, buffer_percent=10)  # the last wins
    await aengine.set_channel_sku("marketplace", "TEE", floor=20)
    await aengine.set_channel_sku("marketplace", "CAP", buffer_units=1)
    await aengine.remove_channel_sku("marketplace", "CAP")
    await aengine.allocate("marketplace", "TEE", qty=3)
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="t")
    await flusher.drain(30)
    await flusher.close()
    for p in range(aengine.partitions):  # the copies are lost
        await aengine.client.delete(aengine.keys.channel(p, "marketplace"))

    await rebuild(aengine, pg_ledger, force=True)
    settings = await aengine.channel("marketplace")
    assert settings.default == ChannelRule(buffer_units=4, buffer_percent=10)
    assert settings.skus == {"TEE": ChannelRule(floor=20)}
    for p in range(aengine.partitions):
        assert await aengine.client.hget(aengine.keys.channel(p, "marketplace"), "*") == "4:10:0"
    # the allocation stays counted in reserved: no other channel may sell its units
    seen = await aengine.channel_stock("marketplace", "TEE")
    assert (seen.unbuffered_available, seen.allocated, seen.available) == (17, 3, 3)
    assert (await verify(aengine, pg_ledger)).ok
    assert (await replay_check(pg_ledger)).ok


async def test_a_rebuild_of_a_lost_redis_keeps_each_channels_allocation(
    redis_server: RedisServer, pg_ledger: Ledger
) -> None:
    """Fences, give-backs, releases and holds that drew an allocation down fold into each
    channel's last figure; the holds go, the fences stay (4 partitions, Redis lost)."""
    prefix = fresh_prefix()
    first = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=prefix, partitions=4))
    await first.start()
    await first.receive("TEE", 20)
    await first.receive("CAP", 5, location="berlin")
    await first.allocate("marketplace", "TEE", qty=5, idempotency_key="m5")
    await first.allocate("wholesale", "TEE", qty=4, idempotency_key="w4")
    await first.allocate("wholesale", "TEE", qty=-1, idempotency_key="w-1")  # 3 left
    await first.allocate("outlet", "TEE", qty=2, idempotency_key="o2")
    await first.deallocate("outlet", "TEE", idempotency_key="o-all")  # 0: not restored
    await first.allocate("marketplace", "CAP", qty=2, location="berlin", idempotency_key="c2")
    await first.reserve([("TEE", 3)], idempotency_key="plain")  # a hold: lost
    drew = await first.reserve([("TEE", 2)], idempotency_key="mp", channel="marketplace")
    await first.commit(drew.id)  # drew 2 of the 5: 3 stay fenced
    await first.reserve([("TEE", 1)], idempotency_key="mp2", channel="marketplace")  # 2 left
    before = await first.stock("TEE")
    assert before.locations[0].reserved == 3 + 1 + 2 + 3  # two holds, two fences
    engine = await lose_redis(first, redis_server.url, pg_ledger)
    try:
        report = await rebuild(engine, pg_ledger)
        assert report.units_allocated == 2 + 3 + 2
        assert report.units_released == 3 + 1  # the plain hold and the marketplace's hold
        (tee,) = (await engine.stock("TEE")).locations
        assert (tee.on_hand, tee.reserved, tee.committed, tee.available) == (20, 5, 2, 13)
        market = await engine.channel_stock("marketplace", "TEE")
        assert (market.allocated, market.available) == (2, 15)
        assert (await engine.channel_stock("wholesale", "TEE")).allocated == 3
        assert (await engine.channel_stock("outlet", "TEE")).allocated == 0
        berlin = await engine.channel_stock("marketplace", "CAP", location="berlin")
        assert (berlin.allocated, berlin.unbuffered_available) == (2, 3)
        with pytest.raises(InsufficientStock):  # the fenced units are not for the others
            await engine.reserve([("TEE", 14)], idempotency_key="all")
        await engine.reserve([("TEE", 13)], idempotency_key="rest")
        taken = await engine.reserve([("TEE", 2)], idempotency_key="mp3", channel="marketplace")
        assert taken.status == "held"
        assert (await engine.channel_stock("marketplace", "TEE")).allocated == 0
        assert (await verify(engine, pg_ledger)).ok
        replay = await replay_check(pg_ledger)
        assert replay.ok, replay.drift
    finally:
        await engine.close()
