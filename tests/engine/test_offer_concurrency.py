"""300 customers race for a drop of 50 units with a limit of 2 each and the waitlist on,
on a real redis-server and on a real Redis Cluster: the customers refused join the line
at once, then holders release or commit at once, purchase order deliveries and
positive adjustments of the SKU land at the same time, while the offers they free are
committed or declined at once. After a sweep: nothing oversold, nobody above the limit,
offers went in arrival order, and no unit is free while anyone waits."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from earmark import AsyncEngine, EngineConfig, InsufficientStock, WaitlistEntry, limits
from tests.support.backends import alevel_of, fresh_prefix
from tests.support.servers import RedisCluster, RedisServer

CUSTOMERS, UNITS, LIMIT = 300, 50, 2
DELIVERIES, ADJUSTMENTS = 5, 2  # of 2 units each, racing the releases
RESTOCKED = 2 * (DELIVERIES + ADJUSTMENTS)
SKU, DROP = "DROP-TEE", "launch"


async def entries(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    """customer -> its raw waitlist entry (with its arrival number)."""
    p = engine.partition_of(SKU)
    raw = await engine.client.hgetall(engine.keys.drop_waitlist(p, DROP))
    found = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else field
        if name.startswith(f"{SKU}|"):
            found[name.split("|", 1)[1]] = orjson.loads(value)
    return found


async def scenario(engine: AsyncEngine) -> None:
    seconds, _ = await engine.client.time()
    opens = datetime.fromtimestamp(int(seconds), tz=UTC) - timedelta(seconds=5)
    await engine.receive(SKU, UNITS)
    await engine.create_drop(DROP, [SKU], opens_at=opens, per_customer_limit=LIMIT, waitlist=True)
    start = asyncio.Event()
    holds: dict[str, str] = {}
    joined: list[str] = []

    async def shopper(n: int) -> None:
        customer = f"customer-{n}"
        await start.wait()
        try:
            rsv = await engine.reserve([(SKU, 1)], idempotency_key=f"c{n}", customer=customer)
        except InsufficientStock:
            await engine.join_waitlist(DROP, customer, SKU, idempotency_key=f"j{n}")
            joined.append(customer)
            return
        holds[customer] = rsv.id

    tasks = [asyncio.create_task(shopper(n)) for n in range(CUSTOMERS)]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*tasks)
    assert len(holds) == UNITS and len(joined) == CUSTOMERS - UNITS

    # Every other holder releases (its unit is offered to the line), the rest commit; the
    # offers those releases make are committed or declined as they appear, all at once.
    declined: set[str] = set()

    async def holder(i: int, customer: str) -> None:
        if i % 2:
            await engine.release(holds[customer], idempotency_key=f"r{i}")
        else:
            await engine.commit(holds[customer], idempotency_key=f"k{i}")

    async def answer(i: int, entry: WaitlistEntry) -> None:
        if entry.offer is None:
            return
        if i % 3 == 0:
            declined.add(entry.customer)
            await engine.decline_waitlist(DROP, entry.customer, idempotency_key=f"d{i}")
        else:
            await engine.commit(entry.offer.reservation_id, idempotency_key=f"o{i}")

    po = await engine.create_purchase_order(
        [(SKU, 2 * DELIVERIES)], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )

    async def restock(i: int) -> None:
        if i < DELIVERIES:
            await engine.receive_purchase_order(po.id, [(SKU, 2)], idempotency_key=f"p{i}")
        else:
            await engine.adjust(SKU, 2, "found", idempotency_key=f"a{i}")

    await asyncio.gather(
        *(holder(i, c) for i, c in enumerate(sorted(holds))),
        *(restock(i) for i in range(DELIVERIES + ADJUSTMENTS)),
    )
    for _ in range(4):  # a few rounds: each decline passes its unit on
        waiting = [await engine.get_waitlist_entry(DROP, c) for c in joined]
        await asyncio.gather(
            *(answer(i, e) for i, e in enumerate(waiting) if e.status == "offered")
        )
    report = await engine.sweep()
    assert report.expired == 0
    # Racing freeing calls (releases, deliveries, adjustments) leave to the sweeper's
    # pass what they could not serve; one pass offers at most OFFERS_PER_CALL_MAX per
    # location, so a few passes serve the rest.
    for _ in range(4):
        if report.offered < limits.OFFERS_PER_CALL_MAX:
            break
        report = await engine.sweep()

    level = await alevel_of(engine, SKU)
    assert level.on_hand == UNITS + RESTOCKED
    assert level.reserved + level.committed <= level.on_hand  # nothing oversold
    found = await entries(engine)
    statuses = Counter(str(e["status"]) for e in found.values())
    assert statuses["skipped"] == 0  # nobody in line holds anything: no limit is full
    # No unit is free while anyone waits.
    assert level.available == 0 or statuses["waiting"] == 0
    # FIFO: everyone served (offered, converted or declined after an offer) joined
    # before everyone still waiting.
    served = [int(str(e["seq"])) for e in found.values() if e["status"] != "waiting"]
    still = [int(str(e["seq"])) for e in found.values() if e["status"] == "waiting"]
    if served and still:
        assert max(served) < min(still)
    assert {c for c, e in found.items() if e["status"] == "declined"} == declined
    # Nobody above the limit: per customer, committed and live holds of the drop.
    per_customer: Counter[str] = Counter()
    p = engine.partition_of(SKU)
    for customer in {*holds, *joined}:
        rids = await engine.client.hkeys(engine.keys.drop_customer(p, DROP, customer))
        for rid in rids:
            rsv = await engine.get_reservation(rid.decode() if isinstance(rid, bytes) else rid)
            if rsv.status in ("held", "committed"):
                per_customer[customer] += sum(line.qty for line in rsv.lines)
    assert max(per_customer.values()) <= LIMIT
    drop = await engine.get_drop(DROP)
    assert drop.offered == statuses["offered"]
    assert drop.waiting == statuses["waiting"]
    assert drop.sold == level.committed and drop.held == level.reserved


async def test_three_hundred_customers_and_the_waitlist(redis_server: RedisServer) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    async with engine:
        await scenario(engine)


@pytest.mark.cluster
async def test_three_hundred_customers_and_the_waitlist_on_the_cluster(
    redis_cluster: RedisCluster,
) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = AsyncEngine.from_url(redis_cluster.url, config, cluster=True)
    async with engine:
        await scenario(engine)
