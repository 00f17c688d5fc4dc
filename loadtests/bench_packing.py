"""What packing commands with hiredis buys the engine (earmark.engine.packing).

``AsyncEngine.reserve`` on a hot SKU, 128 concurrent callers in one process, on one
throwaway Redis, with the connections packing commands as earmark builds them (hiredis)
and as redis-py's asyncio connections do by default (Python), in alternating rounds.
Prints each round, the medians and the ratio (hiredis / Python). Every round is counted:
the SKU's reserved units equal the reserves answered, none oversold.

    python -m loadtests.bench_packing [--rounds 5] [--seconds 3] [--callers 128]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time

import redis.asyncio
import uvloop
from tests.support.servers import RedisServer

from earmark import AsyncEngine, EngineConfig

SKU = "HOT"
UNITS = 1_000_000  # limits.QTY_MAX per receipt: more than any round sells
PACKERS = ("hiredis", "python")


async def one_round(url: str, packer: str, seconds: float, callers: int, tag: str) -> float:
    engine = AsyncEngine.from_url(url, EngineConfig(prefix=f"pk{tag}", partitions=1))
    if packer == "python":  # redis-py's own asyncio connection class
        pool = engine.client.connection_pool
        pool.connection_class = pool.connection_class.__mro__[1]
        assert pool.connection_class is redis.asyncio.Connection
    await engine.start()
    try:
        await engine.receive(SKU, UNITS, idempotency_key="stock")
        keys = itertools.count()
        done = 0
        stop = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < stop:
                await engine.reserve([(SKU, 1)], idempotency_key=f"{tag}-{next(keys)}")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(callers)))
        rate = done / (time.monotonic() - started)
        stock = await engine.stock(SKU)
        if stock.reserved != done or stock.reserved > stock.on_hand:
            raise SystemExit(f"CHECK FAILED: reserved {stock.reserved} for {done} answered")
        return rate
    finally:
        await engine.close()


async def main_async(url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {p: [] for p in PACKERS}
    await one_round(url, "hiredis", 1, args.callers, "warm")
    for i in range(args.rounds):
        order = PACKERS if i % 2 == 0 else PACKERS[::-1]
        for packer in order:
            rate = await one_round(url, packer, args.seconds, args.callers, f"{packer}{i}")
            rates[packer].append(rate)
            print(f"round {i + 1} {packer:8} {rate:8,.0f} reserves/s  buckets ok", flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=128)
    args = parser.parse_args(argv)
    with RedisServer() as server:
        rates = uvloop.run(main_async(server.url, args))
    medians = {p: statistics.median(r) for p, r in rates.items()}
    for packer, value in medians.items():
        print(f"median {packer:8} {value:8,.0f} reserves/s")
    print(f"throughput ratio hiredis / python: {medians['hiredis'] / medians['python']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
