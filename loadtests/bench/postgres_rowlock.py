"""What users would pick instead: one PostgreSQL table with row locking.

The same hot-SKU launch on both sides, with the same number of concurrent callers (in
the same worker processes): ``units`` units on hand, ``2 x units`` attempts of one unit
each, so half are refused and oversell has a chance to show.

* PostgreSQL (asyncpg pool, one connection per caller): a transaction of
  ``UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2``
  and, if a row was updated, an INSERT of the hold row (with a unique idempotency key,
  as earmark keeps one). Two variants, both with ``fsync=on``:
  ``synchronous_commit=off`` (commit returns before its WAL is flushed) and
  ``synchronous_commit=on`` (durable before the reply), set per session.
* earmark: ``AsyncEngine.reserve`` on a throwaway Redis with AOF ``appendfsync everysec``.
  It answers before anything is on disk, like ``synchronous_commit=off``: the durable
  ledger is written behind, by the flusher. So the ``synchronous_commit=on`` figure
  buys a stronger promise than earmark's.

Afterwards both sides are counted from their stores: units held beyond stock
(oversell) must be 0, and earmark's buckets must match its hold records.

    python -m loadtests.bench.postgres_rowlock [--quick] [--rounds N] [--processes P]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
from tests.support.servers import PostgresServer, RedisServer

from earmark import EngineConfig
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
from loadtests.bench.load import (
    Attempt,
    Opener,
    WorkSpec,
    open_earmark,
    run_load,
    sku_name,
    worker_pool,
)

PREFIX = "rowlock"
CONCURRENCY = 64  # callers; PostgreSQL's default max_connections (100) bounds the pool
LEVELS = (8, 32, CONCURRENCY)  # the chart's series (synchronous_commit=off)
LEVELS_QUICK = (8, CONCURRENCY)
UNITS, UNITS_QUICK = 5_000, 1_000  # 500 sells out in ~0.1 s: too short to time
ATTEMPTS_PER_UNIT = 2
LAUNCH_TIMEOUT_S = 60.0  # a launch that has not finished by then is cut short (and shows)
SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku text PRIMARY KEY,
    available integer NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS holds (
    id bigserial PRIMARY KEY,
    sku text NOT NULL,
    qty integer NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""
TAKE = """UPDATE stock SET available = available - $2
          WHERE sku = $1 AND available >= $2 RETURNING available"""
HOLD = "INSERT INTO holds (sku, qty, idempotency_key) VALUES ($1, $2, $3)"
_tags = itertools.count()


class DurablePostgres(PostgresServer):
    """The throwaway server of tests/support/servers.py with ``fsync`` back on.

    tests/support/servers.py starts PostgreSQL with ``fsync=off`` (fast tests), under which
    ``synchronous_commit=on`` flushes nothing. The durable variant is only meaningful
    with fsync on; ``fsync_setting`` reports what the server really runs with."""

    def _run(self, tool: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        if tool == "pg_ctl" and "start" in args:
            args = tuple(
                a.replace("-c fsync=off", "-c fsync=on").replace(" -c full_page_writes=off", "")
                for a in args
            )
        return super()._run(tool, *args, timeout=timeout)


@asynccontextmanager
async def open_postgres(spec: WorkSpec) -> AsyncIterator[Attempt]:
    """The row-locking reserve: one transaction per attempt. ``options``: synchronous_commit."""
    settings = {"synchronous_commit": spec.options["synchronous_commit"]}
    size = spec.concurrency
    async with asyncpg.create_pool(
        spec.target, min_size=size, max_size=size, server_settings=settings
    ) as pool:

        async def attempt(index: int, key: str) -> bool:
            async with pool.acquire() as conn, conn.transaction():
                left = await conn.fetchval(TAKE, sku_name(index), 1)
                if left is None:
                    return False
                await conn.execute(HOLD, sku_name(index), 1, key)
                return True

        yield attempt


async def _pg(dsn: str, *statements: tuple[Any, ...], script: str = "") -> list[object]:
    """Runs ``script`` (several statements, no parameters), then each statement."""
    conn = await asyncpg.connect(dsn)
    try:
        if script:
            await conn.execute(script)
        return [await conn.fetchval(sql, *args) for sql, *args in statements]
    finally:
        await conn.close()


def pg_reset(dsn: str, units: int) -> None:
    asyncio.run(
        _pg(
            dsn,
            ("TRUNCATE holds",),
            ("DELETE FROM stock",),
            ("INSERT INTO stock VALUES ($1, $2)", sku_name(0), units),
            script=SCHEMA,
        )
    )


def pg_check(dsn: str, units: int, accepted: int) -> str:
    """Counts the holds and the stock row: held units beyond stock are oversold."""
    held, left = asyncio.run(
        _pg(
            dsn,
            ("SELECT coalesce(sum(qty), 0) FROM holds",),
            ("SELECT available FROM stock WHERE sku = $1", sku_name(0)),
        )
    )
    held, left = int(str(held)), int(str(left))
    oversell = max(0, held - units)
    problems = [] if held + left == units else [f"held {held} + available {left} != {units}"]
    problems += [] if held == accepted else [f"held {held} != accepted calls {accepted}"]
    if problems or oversell:
        return "CHECK FAILED: " + "; ".join([*problems, f"oversell {oversell}"])
    return f"held {held} of {units}, oversell 0"


def _launch(
    opener: Opener, target: str, units: int, options: dict[str, Any], concurrency: int
) -> WorkSpec:
    return WorkSpec(
        opener=opener,
        target=target,
        skus=1,
        concurrency=concurrency,
        seconds=LAUNCH_TIMEOUT_S,
        tag=f"l{next(_tags)}",
        attempts=units * ATTEMPTS_PER_UNIT,
        options=options,
    )


def _sold_out(sample: Sample, units: int, verdict: str) -> Sample:
    """Every unit must sell: fewer accepted than stock with more attempts is a loss."""
    if sample.accepted != units and not verdict.startswith("CHECK FAILED"):
        verdict = f"CHECK FAILED: sold {sample.accepted} of {units}; {verdict}"
    return replace(sample, check=verdict)


def postgres_round(
    pool: ProcessPoolExecutor, dsn: str, settings: Settings, units: int, sync: str,
    concurrency: int = CONCURRENCY,
) -> Callable[[], Sample]:  # fmt: skip
    def run() -> Sample:
        pg_reset(dsn, units)
        spec = _launch(open_postgres, dsn, units, {"synchronous_commit": sync}, concurrency)
        sample = run_load(pool, spec, settings.processes)
        return _sold_out(sample, units, pg_check(dsn, units, sample.accepted))

    return run


def earmark_round(
    pool: ProcessPoolExecutor, url: str, settings: Settings, units: int,
    concurrency: int = CONCURRENCY,
) -> Callable[[], Sample]:  # fmt: skip
    config = EngineConfig(prefix=PREFIX, partitions=1)
    options = {"prefix": PREFIX, "partitions": 1, "cluster": False, "coalesce": True}

    def run() -> Sample:
        store.reset(url, config, cluster=False, skus=1, units=units)
        spec = _launch(open_earmark, url, units, options, concurrency)
        sample = run_load(pool, spec, settings.processes)
        verdict = store.check(
            url, config, cluster=False, skus=1, units=units, accepted=sample.accepted
        )
        return _sold_out(sample, units, verdict)

    return run


def fsync_setting(dsn: str) -> str:
    (value,) = asyncio.run(_pg(dsn, ("SHOW fsync",)))
    return str(value)


def run(settings: Settings) -> list[Comparison]:
    """Both PostgreSQL variants against earmark at ``CONCURRENCY`` callers, and the
    ``synchronous_commit=off`` one at every level of ``LEVELS`` (the chart's series), on
    one PostgreSQL and one Redis."""
    units = UNITS_QUICK if settings.quick else UNITS
    results = []
    with (
        DurablePostgres() as pg,
        RedisServer(appendonly=True) as redis_server,
        worker_pool(settings.processes) as pool,
    ):
        fsync = fsync_setting(pg.dsn)
        levels = LEVELS_QUICK if settings.quick else LEVELS
        runs = [("off", level) for level in levels]
        runs.append(("on", CONCURRENCY))
        for sync, level in runs:
            comparison = Comparison(
                benchmark=f"hot-SKU launch vs PostgreSQL row lock, synchronous_commit={sync}",
                subject="earmark (Redis, AOF everysec)",
                baseline=f"PostgreSQL UPDATE+INSERT (fsync={fsync}, synchronous_commit={sync})",
                command=command_line(),
                concurrency=level,
                notes=f"{units:,} units, {units * ATTEMPTS_PER_UNIT:,} attempts of 1 unit",
                group="rowlock" if sync == "off" else "",
            )
            subject = earmark_round(pool, redis_server.url, settings, units, level)
            baseline = postgres_round(pool, pg.dsn, settings, units, sync, level)
            results.append(alternate(comparison, settings.rounds, subject, baseline))
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
