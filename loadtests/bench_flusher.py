"""Flusher benchmark: throughput against a plain COPY, and lag under a reservation storm.

    python -m loadtests.bench_flusher [--events 20000] [--rounds 5] [--storm-seconds 10]

Starts its own throwaway redis-server and PostgreSQL on 127.0.0.1 (tests/support/servers.py),
never touches anything else, and stops by itself. Three parts:

1. Memory: MEMORY USAGE of a partition stream before and after real engine events, in
   bytes per waiting event (what an outage of the durable record costs in Redis).
2. Throughput: per round, the same events are flushed by ``Flusher.drain`` and, as the
   baseline, COPYed straight into the same (emptied) ledger table; medians and the ratio.
3. Lag: many concurrent AsyncEngine callers reserve and commit as fast as the engine goes
   while a flusher runs in its own process; the age of the oldest waiting event and the
   number waiting are sampled. p50 / p99 are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from tests.support.servers import PostgresServer, RedisServer

from earmark import AsyncEngine, EngineConfig, InsufficientStock
from earmark.durable.flusher import Flusher
from earmark.store.ledger import Event, open_ledger
from earmark.store.postgres import to_time

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
SKUS = [f"SKU-{i:03d}" for i in range(64)]
SAMPLE_INTERVAL_SECONDS = 0.05
STORM_CALLERS = 64
COPY_COLUMNS = [
    "partition", "stream_ms", "stream_seq", "type", "sku", "location", "qty",
    "reservation_id", "channel", "actor", "reason", "idempotency_key", "deltas", "flags",
    "occurred_at",
]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


async def new_engine(redis_url: str) -> AsyncEngine:
    config = EngineConfig(prefix=f"b{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    return await AsyncEngine.from_url(redis_url, config).start()


async def make_events(engine: AsyncEngine, count: int, callers: int = 32) -> int:
    """About ``count`` real engine events: receipts, then reserve + commit pairs."""
    for sku in SKUS:
        await engine.receive(sku, 1_000_000, reference="PO")
    carts = max(0, (count - len(SKUS)) // 2)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(carts):
        queue.put_nowait(i)

    async def caller() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            held = await engine.reserve([(SKUS[i % len(SKUS)], 1)], idempotency_key=f"m{i}")
            await engine.commit(held.id)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(SKUS) + 2 * carts


async def stream_entries(engine: AsyncEngine) -> list[Event]:
    events = []
    for p in range(engine.partitions):
        for eid, fields in await engine.client.xrange(engine.keys.events(p)):
            events.append(Event.from_stream(p, eid, fields))
    return events


# -- 1. memory -------------------------------------------------------------------------------


async def memory_per_event(redis_url: str) -> tuple[float, int]:
    engine = await new_engine(redis_url)
    key = engine.keys.events(0)
    sku = next(s for s in SKUS if engine.partition_of(s) == 0)
    await engine.receive(sku, 1_000_000)
    before = await engine.client.memory_usage(key, samples=0)
    count = 5_000
    for i in range(count // 2):
        held = await engine.reserve([(sku, 1)], idempotency_key=f"mem{i}", channel="web")
        await engine.commit(held.id)
    after = await engine.client.memory_usage(key, samples=0)
    await engine.close()
    return (after - before) / count, count


# -- 2. throughput ---------------------------------------------------------------------------


async def empty_tables(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE ledger, stock_levels, reservations, store_meta")
    finally:
        await conn.close()


async def copy_rows(dsn: str, events: list[Event]) -> float:
    """Seconds to COPY the events, as ledger rows, into the emptied ledger table."""
    rows = [
        (e.partition, e.stream_ms, e.stream_seq, e.type, e.sku, e.location, e.qty,
         e.reservation_id, e.channel, e.actor, e.reason, e.idempotency_key, e.deltas_json(),
         e.flags_json(), to_time(e.occurred_at_ms))
        for e in events
    ]  # fmt: skip
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table("ledger", records=rows, columns=COPY_COLUMNS)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def throughput(redis_url: str, dsn: str, count: int, rounds: int) -> dict[str, Any]:
    ledger = open_ledger(dsn)
    await ledger.migrate()
    flusher_rates, copy_rates = [], []
    for _ in range(rounds):
        await empty_tables(dsn)
        engine = await new_engine(redis_url)
        made = await make_events(engine, count)
        events = await stream_entries(engine)
        flusher = Flusher.for_engine(engine, ledger, consumer="bench", batch_size_max=500)
        started = time.perf_counter()
        handled = await flusher.drain(600)
        flusher_rates.append(handled / (time.perf_counter() - started))
        await flusher.close()
        await engine.close()
        await empty_tables(dsn)
        copy_rates.append(len(events) / await copy_rows(dsn, events))
        assert handled == made == len(events), (handled, made, len(events))
    await ledger.close()
    flusher_median, copy_median = statistics.median(flusher_rates), statistics.median(copy_rates)
    return {
        "events": count,
        "rounds": rounds,
        "flusher": flusher_median,
        "copy": copy_median,
        "ratio": flusher_median / copy_median,
        "flusher_all": flusher_rates,
        "copy_all": copy_rates,
    }


# -- 3. lag under a storm --------------------------------------------------------------------


def spawn_flusher(redis_url: str, engine: AsyncEngine, dsn: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.flusher_proc", redis_url, engine.keys.prefix]
    cmd += [str(engine.partitions), dsn, "storm-flusher", "--batch", "500"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


async def storm(redis_url: str, dsn: str, seconds: float) -> dict[str, Any]:
    await empty_tables(dsn)
    engine = await new_engine(redis_url)
    for sku in SKUS:
        await engine.receive(sku, 1_000_000)
    proc = spawn_flusher(redis_url, engine, dsn)
    assert proc.stdout is not None
    proc.stdout.readline()  # "flushing"
    deadline = time.monotonic() + seconds
    ops = refused = 0

    async def caller(n: int) -> None:
        nonlocal ops, refused
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                line = (SKUS[(n + i) % len(SKUS)], 1)
                held = await engine.reserve([line], idempotency_key=f"{n}-{i}")
                await engine.commit(held.id)
                ops += 2
            except InsufficientStock:
                refused += 1

    ages: list[float] = []
    waiting: list[int] = []

    async def sampler() -> None:
        while time.monotonic() < deadline:
            now = await engine.durable_lag()
            ages.append(now.oldest_age_seconds)
            waiting.append(now.events)
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)

    started = time.monotonic()
    await asyncio.gather(sampler(), *(caller(n) for n in range(STORM_CALLERS)))
    elapsed = time.monotonic() - started
    caught_up_started = time.monotonic()
    while (await engine.durable_lag()).events:
        await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)
    catch_up = time.monotonic() - caught_up_started
    proc.terminate()
    proc.wait(30)
    proc.stdout.close()
    await engine.close()
    return {
        "seconds": elapsed,
        "ops_per_second": ops / elapsed,
        "events_per_second": ops / elapsed,  # reserve and commit: one event each
        "samples": len(ages),
        "age_p50": percentile(ages, 0.5),
        "age_p99": percentile(ages, 0.99),
        "age_max": max(ages, default=0.0),
        "waiting_p50": percentile([float(w) for w in waiting], 0.5),
        "waiting_p99": percentile([float(w) for w in waiting], 0.99),
        "catch_up": catch_up,
        "refused": refused,
    }


async def main(args: argparse.Namespace) -> None:
    with RedisServer() as redis_server, PostgresServer() as postgres:
        dsn = postgres.create_database("bench")
        per_event, measured = await memory_per_event(redis_server.url)
        speed = await throughput(redis_server.url, dsn, args.events, args.rounds)
        lagged = await storm(redis_server.url, dsn, args.storm_seconds)
    print(
        f"""
=== earmark flusher benchmark (redis-server + PostgreSQL on 127.0.0.1, {os.cpu_count()} cores) ===
Redis memory per waiting event    {per_event:8.1f} bytes   (MEMORY USAGE, {measured} reserve/commit events)
Throughput, {speed["events"]} events x {speed["rounds"]} rounds (medians)
  flusher (drain, batch 500)      {speed["flusher"]:10.0f} events/s
  plain COPY into ledger          {speed["copy"]:10.0f} rows/s
  flusher / COPY                  {speed["ratio"]:10.2f}
  rounds: flusher {", ".join(f"{x:.0f}" for x in speed["flusher_all"])}
          copy    {", ".join(f"{x:.0f}" for x in speed["copy_all"])}
Lag under a storm ({STORM_CALLERS} concurrent callers, {lagged["seconds"]:.1f}s, flusher in its own process)
  engine rate                     {lagged["ops_per_second"]:10.0f} ops/s (= events/s)
  oldest waiting event, p50       {lagged["age_p50"] * 1000:10.1f} ms
  oldest waiting event, p99       {lagged["age_p99"] * 1000:10.1f} ms   (max {lagged["age_max"] * 1000:.1f} ms)
  events waiting, p50 / p99       {lagged["waiting_p50"]:10.0f} / {lagged["waiting_p99"]:.0f}
  samples                         {lagged["samples"]:10d}  (every {SAMPLE_INTERVAL_SECONDS * 1000:.0f} ms)
  caught up after the storm in    {lagged["catch_up"] * 1000:10.0f} ms
"""  # noqa: E501
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--storm-seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
