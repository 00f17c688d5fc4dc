"""Where the durable record (write-behind flusher, rebuild on start) plugs into ``serve``.

The service knows the durable record only through ``DurableRecord``; the app's lifespan
calls it in this order::

    initialize = await durable.prepare(engine)   # before AsyncEngine.start
    await engine.start(initialize=initialize)
    await durable.start(engine)                  # e.g. run the flusher in-process
    ... serve ...
    await durable.stop()                         # before the engine closes

and, while serving, ``GET /v1/ledger`` reads through ``durable.ledger_for_reads()``.

``durable_record_for(settings)`` is the one factory the lifespan asks for it: an
``earmark.durable.service.DurableService`` on ``EARMARK_DATABASE_URL``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from earmark.apikeys import ApiKey
from earmark.durable.reconciliation import ReconciliationService
from earmark.durable.service import DurableService
from earmark.engine.async_engine import AsyncEngine
from earmark.settings import Settings
from earmark.store.ledger import Ledger
from earmark.webhooks.config import from_settings
from earmark.webhooks.metrics import WebhookMetrics

# Seconds the durable record lags behind Redis (0 when it is caught up).
LagSource = Callable[[], Awaitable[float]]


class DurableRecord(Protocol):
    async def prepare(self, engine: AsyncEngine) -> bool:
        """Before the engine starts (its scripts are not loaded yet: use ``engine.client``).
        May rebuild Redis from the record. Returns ``initialize`` for
        ``AsyncEngine.start``: False when the record holds stock, so a Redis that lost its
        data stays fenced instead of starting empty."""
        ...

    async def start(self, engine: AsyncEngine) -> None:
        """After the engine started, e.g. the in-process flusher task."""
        ...

    async def stop(self) -> None:
        """On shutdown, before the engine's connection closes: flush what is pending."""
        ...

    def lag_source(self) -> LagSource | None:
        """Readiness fails while this lag exceeds ``flusher_lag_seconds_max``; it also
        sets the ``earmark_flusher_lag_seconds`` gauge. None: no lag check."""
        ...

    async def database_check(self) -> tuple[bool, str] | None:
        """Whether the record answers now, and a detail for /readyz; None: no record."""
        ...

    async def api_keys(self) -> list[ApiKey]:
        """Every API key of the record (``LedgerUnavailable`` while it is down)."""
        ...

    # Reconciliations and discrepancy cases (None: this record keeps none; the routes
    # then answer 503 ``ledger_unavailable``).
    reconciliations: ReconciliationService | None

    async def ledger_for_reads(self) -> Ledger | None:
        """The record's ledger for ``GET /v1/ledger`` (its schema in place); None when
        this record keeps none (the route then answers 503 ``ledger_unavailable``)."""
        ...


def durable_record_for(
    settings: Settings,
    webhook_metrics: WebhookMetrics | None = None,
    on_overdue: Callable[[int], None] | None = None,
) -> DurableRecord:
    """The durable record ``serve`` runs with (migrated at every start).

    Embedded (no ``EARMARK_REDIS_URL``), the in-process Redis starts empty at every start,
    so it is rebuilt from the record then: stock and committed reservations survive a
    restart, live holds do not. With a real Redis, a Redis that lost its data stays
    fenced (readiness fails) until an operator runs ``earmark rebuild``, after finding out
    why it was lost. The embedded store always flushes in-process: no other process can
    reach it. The webhook dispatcher and delivery worker run in-process too unless
    ``EARMARK_WEBHOOKS_IN_PROCESS=false`` (``earmark webhooks deliver`` runs them alone)."""
    return DurableService(
        settings.database_url,
        discrepancy_sla_hours=settings.discrepancy_sla_hours,
        discrepancy_check_seconds=settings.discrepancy_check_seconds,
        on_overdue=on_overdue,
        flusher_in_process=settings.flusher_in_process or settings.embedded,
        rebuild_on_start=settings.embedded,
        webhooks=from_settings(settings) if settings.webhooks_in_process else None,
        webhook_metrics=webhook_metrics,
    )
