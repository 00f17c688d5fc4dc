"""The dispatcher: ledger rows in, webhook messages out (docs/webhooks.md).

Each step, in its own transactions: announce endpoints disabled since the last step
(``endpoint.disabled``), turn the next batch of ledger rows into messages (cursor on
``record_seq``), and advance the oldest unfinished replay by one chunk. Several
dispatchers may run at once (one per ``serve`` process, ``earmark webhooks deliver``):
the cursor row is locked for each batch, so they take turns and none plans a row twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from earmark.errors import LedgerUnavailable
from earmark.store.webhooks import WebhookStore
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.delivery import (
    BACKOFF_MS_MAX,
    BACKOFF_MS_MIN,
    Clock,
    wait_any,
    wall_clock_ms,
)
from earmark.webhooks.metrics import WebhookMetrics
from earmark.webhooks.planning import disabled_messages, plan
from earmark.webhooks.polling import IdlePoll

log = logging.getLogger("earmark.webhooks")

PRUNE_INTERVAL_SECONDS = 3_600.0
PRUNE_ROWS_MAX = 10_000
BACKLOG_INTERVAL_SECONDS = 2.0
CATCH_UP_TIMEOUT_SECONDS_DEFAULT = 60.0


class Dispatcher:
    def __init__(
        self,
        store: WebhookStore,
        config: WebhookConfig,
        *,
        clock: Clock = wall_clock_ms,
        metrics: WebhookMetrics | None = None,
        on_messages: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.config, self.clock, self.metrics = store, config, clock, metrics
        self.on_messages = on_messages
        self.wake = asyncio.Event()  # set when the ledger got rows (the in-process flusher)
        self._pruned_at = 0.0
        self._backlog_at = 0.0

    async def step(self) -> int:
        """One step; returns how much it did (0: nothing was waiting)."""
        self.wake.clear()
        now = self.clock()
        announced = await self.store.notify_disabled(disabled_messages, now)
        report = await self.store.dispatch(
            self.config.dispatch_batch, plan, now, coalesce=self.config.coalesce
        )
        replay = await self.store.replay_step(
            self.config.dispatch_batch, plan, now, coalesce=self.config.coalesce
        )
        if self.metrics is not None and report.coalesced:
            self.metrics.coalesced.inc(report.coalesced)
        if (announced or report.messages or replay is not None) and self.on_messages:
            self.on_messages()
        return announced + report.events + (replay is not None)

    async def catch_up(self, timeout_seconds: float = CATCH_UP_TIMEOUT_SECONDS_DEFAULT) -> int:
        """Steps until nothing waits; ``TimeoutError`` if it cannot in time."""
        deadline = time.monotonic() + timeout_seconds
        total = 0
        while done := await self.step():
            total += done
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dispatcher still had work after {timeout_seconds:g}s")
        return total

    async def housekeeping(self) -> None:
        """The backlog gauges (every few seconds) and pruning (hourly)."""
        now = time.monotonic()
        if self.metrics is not None and now >= self._backlog_at:
            self._backlog_at = now + BACKLOG_INTERVAL_SECONDS
            backlog = await self.store.backlog()
            oldest = backlog.oldest_recorded_at_ms
            age = 0.0 if oldest is None else max(0, self.clock() - oldest) / 1000
            self.metrics.oldest_undelivered.set(age)
            self.metrics.undelivered.set(backlog.messages)
            self.metrics.dispatch_behind.set(backlog.dispatch_behind)
        if now >= self._pruned_at:
            self._pruned_at = now + PRUNE_INTERVAL_SECONDS
            wall = self.clock()
            pruned = await self.store.prune(
                wall - round(self.config.retention_seconds * 1000),
                wall - round(self.config.idempotency_retention_seconds * 1000),
                PRUNE_ROWS_MAX,
            )
            if pruned:
                log.info("pruned %d webhook rows older than the retention", pruned)

    async def run(self, stop: asyncio.Event) -> None:
        backoff_ms = BACKOFF_MS_MIN
        poll = IdlePoll(self.config.poll_seconds, self.config.poll_idle_seconds_max)
        while not stop.is_set():
            try:
                done = await self.step()
                await self.housekeeping()
            except LedgerUnavailable as error:
                log.warning("webhook dispatch: record unavailable, retrying: %r", error)
                await _wait(stop, backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, BACKOFF_MS_MAX)
                continue
            backoff_ms = BACKOFF_MS_MIN
            if done:
                poll.busy()
            else:
                await wait_any(stop, self.wake, poll.idle())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
