"""Engine level: earmark's reserve through ``AsyncEngine`` against the raw limit.

Subject: many asyncio callers (in ``--processes`` worker processes) reserving one unit
each through ``AsyncEngine`` on a throwaway Redis. Baseline: ``redis-benchmark`` with as
many connections (and as many threads as earmark has processes) running EVALSHA of a
minimal decrement script on the same Redis. Both start every round from an emptied
Redis with the same stock.

* hot SKU at several concurrencies (the chart), and 10,000 SKUs;
* a hot SKU that sells out at once (500 units): refusals are counted, oversell checked;
* the coalescing gain: the same earmark workload with ``coalesce=True`` against
  ``coalesce=False``, and the batching gain: ``batch=True`` (concurrent reserves as one
  reserve_batch call) against ``batch=False`` (one pipelined reserve call each);
* earmark at 128 callers against redis-benchmark driving earmark's own one-cart reserve
  script with 64 clients (``loadtests.bench.scriptcost``): the library against the
  best any client could do with one call per cart.

    python -m loadtests.bench.engine [--quick] [--rounds N] [--seconds S] [--processes P]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tests.support.servers import RedisServer

from earmark import Engine, EngineConfig
from loadtests.bench import store
from loadtests.bench.common import (
    Comparison,
    Sample,
    Settings,
    add_common_args,
    alternate,
    command_line,
    settings_from,
)
from loadtests.bench.load import WorkSpec, open_earmark, run_load, sku_name, worker_pool
from loadtests.bench.redisbench import RawTarget
from loadtests.bench.scriptcost import RESERVE_SCRIPT_CLIENTS, ReserveScriptTarget

PREFIX = "bench"
HOT_UNITS = 2_000_000  # enough that every reserve of a round succeeds
MANY_SKUS = 10_000
MANY_UNITS = 1_000  # per SKU: ample at any rate a round reaches
SOLD_OUT_UNITS = 500
LEVELS = (8, 32, 128)
LEVELS_QUICK = (8, 128)
HEADLINE_CONCURRENCY = 128
EARMARK = "earmark AsyncEngine.reserve"
RAW = "redis-benchmark EVALSHA decrement"
_tags = itertools.count()


@dataclass(frozen=True)
class Workload:
    """What the callers do: ``skus`` SKUs with ``units`` each, ``concurrency`` callers."""

    skus: int
    units: int
    concurrency: int


def earmark_round(
    pool: ProcessPoolExecutor,
    url: str,
    settings: Settings,
    load: Workload,
    *,
    coalesce: bool,
    batch: bool = True,
    drop: bool = False,
) -> Callable[[], Sample]:
    """One earmark round: reset the store, run the callers, check the buckets. ``drop``:
    the SKUs are a drop's (open, a per-customer limit, its waitlist on) and every call
    brings a customer of its own."""
    config = EngineConfig(prefix=PREFIX, partitions=1)
    options = {
        "prefix": PREFIX,
        "partitions": 1,
        "cluster": False,
        "coalesce": coalesce,
        "batch": batch,
        "customers": drop,
    }

    def run() -> Sample:
        store.reset(url, config, cluster=False, skus=load.skus, units=load.units)
        if drop:
            open_drop(url, config, load.skus)
        spec = WorkSpec(
            opener=open_earmark,
            target=url,
            skus=load.skus,
            concurrency=load.concurrency,
            seconds=settings.seconds,
            tag=f"r{next(_tags)}",
            options=options,
        )
        sample = run_load(pool, spec, settings.processes)
        verdict = store.check(
            url, config, cluster=False, skus=load.skus, units=load.units, accepted=sample.accepted
        )
        return _with_check(sample, verdict)

    return run


DROP_LIMIT = 2


def open_drop(url: str, config: EngineConfig, skus: int) -> None:
    """The bench SKUs as one open drop with a per-customer limit and a waitlist."""
    with Engine.from_url(url, config) as engine:
        engine.create_drop(
            "bench-drop",
            [sku_name(i) for i in range(skus)],
            opens_at=datetime.now(UTC) - timedelta(hours=1),
            per_customer_limit=DROP_LIMIT,
            waitlist=True,
            idempotency_key="bench-drop",
        )


def _with_check(sample: Sample, verdict: str) -> Sample:
    return Sample(**{**sample.__dict__, "check": verdict})


def raw_round(port: int, settings: Settings, load: Workload) -> tuple[Callable[[], Sample], str]:
    """The baseline round (calibrated once, here) and its command line."""
    target = RawTarget(port, load.skus, load.units, threads=settings.processes)
    requests = target.requests_for(load.concurrency, settings.seconds)
    return (lambda: target.run(load.concurrency, requests)), target.describe(load.concurrency)


def versus_raw(
    pool: ProcessPoolExecutor,
    server: RedisServer,
    settings: Settings,
    name: str,
    load: Workload,
    *,
    group: str = "",
    notes: str = "",
) -> Comparison:
    baseline, raw_command = raw_round(server.port, settings, load)
    comparison = Comparison(
        benchmark=name,
        subject=EARMARK,
        baseline=RAW,
        command=f"{command_line()}  |  baseline: {raw_command}",
        concurrency=load.concurrency,
        notes=notes,
        group=group,
    )
    subject = earmark_round(pool, server.url, settings, load, coalesce=True)
    return alternate(comparison, settings.rounds, subject, baseline)


def coalescing(
    pool: ProcessPoolExecutor, server: RedisServer, settings: Settings, load: Workload
) -> Comparison:
    """Same callers, same store; only ``AsyncEngine(coalesce=...)`` differs."""
    comparison = Comparison(
        benchmark="engine: coalescing gain, hot SKU",
        subject="earmark AsyncEngine(coalesce=True)",
        baseline="earmark AsyncEngine(coalesce=False)",
        command=command_line(),
        concurrency=load.concurrency,
    )
    on = earmark_round(pool, server.url, settings, load, coalesce=True)
    off = earmark_round(pool, server.url, settings, load, coalesce=False)
    return alternate(comparison, settings.rounds, on, off)


def batching(
    pool: ProcessPoolExecutor, server: RedisServer, settings: Settings, load: Workload
) -> Comparison:
    """Same callers, same store, both coalesced; only ``AsyncEngine(batch=...)`` differs."""
    comparison = Comparison(
        benchmark="engine: batching gain, hot SKU",
        subject="earmark AsyncEngine(batch=True)",
        baseline="earmark AsyncEngine(batch=False)",
        command=command_line(),
        concurrency=load.concurrency,
    )
    on = earmark_round(pool, server.url, settings, load, coalesce=True)
    off = earmark_round(pool, server.url, settings, load, coalesce=True, batch=False)
    return alternate(comparison, settings.rounds, on, off)


def versus_reserve_script(
    pool: ProcessPoolExecutor, server: RedisServer, settings: Settings, load: Workload
) -> Comparison:
    """The library (batching on) against redis-benchmark driving the one-cart reserve
    script with 64 clients: what one call per cart costs Redis at best."""
    target = ReserveScriptTarget(server.port, "reserve", RESERVE_SCRIPT_CLIENTS)
    requests = target.requests_for(settings.seconds)
    comparison = Comparison(
        benchmark="engine: hot SKU vs redis-benchmark driving reserve.lua",
        subject=EARMARK,
        baseline=f"redis-benchmark FCALL reserve, {RESERVE_SCRIPT_CLIENTS} clients",
        command=f"{command_line()}  |  baseline: {target.describe()}",
        concurrency=load.concurrency,
        notes="baseline: one EVALSHA per cart, no Python; subject: 128 asyncio callers",
    )
    subject = earmark_round(pool, server.url, settings, load, coalesce=True)
    return alternate(comparison, settings.rounds, subject, lambda: target.run(requests))


def with_drop(
    pool: ProcessPoolExecutor, server: RedisServer, settings: Settings, load: Workload
) -> Comparison:
    """The hot SKU in an open drop (limit 2, waitlist on, a customer per call) against the
    same SKU outside any drop: what the drop's rules cost the hot path."""
    comparison = Comparison(
        benchmark="engine: hot SKU in a drop (limit, waitlist) vs plain",
        subject="earmark AsyncEngine.reserve, drop SKU with customer",
        baseline="earmark AsyncEngine.reserve, plain SKU",
        command=command_line(),
        concurrency=load.concurrency,
        notes="target: within 15% of plain reserves (ratio >= 0.85)",
    )
    dropped = earmark_round(pool, server.url, settings, load, coalesce=True, drop=True)
    plain = earmark_round(pool, server.url, settings, load, coalesce=True)
    return alternate(comparison, settings.rounds, dropped, plain)


def run(settings: Settings) -> list[Comparison]:
    """Every engine-level comparison, on one throwaway Redis."""
    top = HEADLINE_CONCURRENCY
    results = []
    with RedisServer() as server, worker_pool(settings.processes) as pool:
        for level in LEVELS_QUICK if settings.quick else LEVELS:
            load = Workload(1, HOT_UNITS, level)
            results.append(versus_raw(pool, server, settings, "engine: hot SKU", load, group="hot"))
        many = Workload(MANY_SKUS, MANY_UNITS, top)
        results.append(versus_raw(pool, server, settings, "engine: 10,000 SKUs", many))
        sold_out = Workload(1, SOLD_OUT_UNITS, top)
        notes = f"{SOLD_OUT_UNITS} units: nearly every call is a refusal; accepted must be 500"
        results.append(
            versus_raw(pool, server, settings, "engine: hot SKU sold out", sold_out, notes=notes)
        )
        results.append(coalescing(pool, server, settings, Workload(1, HOT_UNITS, top)))
        results.append(batching(pool, server, settings, Workload(1, HOT_UNITS, top)))
        hot = Workload(1, HOT_UNITS, top)
        results.append(versus_reserve_script(pool, server, settings, hot))
        results.append(with_drop(pool, server, settings, hot))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    comparisons = run(settings_from(parser.parse_args()))
    print("\n=== summary")
    for comparison in comparisons:
        print(comparison.summary())


if __name__ == "__main__":
    main()
