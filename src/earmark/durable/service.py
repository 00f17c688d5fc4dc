"""The durable record as the service and the CLI use it: one object for ``serve``'s
lifespan, and one-call functions for ``earmark migrate | flush | rebuild | verify``.

``DurableService`` has the shape of ``earmark.api.hooks.DurableRecord`` (prepare, start,
stop, lag_source) without importing the API: the library does not depend on its service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from earmark.durable.flusher import (
    BACKOFF_MS_MAX,
    BACKOFF_MS_MIN,
    REDIS_TRANSIENT,
    Flusher,
)
from earmark.durable.rebuild import (
    RebuildReport,
    ReplayReport,
    VerifyReport,
    rebuild,
    replay_check,
    verify,
)
from earmark.errors import EarmarkError, LedgerUnavailable
from earmark.store.ledger import Ledger, Page, PageQuery, open_ledger
from earmark.store.webhooks import WebhookStore, webhook_store
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.metrics import WebhookMetrics
from earmark.webhooks.service import OnceReport, WebhookService

log = logging.getLogger("earmark.durable.service")

# How long shutdown keeps flushing what is still waiting before it gives up (the next
# flusher to run picks the rest up: nothing is lost, only later).
STOP_DRAIN_TIMEOUT_SECONDS = 5.0


def _log_if_crashed(task: asyncio.Task[None]) -> None:
    """A flusher (or webhook worker) that stops on its own is an incident: say so at
    once, not at shutdown. (Readiness fails too, as the flusher's lag grows.)"""
    if not task.cancelled() and (error := task.exception()) is not None:
        what = "the webhook worker" if task.get_name() == "webhooks" else "the write-behind flusher"
        log.error("%s stopped: %r", what, error, exc_info=error)


def consumer_name() -> str:
    """Unique per live process (uvicorn may run several workers, each with a flusher)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class DurableService:
    """The flusher and the start-up fencing of one service process.

    Args:
        database_url: ``postgresql://...`` or ``sqlite:///path``.
        flusher_in_process: run the write-behind flusher as a task of this process.
        rebuild_on_start: when the record holds stock and Redis has lost its markers,
            rebuild at start-up instead of staying fenced. Right for the embedded store
            (an in-process Redis is lost at every restart); for a real Redis leave it to
            an operator (``earmark rebuild``), who should first learn why Redis was lost.
        webhooks: run the webhook dispatcher and delivery worker in-process with this
            configuration (None: not in this process); ``webhook_metrics`` counts them.
    """

    def __init__(
        self,
        database_url: str,
        *,
        flusher_in_process: bool = True,
        rebuild_on_start: bool = False,
        webhooks: WebhookConfig | None = None,
        webhook_metrics: WebhookMetrics | None = None,
        **flusher_settings: Any,
    ) -> None:
        self.ledger: Ledger = open_ledger(database_url)
        self.flusher_in_process = flusher_in_process
        self.rebuild_on_start = rebuild_on_start
        self.flusher_settings = flusher_settings
        self.webhook_config = webhooks
        self.webhook_metrics = webhook_metrics
        self.webhooks: WebhookService | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self.flusher: Flusher | None = None
        self.rebuilt: RebuildReport | None = None  # what the start-up rebuild restored
        self._engine: Any = None
        self._migrated = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def prepare(self, engine: Any) -> bool:
        """Migrates the schema; returns ``initialize`` for ``engine.start``: True only
        while the record holds no stock. May rebuild (see ``rebuild_on_start``).

        A record that cannot be reached (``LedgerUnavailable``) does not stop a real
        Redis from selling: nothing is stamped (as in ``rebuild.start_engine``), so a
        healthy Redis sells on, a lost or new one stays fenced, and the flusher catches
        up once the record answers. With ``rebuild_on_start`` (embedded) it is raised:
        without the record, the restart would lose every unit.
        """
        try:
            await self.ledger.migrate()
            self._migrated = True
            has_stock = await self.ledger.has_stock()
        except LedgerUnavailable as error:
            if self.rebuild_on_start:
                raise
            log.warning("durable record unreachable, starting without stamping markers: %s", error)
            return False
        if not has_stock:
            return True
        if self.rebuild_on_start:
            await engine.start(initialize=False)
            if not engine.state.ready:
                log.info("Redis starts without generation markers: restoring it from the record")
                self.rebuilt = await rebuild(engine, self.ledger)
                log.info("restored: %s", describe_rebuild(self.rebuilt))
        return False

    async def start(self, engine: Any) -> None:
        self._engine = engine
        if self.webhook_config is not None:
            self.webhooks = WebhookService(
                self.ledger, self.webhook_config, metrics=self.webhook_metrics
            )
            self._webhook_task = asyncio.create_task(self._run_webhooks(), name="webhooks")
            self._webhook_task.add_done_callback(_log_if_crashed)
        if not self.flusher_in_process:
            return
        self.flusher = Flusher.for_engine(
            engine, self.ledger, consumer=consumer_name(), **self.flusher_settings
        )
        if self.webhooks is not None:  # what the flusher records, the dispatcher reads
            self.flusher.on_recorded = self.webhooks.dispatcher.wake.set
        self._task = asyncio.create_task(self._run(self.flusher), name="flusher")
        self._task.add_done_callback(_log_if_crashed)

    async def _until_migrated(self) -> bool:
        """Migrates, retrying while the record is down (``prepare`` may have found it
        down); False if stopped first. Migrating is idempotent and safe concurrently."""
        backoff_ms = BACKOFF_MS_MIN
        while not self._migrated and not self._stop.is_set():
            try:
                await self.ledger.migrate()
            except LedgerUnavailable as error:
                log.warning("durable record unreachable, retrying in %d ms: %s", backoff_ms, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, BACKOFF_MS_MAX)
            else:
                self._migrated = True
        return self._migrated

    async def _run(self, flusher: Flusher) -> None:
        """The flusher loop, after the schema is in place."""
        await self._until_migrated()
        await flusher.run(self._stop)

    async def _run_webhooks(self) -> None:
        """The webhook dispatcher and worker, after the schema is in place. A failing
        endpoint never stops it, and it has no part in readiness."""
        if self.webhooks is not None and await self._until_migrated():
            await self.webhooks.run(self._stop)

    async def stop(self) -> None:
        """Stops the webhook worker and the flusher, flushes what still waits (bounded),
        closes the record. What it cannot flush stays in Redis for the next flusher, and
        messages in flight are sent again by the next worker: nothing is lost."""
        try:
            self._stop.set()
            if self._webhook_task is not None and self.webhooks is not None:
                await asyncio.gather(self._webhook_task, return_exceptions=True)
                await self.webhooks.close()
            if self._task is not None and self.flusher is not None:
                await asyncio.gather(self._task, return_exceptions=True)  # logged already
                crashed = self._task.cancelled() or self._task.exception() is not None
                if not crashed and self._migrated:
                    await self._drain(self.flusher)
                await self.flusher.close()
        finally:
            await self.ledger.close()

    @staticmethod
    async def _drain(flusher: Flusher) -> None:
        try:
            handled = await flusher.drain(STOP_DRAIN_TIMEOUT_SECONDS)
        except (TimeoutError, EarmarkError, *REDIS_TRANSIENT) as error:
            log.warning("shutdown left events for the next flusher: %r", error)
        else:
            log.info("shutdown flushed the %d events still waiting", handled)

    async def ledger_for_reads(self) -> Ledger:
        """The record's open ledger, for reads such as ``GET /v1/ledger``, with its schema
        in place (migrated first if ``prepare`` did not run or found the record down;
        ``LedgerUnavailable`` while it still is)."""
        if not self._migrated:
            await self.ledger.migrate()
            self._migrated = True
        return self.ledger

    def lag_source(self) -> Callable[[], Awaitable[float]] | None:
        """Seconds the record is behind (age of the oldest waiting event)."""
        engine = self._engine
        if engine is None:
            return None

        async def seconds() -> float:
            lag = await engine.durable_lag()
            return float(lag.oldest_age_seconds)

        return seconds


def describe_rebuild(report: RebuildReport) -> str:
    """One line for logs and ``earmark rebuild``."""
    return (
        f"{report.stock_records} stock records and {report.committed_parts} committed "
        f"reservation parts in {report.partitions} partitions (generation "
        f"{report.generation}); {report.units_released} held units released and "
        f"{report.reservations_expired} held reservations expired (holds do not survive); "
        f"{report.events_drained} events drained first"
    )


# -- one call each, for the CLI ------------------------------------------------------------


async def _with_ledger(database_url: str, work: Callable[[Ledger], Awaitable[Any]]) -> Any:
    """Opens the record, brings its schema up to date (as ``serve`` does at every start:
    idempotent, and serialised between concurrent migrators), runs ``work``, closes."""
    ledger = open_ledger(database_url)
    try:
        await ledger.migrate()
        return await work(ledger)
    finally:
        await ledger.close()


async def flush(engine: Any, database_url: str, *, stop: asyncio.Event | None = None) -> int:
    """``earmark flush``: with ``stop``, run until it is set; without, drain once
    (``--once``). Returns the events handled."""

    async def work(ledger: Ledger) -> int:
        flusher = Flusher.for_engine(engine, ledger, consumer=consumer_name())
        try:
            if stop is None:
                return await flusher.drain()
            await flusher.run(stop)
            return flusher.stats.events
        finally:
            await flusher.close()

    return int(await _with_ledger(database_url, work))


async def rebuild_from(engine: Any, database_url: str, *, force: bool = False) -> RebuildReport:
    """``earmark rebuild [--force]``."""
    report: RebuildReport = await _with_ledger(
        database_url, lambda ledger: rebuild(engine, ledger, force=force)
    )
    return report


async def verify_against(engine: Any, database_url: str) -> VerifyReport:
    """``earmark verify``: exit non-zero unless ``report.ok``."""
    report: VerifyReport = await _with_ledger(database_url, lambda ledger: verify(engine, ledger))
    return report


async def page_at(database_url: str, query: PageQuery) -> Page:
    """``earmark ledger``: one page of the recorded events."""
    page: Page = await _with_ledger(database_url, lambda ledger: ledger.page(query))
    return page


async def with_webhook_store(
    database_url: str, work: Callable[[WebhookStore], Awaitable[Any]]
) -> Any:
    """``earmark webhooks create | list | ...``: ``work`` on the record's webhook tables."""
    return await _with_ledger(database_url, lambda ledger: work(webhook_store(ledger)))


async def webhooks_once(database_url: str, config: WebhookConfig) -> OnceReport:
    """``earmark webhooks deliver --once``: dispatch what is recorded, send what is due."""

    async def work(ledger: Ledger) -> OnceReport:
        service = WebhookService(ledger, config)
        try:
            return await service.run_once()
        finally:
            await service.close()

    report: OnceReport = await _with_ledger(database_url, work)
    return report


async def webhooks_until(database_url: str, config: WebhookConfig, stop: asyncio.Event) -> None:
    """``earmark webhooks deliver``: dispatch and deliver until ``stop`` is set."""

    async def work(ledger: Ledger) -> None:
        service = WebhookService(ledger, config)
        try:
            await service.run(stop)
        finally:
            await service.close()

    await _with_ledger(database_url, work)


async def replay_check_at(database_url: str) -> ReplayReport:
    """``earmark verify --replay``: exit non-zero unless ``report.ok``."""
    report: ReplayReport = await _with_ledger(database_url, replay_check)
    return report
