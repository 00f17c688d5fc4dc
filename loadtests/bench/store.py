"""Setting up and checking earmark's store between rounds (never inside a measured window).

Every earmark round starts from the same state: an emptied Redis (or cluster), fresh
partition markers and the same stock, so a later round does not pay for the streams and
holds an earlier one left behind. After a round the buckets are checked against what
the callers saw: a benchmark that oversold would be measuring a bug.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.cluster

from earmark import AsyncEngine, EngineConfig, limits
from loadtests.bench.load import sku_name

SEED_CALLS_IN_FLIGHT = 256  # receives in flight while seeding: the coalescer batches them


def flush(url: str, *, cluster: bool) -> None:
    """FLUSHALL every primary; the loaded scripts survive it."""
    if cluster:
        client: Any = redis.cluster.RedisCluster.from_url(url)
        try:
            client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        finally:
            client.close()
        return
    with redis.Redis.from_url(url) as plain:
        plain.flushall()


async def _seed(url: str, config: EngineConfig, cluster: bool, skus: int, units: int) -> None:
    receipts = [min(limits.QTY_MAX, units - done) for done in range(0, units, limits.QTY_MAX)]
    calls = [(sku_name(i), qty) for i in range(skus) for qty in receipts]
    async with AsyncEngine.from_url(url, config, cluster=cluster) as engine:
        for start in range(0, len(calls), SEED_CALLS_IN_FLIGHT):
            chunk = calls[start : start + SEED_CALLS_IN_FLIGHT]
            await asyncio.gather(*(engine.receive(sku, qty) for sku, qty in chunk))


def reset(url: str, config: EngineConfig, *, cluster: bool, skus: int, units: int) -> None:
    """An empty store with ``units`` on hand for each of ``skus`` SKUs."""
    flush(url, cluster=cluster)
    asyncio.run(_seed(url, config, cluster, skus, units))


HOLD_RECORDS_CHECKED_MAX = 100  # SKUs whose hold records are summed and compared


async def _check(
    url: str, config: EngineConfig, cluster: bool, skus: int, units: int, accepted: int
) -> str:
    names = [sku_name(i) for i in range(skus)]
    reserved: dict[str, int] = {}
    problems = []
    async with AsyncEngine.from_url(url, config, cluster=cluster) as engine:
        for start in range(0, skus, limits.SKUS_PER_READ_MAX):
            levels = await engine.availability(names[start : start + limits.SKUS_PER_READ_MAX])
            reserved.update((level.sku, level.reserved) for level in levels)
            bad = [lv for lv in levels if lv.on_hand != units or lv.available < 0]
            if bad:
                problems.append(f"unexpected buckets {bad[0]}")
        for name in names[:HOLD_RECORDS_CHECKED_MAX]:
            key = engine.keys.hold_qty(engine.partition_of(name), name, limits.DEFAULT_LOCATION)
            held = sum(int(q) for q in await engine.client.hvals(key))
            if held != reserved[name]:
                problems.append(f"{name}: hold records {held} != reserved {reserved[name]}")
    total = sum(reserved.values())
    if total != accepted:
        problems.append(f"reserved {total} != accepted calls {accepted}")
    oversell = sum(max(0, r - units) for r in reserved.values())
    if problems or oversell:
        return "CHECK FAILED: " + "; ".join([*problems[:3], f"oversell {oversell}"])
    return f"buckets ok, oversell {oversell}"


def check(
    url: str, config: EngineConfig, *, cluster: bool, skus: int, units: int, accepted: int
) -> str:
    """Independent of the callers' counts: ``reserved`` summed over every SKU equals the
    accepted calls (qty 1 each), no SKU is below zero or lost on_hand, and for the first
    100 SKUs the hold records add up to that SKU's ``reserved``. Returns a one-line
    verdict for the report."""
    return asyncio.run(_check(url, config, cluster, skus, units, accepted))
