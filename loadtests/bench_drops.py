"""The hot-path cost of a drop: reserves of a plain SKU against reserves of a drop's SKU
(opened, per-customer limit and rate limit on, one new customer per cart), in the same
run on one throwaway redis-server, rounds alternated.

    python -m loadtests.bench_drops [--seconds S] [--rounds N] [--callers C]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

from tests.support.servers import RedisServer

from earmark import AsyncEngine, EngineConfig

STOCK = 1_000_000


async def load(engine: AsyncEngine, sku: str, seconds: float, callers: int, tag: str) -> int:
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            n = next(counter)
            customer = f"{tag}-c{n}" if sku == "DROP" else None
            await engine.reserve(
                [(sku, 1)], idempotency_key=f"{tag}-{n}", ttl_seconds=600, customer=customer
            )
            done += 1

    await asyncio.gather(*(caller() for _ in range(callers)))
    return done


async def main(seconds: float, rounds: int, callers: int) -> None:
    server = RedisServer()
    server.start()
    try:
        engine = AsyncEngine.from_url(server.url, EngineConfig(prefix="bench"))
        async with engine:
            await engine.receive("PLAIN", STOCK)
            await engine.receive("DROP", STOCK)
            now, _ = await engine.client.time()
            opens = datetime.fromtimestamp(int(now), tz=UTC) - timedelta(seconds=1)
            await engine.create_drop("bench", ["DROP"], opens_at=opens, per_customer_limit=2)
            totals = {"PLAIN": 0, "DROP": 0}
            for r in range(rounds):
                for sku in ("PLAIN", "DROP") if r % 2 == 0 else ("DROP", "PLAIN"):
                    totals[sku] += await load(engine, sku, seconds, callers, f"{sku}{r}")
            plain, drop = (totals[s] / (seconds * rounds) for s in ("PLAIN", "DROP"))
            print(f"plain reserves: {plain:,.0f}/s; drop reserves: {drop:,.0f}/s; "
                  f"drop/plain = {drop / plain:.2%} ({rounds} rounds of {seconds:g} s, "
                  f"{callers} callers, one process)")  # fmt: skip
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--callers", type=int, default=64)
    a = parser.parse_args()
    asyncio.run(main(a.seconds, a.rounds, a.callers))
