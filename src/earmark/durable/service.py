"""The durable record as the service and the CLI use it: one object for ``serve``'s
lifespan, and one-call functions for ``earmark migrate | flush | rebuild | verify``.

``DurableService`` has the shape of ``earmark.api.hooks.DurableRecord`` (prepare, start,
stop, lag_source) without importing the API: the library does not depend on its service.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from earmark import apikeys, validation
from earmark.apikeys import ApiKey
from earmark.durable.fence import check_lost_writes
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
from earmark.durable.reconciliation import ANNOUNCE_INTERVAL_SECONDS, ReconciliationService
from earmark.errors import (
    EarmarkError,
    InvalidRequest,
    LedgerUnavailable,
    StoreNotReady,
    StoreUnavailable,
)
from earmark.store.ledger import Ledger, Page, PageQuery, open_ledger
from earmark.store.webhooks import WebhookStore, webhook_store
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.metrics import WebhookMetrics
from earmark.webhooks.service import OnceReport, WebhookService

log = logging.getLogger("earmark.durable.service")

# How long shutdown keeps flushing what is still waiting before it gives up (the next
# flusher to run picks the rest up: nothing is lost, only later).
STOP_DRAIN_TIMEOUT_SECONDS = 5.0
# How long /readyz waits for the durable record to answer before calling it down.
DATABASE_CHECK_SECONDS = 1.0


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
        discrepancy_sla_hours: float = 24.0,
        discrepancy_check_seconds: float = ANNOUNCE_INTERVAL_SECONDS,
        on_overdue: Callable[[int], None] | None = None,
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
        # reconciliation (docs/reconciliation.md): cases announced beside the flusher
        self.discrepancy_sla_hours = discrepancy_sla_hours
        self.discrepancy_check_seconds = discrepancy_check_seconds
        self.on_overdue = on_overdue
        self.reconciliations: ReconciliationService | None = None
        self._cases_task: asyncio.Task[None] | None = None

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
        if self._migrated:
            await self._adopt_legacy_keys(engine)
            await self._check_lost_writes(engine)
        if not self.rebuild_on_start:  # a real Redis: it may fail over under us
            engine.verifier = functools.partial(self._verify_store, engine)
        if self.webhook_config is not None:
            self.webhooks = WebhookService(
                self.ledger, self.webhook_config, metrics=self.webhook_metrics
            )
            self._webhook_task = asyncio.create_task(self._run_webhooks(), name="webhooks")
            self._webhook_task.add_done_callback(_log_if_crashed)
        self._start_reconciliations(engine)
        if not self.flusher_in_process:
            return
        self.flusher = Flusher.for_engine(
            engine, self.ledger, consumer=consumer_name(), **self.flusher_settings
        )
        if self.webhooks is not None:  # what the flusher records, the dispatcher reads
            self.flusher.on_recorded = self.webhooks.dispatcher.wake.set
        self._task = asyncio.create_task(self._run(self.flusher), name="flusher")
        self._task.add_done_callback(_log_if_crashed)

    def _start_reconciliations(self, engine: Any) -> None:
        self.reconciliations = ReconciliationService(
            engine, self.ledger, sla_hours=self.discrepancy_sla_hours, on_overdue=self.on_overdue
        )
        self._cases_task = asyncio.create_task(self._run_cases(), name="discrepancies")
        self._cases_task.add_done_callback(_log_if_crashed)

    async def _run_cases(self) -> None:
        """Announces case openings, resolutions and lateness, after the schema is in place."""
        if self.reconciliations is not None and await self._until_migrated():
            await self.reconciliations.run(self._stop, self.discrepancy_check_seconds)

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
            if self._cases_task is not None:
                await asyncio.gather(self._cases_task, return_exceptions=True)
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

    async def database_check(self) -> tuple[bool, str]:
        """Whether the record answers (one small query, at most DATABASE_CHECK_SECONDS)."""
        try:
            await asyncio.wait_for(self.ledger.store_meta(), DATABASE_CHECK_SECONDS)
        except (LedgerUnavailable, TimeoutError) as error:
            return False, f"unreachable: {error or type(error).__name__}"
        return True, ""

    async def api_keys(self) -> list[ApiKey]:
        """The API keys of the record (the service authenticates against these)."""
        return await (await self.ledger_for_reads()).api_keys()

    async def _check_lost_writes(self, engine: Any) -> None:
        """Before serving: a Redis behind the record (a failover lost writes) is fenced
        now, not sold from until the flusher's first check."""
        try:
            found = await check_lost_writes(
                engine.client, engine.keys, engine.partitions, self.ledger
            )
        except LedgerUnavailable as error:
            log.warning("lost-write check skipped at start, the record is down: %s", error)
            return
        if found.found:
            log.error(
                "Redis lacks writes the durable record holds: fenced until `earmark "
                "rebuild` (docs/design/durability.md, Topologies): %s",
                found.reason(),
            )
        elif not self.rebuild_on_start:  # a real Redis, which can fail over: vouch for it
            await engine.vouch()

    async def _verify_store(self, engine: Any) -> None:
        """The engine's verifier, when scripts refuse a primary as 'unverified' (its
        replication id is not the one vouched for: a failover, or a restart): the
        primary is vouched for once the record shows it lost no write, fenced otherwise.
        While the record is down a new primary cannot be checked: StoreUnavailable until
        it answers (the store fails closed)."""
        try:
            found = await check_lost_writes(
                engine.client, engine.keys, engine.partitions, self.ledger
            )
        except LedgerUnavailable as error:
            raise StoreUnavailable(
                "the Redis primary changed while the durable record is down: it cannot be "
                f"checked for lost writes yet ({error})"
            ) from error
        if found.found:
            raise StoreNotReady(f"Redis is fenced: {found.reason()}", reason=found.reason())
        await engine.vouch()
        log.warning("the durable record vouched for a new Redis primary: no write lost")

    async def _adopt_legacy_keys(self, engine: Any) -> None:
        """Keys an earlier version kept in Redis move into the record, once."""
        legacy = await engine.legacy_api_keys()
        if not legacy:
            return
        ledger = await self.ledger_for_reads()
        for key in legacy:
            await ledger.create_api_key(key)  # a name the record has already stays as it is
        await engine.forget_legacy_api_keys()
        log.warning("moved %d API keys from Redis into the durable record", len(legacy))

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
        f"{report.units_exposed} units committed beyond on hand flagged as exposure; "
        f"{report.units_allocated} units of channel allocations kept; "
        f"{report.drops} drops restored; {report.events_drained} events drained first"
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


async def create_api_key(
    database_url: str, name: str, scopes: frozenset[str]
) -> tuple[str, ApiKey]:
    """``earmark keys create``: a new key in the record; returns (token, key)."""
    token, key = apikeys.new_key(name, scopes)

    async def work(ledger: Ledger) -> bool:
        return await ledger.create_api_key(key)

    if not await _with_ledger(database_url, work):
        raise InvalidRequest(f"an API key named {key.name!r} already exists; revoke it first")
    return token, key


async def api_keys_at(database_url: str) -> list[ApiKey]:
    """``earmark keys list``."""
    found: list[ApiKey] = await _with_ledger(database_url, lambda ledger: ledger.api_keys())
    return found


async def revoke_api_key(database_url: str, name: str) -> bool:
    """``earmark keys revoke``: False when there was no key of that name."""
    name = validation.name(name, "name", apikeys.NAME_LENGTH_MAX)
    return bool(await _with_ledger(database_url, lambda ledger: ledger.revoke_api_key(name)))
