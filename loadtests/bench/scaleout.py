"""Scale-out on paper: what one reservation costs each resource, and what N masters buy.

This 2-core machine cannot show a cluster winning (three redis-servers and the client
share two cores), so instead of a throughput race this measures costs:

* Redis CPU per reservation: ``INFO commandstats`` (the FCALL rows: total usec over
  the reservations made) on one Redis, and summed over the masters of a local 3-master
  cluster (with batching on, so a call carries many carts);
* client CPU per reservation: the client process's CPU time (``time.process_time``)
  over the reservations it made, one asyncio process with ``--callers`` callers.

Model (docs/benchmarks.md): with N masters, each on its own core, and one client
process per master on its own core, the carts spread over SKUs in many partitions, the
throughput is N / max(redis_cpu, client_cpu) per reservation, and the larger of the two
saturates first. The model ignores the network and cross-partition carts (a cart across
partitions costs a claim and one call per part).

    python -m loadtests.bench.scaleout [--reservations N] [--callers C]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis
from tests.support.servers import RedisCluster, RedisServer

from earmark import AsyncEngine, EngineConfig

SKUS = 1_000
UNITS = 1_000_000


async def _reserve(url: str, cluster: bool, partitions: int, total: int, callers: int) -> float:
    """Client CPU seconds per reservation for ``total`` reserves by ``callers`` callers."""
    config = EngineConfig(prefix="scale", partitions=partitions)
    engine = AsyncEngine.from_url(url, config, cluster=cluster)
    async with engine:
        for start in range(0, SKUS, 100):
            await asyncio.gather(
                *(engine.receive(f"S{i}", UNITS) for i in range(start, min(SKUS, start + 100)))
            )
        await _reset_stats(engine, cluster)
        counter = iter(range(total))

        async def caller() -> None:
            for n in counter:
                await engine.reserve([(f"S{n % SKUS}", 1)], idempotency_key=f"k{n}")

        cpu = time.process_time()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return (time.process_time() - cpu) / total


async def _reset_stats(engine: AsyncEngine, cluster: bool) -> None:
    if cluster:
        await engine.client.execute_command("CONFIG RESETSTAT", target_nodes="primaries")
    else:
        await engine.client.config_resetstat()


def _script_usec(ports: list[int]) -> tuple[float, int]:
    """Total usec and calls of the script calls (FCALL) over the given Redis processes."""
    usec, calls = 0.0, 0
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port) as client:
            stats: dict[str, Any] = client.info("commandstats")
            row = stats.get("cmdstat_fcall")
            if row:
                usec += float(row["usec"])
                calls += int(row["calls"])
    return usec, calls


def measure(total: int, callers: int) -> list[str]:
    lines = []
    with RedisServer() as server:
        client_s = asyncio.run(_reserve(server.url, False, 1, total, callers))
        usec, calls = _script_usec([server.port])
        lines.append(_row("one Redis", usec / total, client_s * 1e6, calls, total))
    with RedisCluster(masters=3) as cluster:
        client_s = asyncio.run(_reserve(cluster.url, True, 12, total, callers))
        usec, calls = _script_usec(cluster.ports)
        lines.append(_row("3-master cluster", usec / total, client_s * 1e6, calls, total))
    return lines


def _row(name: str, redis_us: float, client_us: float, calls: int, total: int) -> str:
    first = "the client" if client_us > redis_us else "Redis"
    per_master = 1e6 / max(redis_us, client_us)
    projected = ", ".join(f"{n} masters {n * per_master:,.0f}/s" for n in (1, 3, 6, 12))
    return (
        f"{name}: Redis {redis_us:.1f} us/reservation ({calls:,} FCALL for {total:,} "
        f"reservations), client {client_us:.1f} us/reservation; {first} saturates first; "
        f"projected with one client process per master: {projected}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=128)
    args = parser.parse_args()
    if not 1_000 <= args.reservations <= 1_000_000 or not 1 <= args.callers <= 1_000:
        raise SystemExit("need 1,000 <= reservations <= 1,000,000 and 1 <= callers <= 1,000")
    for line in measure(args.reservations, args.callers):
        print(line, flush=True)


if __name__ == "__main__":
    main()
