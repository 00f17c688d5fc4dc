"""The dispatcher and the delivery worker together, on one durable record: what
``serve`` runs in-process (through ``earmark.durable.service.DurableService``) and what
``earmark webhooks deliver`` runs on its own."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

import httpx

from earmark.store.ledger import Ledger
from earmark.store.webhooks import AttemptResult, webhook_store
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.delivery import Clock, DeliveryWorker, wall_clock_ms
from earmark.webhooks.dispatcher import Dispatcher
from earmark.webhooks.metrics import WebhookMetrics
from earmark.webhooks.schedule import RetryPolicy

log = logging.getLogger("earmark.webhooks")

ONCE_ROUNDS_MAX = 100


def worker_name() -> str:
    """Unique per live process: the owner of the leases it takes."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class OnceReport:
    dispatched: int
    attempts: list[AttemptResult]

    @property
    def delivered(self) -> int:
        return sum(1 for a in self.attempts if a.delivered)


class WebhookService:
    def __init__(
        self,
        ledger: Ledger,
        config: WebhookConfig,
        *,
        owner: str | None = None,
        clock: Clock = wall_clock_ms,
        metrics: WebhookMetrics | None = None,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = webhook_store(ledger)
        self.config = config
        self.worker = DeliveryWorker(
            self.store,
            config,
            owner=owner or worker_name(),
            clock=clock,
            policy=policy,
            metrics=metrics,
            transport=transport,
        )
        self.dispatcher = Dispatcher(
            self.store, config, clock=clock, metrics=metrics, on_messages=self.worker.wake.set
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatches and delivers until ``stop`` is set."""
        await asyncio.gather(self.dispatcher.run(stop), self.worker.run(stop))

    async def run_once(self) -> OnceReport:
        """Dispatches what is recorded, then sends every message due now, until neither
        finds more (an endpoint disabled on the way is announced, and that is sent too).
        Retries scheduled for later stay for a later run."""
        dispatched, attempts = 0, []
        for _ in range(ONCE_ROUNDS_MAX):
            done = await self.dispatcher.catch_up()
            made = await self.worker.deliver_due()
            dispatched += done
            attempts += made
            if not done and not made:
                break
        return OnceReport(dispatched, attempts)

    async def close(self) -> None:
        await self.worker.close()
