"""The sweeper loop: expires overdue holds and resolves stale pins, every N seconds.

Holds never need the sweeper to be correct (a reservation reclaims expired holds on its
own lines), but without it an expired hold on a quiet SKU stays counted in ``reserved``
and its ``expired`` event is never written. ``serve`` runs this loop as a background
task; ``earmark sweep --loop`` runs it as a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.exceptions

from earmark.engine.async_engine import AsyncEngine
from earmark.errors import EarmarkError
from earmark.models import SweepReport

log = logging.getLogger("earmark.engine.sweeper")

# A failed pass is retried after the interval; these are the failures a pass can have.
SWEEP_ERRORS = (EarmarkError, redis.exceptions.RedisError, OSError)


async def sweep_once(
    engine: AsyncEngine,
    on_report: Callable[[SweepReport], None] | None = None,
    on_failure: Callable[[], None] | None = None,
) -> SweepReport | None:
    """One pass; a failure is logged, counted (``on_failure``) and returns None (the next
    pass tries again)."""
    try:
        report = await engine.sweep()
    except SWEEP_ERRORS as error:
        log.warning("sweep failed, retrying next interval: %s: %s", type(error).__name__, error)
        if on_failure is not None:
            on_failure()
        return None
    if report.expired or report.pins_resolved or report.offered:
        log.info(
            "swept: %d holds expired, %d pins resolved, %d waitlist offers",
            report.expired,
            report.pins_resolved,
            report.offered,
        )
    if on_report is not None:
        on_report(report)
    return report


async def run_sweeper(
    engine: AsyncEngine,
    interval_seconds: float,
    on_report: Callable[[SweepReport], None] | None = None,
    *,
    passes: int | None = None,
    stop: asyncio.Event | None = None,
    on_failure: Callable[[], None] | None = None,
) -> None:
    """Sweeps every ``interval_seconds`` until ``stop`` is set or the task is cancelled
    (or after ``passes`` passes). Set ``stop`` before cancelling: a cancellation that
    lands inside a client call can be swallowed by it, the event cannot."""
    stop = stop or asyncio.Event()
    done = 0
    while not stop.is_set() and (passes is None or done < passes):
        await sweep_once(engine, on_report, on_failure)
        done += 1
        if passes is not None and done >= passes:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


def log_if_crashed(task: asyncio.Task[None]) -> None:
    """Done-callback: a sweeper that stops on an unexpected error says so loudly."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error(
            "the sweeper stopped: %r; holds will no longer expire in the background",
            error,
            exc_info=error,
        )
