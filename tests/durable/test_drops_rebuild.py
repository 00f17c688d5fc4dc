"""Drops in the durable record (docs/drops.md, "Rebuild"): a rebuild of a lost Redis puts
back each drop's rules, SKUs and every customer's committed units, so a drop's SKU never
sells as a plain SKU afterwards; live holds are gone and their units back in the
allowance (real redis-server and PostgreSQL, 4 partitions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from earmark import (
    AsyncEngine,
    CustomerLimitExceeded,
    CustomerRequired,
    DropNotOpen,
    EngineConfig,
)
from earmark.durable.drop_restore import recorded_drops
from earmark.durable.rebuild import rebuild, replay_check, verify
from earmark.store.ledger import Ledger
from tests.support.backends import fresh_prefix
from tests.support.durable import lose_redis
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


async def server_now(engine: AsyncEngine) -> datetime:
    seconds, micros = await engine.client.time()
    return datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, tz=UTC)


async def test_a_rebuild_restores_drops_rules_and_customers_sales(
    redis_server: RedisServer, pg_ledger: Ledger
) -> None:
    prefix = fresh_prefix()
    first = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=prefix, partitions=4))
    await first.start()
    now = await server_now(first)
    skus = [s for s in (f"S{n}" for n in range(40)) if first.partition_of(s) == 1][:2]
    tee, cap = skus
    await first.receive(tee, 10)
    await first.receive(cap, 4)
    await first.receive("PLAIN", 3)
    await first.create_drop(
        "launch", [tee, cap], opens_at=now - timedelta(minutes=1), per_customer_limit=3
    )
    later = await first.create_drop(
        "later", ["LATER"], opens_at=now + timedelta(hours=1), per_customer_limit=1
    )
    await first.update_drop("later", per_customer_limit=2, waitlist=True)  # the last wins
    ann = await first.reserve([(tee, 2), (cap, 1)], idempotency_key="a", customer="ann")
    await first.commit(ann.id)  # ann is at the limit with a sale
    bob = await first.reserve([(tee, 1), ("PLAIN", 1)], idempotency_key="b", customer=" BOB ")
    await first.commit(bob.id)  # one unit of the drop (PLAIN is outside it)
    await first.reserve([(tee, 2)], idempotency_key="b2", customer="bob")  # a hold: lost
    before = await first.get_drop("launch")
    assert (before.sold, before.held, before.customers_at_limit) == (4, 2, 2)
    engine = await lose_redis(first, redis_server.url, pg_ledger)
    try:
        report = await rebuild(engine, pg_ledger)
        assert report.drops == 2
        drop = await engine.get_drop("launch")
        assert drop.skus == (tee, cap) and drop.per_customer_limit == 3 and drop.open
        assert (drop.sold, drop.held, drop.customers_at_limit) == (4, 0, 1)  # bob's hold gone
        assert drop.created_at == before.created_at and drop.actor == before.actor
        restored_later = await engine.get_drop("later")
        assert restored_later.opens_at == later.opens_at and not restored_later.open
        assert (restored_later.per_customer_limit, restored_later.waitlist) == (2, True)
        assert restored_later.opening_seed_sha256 is not None
        with pytest.raises(CustomerRequired):  # still a drop's SKU, not a plain one
            await engine.reserve([(tee, 1)], idempotency_key="n")
        with pytest.raises(CustomerLimitExceeded) as full:  # ann's sale still counts
            await engine.reserve([(cap, 1)], idempotency_key="a2", customer="ANN")
        assert (full.value.details["limit"], full.value.details["used"]) == (3, 3)
        with pytest.raises(DropNotOpen):
            await engine.reserve([("LATER", 1)], idempotency_key="l", customer="ann")
        # bob's lost hold is back in his allowance: 1 sold + 2 held = 3
        await engine.reserve([(tee, 2)], idempotency_key="b3", customer="bob")
        with pytest.raises(CustomerLimitExceeded):
            await engine.reserve([(cap, 1)], idempotency_key="b4", customer="bob")
        await engine.reserve([("PLAIN", 2)], idempotency_key="p")  # plain SKUs: no customer
        assert (await engine.get_drop("launch")).customers_at_limit == 2
        assert (await verify(engine, pg_ledger)).ok
        assert (await replay_check(pg_ledger)).ok
    finally:
        await engine.close()


async def test_the_record_folds_each_line_once_and_only_the_drops_skus(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    now = await server_now(aengine)
    skus = [s for s in (f"S{n}" for n in range(40)) if aengine.partition_of(s) == 2][:2]
    for sku in skus:
        await aengine.receive(sku, 5)
    await aengine.create_drop("d", skus[:1], opens_at=now - timedelta(minutes=1))
    held = await aengine.reserve([(skus[0], 2), (skus[1], 1)], idempotency_key="x", customer="c")
    await aengine.commit(held.id)
    await aengine.commit(held.id)  # a replayed commit writes no second event
    assert (await verify(aengine, pg_ledger)).ok
    drops = await recorded_drops(pg_ledger)
    assert set(drops) == {"d"}
    assert drops["d"].partition == 2 and drops["d"].skus == skus[:1]
    assert drops["d"].rules.get("limit") is None  # no limit: cjson leaves it out
    assert drops["d"].used("c") == 2  # the line outside the drop is not counted
    seed = (await aengine.get_drop("d")).opening_seed
    await rebuild(aengine, pg_ledger, force=True)  # over a live Redis: its seed is kept
    assert (await aengine.get_drop("d")).opening_seed == seed is not None
    with pytest.raises(CustomerRequired):
        await aengine.reserve([(skus[0], 1)], idempotency_key="y")
    await aengine.reserve([(skus[0], 3)], idempotency_key="z", customer="c")  # no limit


async def test_an_offer_bought_counts_for_its_customer(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    now = await server_now(aengine)
    await aengine.receive("TEE", 1)
    await aengine.create_drop(
        "d", ["TEE"], opens_at=now - timedelta(minutes=1), per_customer_limit=1, waitlist=True
    )
    held = await aengine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    await aengine.join_waitlist("d", "bob", "TEE")
    await aengine.release(held.id)  # offered to bob
    offer = (await aengine.get_waitlist_entry("d", "bob")).offer
    assert offer is not None
    await aengine.commit(offer.reservation_id)
    assert (await verify(aengine, pg_ledger)).ok
    drops = await recorded_drops(pg_ledger)
    assert (drops["d"].used("bob"), drops["d"].used("ann")) == (1, 0)
