"""Client load from Python: many asyncio callers, optionally in several processes.

The callers run in worker processes even when there is one, so the benchmark's own
bookkeeping never shares a core with them, and one code path serves every subject
(earmark on Redis or a cluster, PostgreSQL with row locks). A subject is an *opener*: a
module-level async context manager that connects and yields one ``attempt`` coroutine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from typing import Any

from earmark import AsyncEngine, EngineConfig, InsufficientStock
from loadtests.bench.common import Sample, percentile

# (sku index, unique idempotency key) -> True if held, False if refused for lack of stock.
Attempt = Callable[[int, str], Awaitable[bool]]
Opener = Callable[["WorkSpec"], AbstractAsyncContextManager[Attempt]]

ERROR_EXAMPLES_MAX = 3
START_DELAY_S = 0.3  # lets every worker connect before the measured window opens
LATENCIES_KEPT_MAX = 2_000_000  # per worker and round: bounds the memory of one round


def sku_name(index: int) -> str:
    return f"BENCH-{index:05d}"


@dataclass(frozen=True)
class WorkSpec:
    """One round of load for one worker process.

    Either ``seconds`` (run until then) or ``attempts`` (a launch: this many calls in all,
    whatever their outcome) bounds it; ``seconds`` also caps a launch."""

    opener: Opener
    target: str
    skus: int
    concurrency: int
    seconds: float
    tag: str
    attempts: int | None = None
    start_at: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerResult:
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0


def _pick(skus: int, n: int) -> int:
    """A deterministic spread over the SKUs: every caller cycles through all of them."""
    return (n * 7919) % skus if skus > 1 else 0


async def _caller(spec: WorkSpec, attempt: Attempt, number: int, state: dict[str, Any]) -> None:
    result: WorkerResult = state["result"]
    deadline: float = state["deadline"]
    n = 0
    while time.perf_counter() < deadline:
        if spec.attempts is not None:
            if state["left"] <= 0:
                return
            state["left"] -= 1
        key = f"{spec.tag}-{number}-{n}"
        started = time.perf_counter()
        try:
            held = await attempt(_pick(spec.skus, number * 1_000_003 + n), key)
        except Exception as error:  # noqa: BLE001 - counted and reported, never hidden
            result.errors += 1
            if len(result.error_examples) < ERROR_EXAMPLES_MAX:
                result.error_examples.append(f"{type(error).__name__}: {error}"[:300])
        else:
            if held:
                result.accepted += 1
            else:
                result.refused += 1
            if len(result.latencies_ms) < LATENCIES_KEPT_MAX:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
        n += 1


async def _work(spec: WorkSpec) -> WorkerResult:
    result = WorkerResult()
    async with spec.opener(spec) as attempt:
        await asyncio.sleep(max(0.0, spec.start_at - time.time()))
        started = time.perf_counter()
        state = {
            "result": result,
            "deadline": started + spec.seconds,
            "left": spec.attempts or 0,
        }
        await asyncio.gather(*(_caller(spec, attempt, i, state) for i in range(spec.concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result


def work(spec: WorkSpec) -> WorkerResult:
    """Worker-process entry point: one round of load, with uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_work(spec))
    return uvloop.run(_work(spec))


def _noop() -> None:
    """Forces the pool to spawn its workers before the first measured round."""


@contextmanager
def worker_pool(processes: int) -> Iterator[ProcessPoolExecutor]:
    """Spawned (not forked) workers, warmed up, shut down on the way out."""
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"))
    try:
        for future in [pool.submit(_noop) for _ in range(processes)]:
            future.result()
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_load(pool: ProcessPoolExecutor, spec: WorkSpec, processes: int) -> Sample:
    """Splits ``spec`` (callers, attempts) over ``processes`` workers that start together,
    and merges their results into one sample."""
    per_process = max(1, spec.concurrency // processes)
    attempts = None if spec.attempts is None else -(-spec.attempts // processes)
    start_at = time.time() + START_DELAY_S
    specs = [
        replace(spec, concurrency=per_process, attempts=attempts, start_at=start_at, tag=tag)
        for tag in (f"{spec.tag}p{i}" for i in range(processes))
    ]
    results = list(pool.map(work, specs))
    latencies = [ms for r in results for ms in r.latencies_ms]
    accepted, refused = sum(r.accepted for r in results), sum(r.refused for r in results)
    elapsed = max(r.elapsed_s for r in results)
    return Sample(
        ops_per_s=(accepted + refused) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        accepted=accepted,
        refused=refused,
        errors=sum(r.errors for r in results),
        error_examples=tuple(e for r in results for e in r.error_examples)[:ERROR_EXAMPLES_MAX],
    )


def earmark_config(spec_options: dict[str, Any]) -> EngineConfig:
    return EngineConfig(
        prefix=spec_options["prefix"],
        partitions=spec_options["partitions"],
        min_replicas_ack=spec_options.get("min_replicas_ack", 0),
    )


@asynccontextmanager
async def open_earmark(spec: WorkSpec) -> AsyncIterator[Attempt]:
    """earmark's reserve through ``AsyncEngine``: one line, qty 1, its own idempotency key.

    ``options``: prefix, partitions, cluster, coalesce, batch (default on), customers (a
    customer per call, as a drop's SKU needs: ``loadtests.bench.engine.with_drop``)."""
    options = spec.options
    engine = AsyncEngine.from_url(
        spec.target,
        earmark_config(options),
        cluster=options["cluster"],
        coalesce=options["coalesce"],
        batch=options.get("batch", True),
    )
    names = [sku_name(i) for i in range(spec.skus)]
    customers = bool(options.get("customers", False))

    async def attempt(index: int, key: str) -> bool:
        customer = f"c-{key}" if customers else None
        try:
            await engine.reserve([(names[index], 1)], idempotency_key=key, customer=customer)
        except InsufficientStock:
            return False
        return True

    async with engine:
        yield attempt
