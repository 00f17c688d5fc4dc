"""The delivery worker: claims due messages, signs and sends them, records every attempt.

At least once, with one id: a message is leased before it is sent and finished (attempt
recorded, next attempt scheduled) after. A worker killed in between leaves the lease to
run out, and the next worker sends the message again under the same ``webhook-id``,
which is all the Standard Webhooks spec lets a receiver expect (it deduplicates on the
id). Each attempt is signed afresh (a new ``webhook-timestamp``), with the endpoint's
current secret and, during a rotation, its previous one.

Success is a 2xx within the timeout (15 s by default); the body is read up to
``response_bytes_max`` and redirects are not followed. What else an answer means is
``decide``'s: 410 disables the endpoint, 429 / 502 / 504 slow it down (``Retry-After``
honoured), anything else is retried on the schedule until it runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from earmark.errors import InvalidWebhookUrl, LedgerUnavailable
from earmark.store.webhooks import AttemptResult, Claimed, WebhookStore
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.metrics import WebhookMetrics
from earmark.webhooks.polling import IdlePoll
from earmark.webhooks.schedule import (
    GONE_STATUS,
    SLOW_DOWN_STATUSES,
    RetryPolicy,
    parse_retry_after,
)
from earmark.webhooks.signing import headers_for
from earmark.webhooks.types import STOCK_CHANGED
from earmark.webhooks.urls import check_destination

log = logging.getLogger("earmark.webhooks")

Clock = Callable[[], int]  # milliseconds since the epoch
Inflight = dict[asyncio.Task[AttemptResult], Claimed]
ERROR_LENGTH_MAX = 500
BACKOFF_MS_MIN, BACKOFF_MS_MAX = 100, 10_000
STOP_GRACE_SECONDS = 5.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _user_agent() -> str:
    try:
        return f"earmark-webhooks/{version('earmark')}"
    except PackageNotFoundError:
        return "earmark-webhooks"


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back from one POST (or why nothing did)."""

    status: int | None = None
    retry_after: str | None = None
    location: str | None = None
    error: str | None = None
    timed_out: bool = False
    refused: bool = False


def _short(text: str) -> str:
    return text if len(text) <= ERROR_LENGTH_MAX else text[: ERROR_LENGTH_MAX - 3] + "..."


def decide(
    claimed: Claimed, answer: Answer, attempted_at_ms: int, done_ms: int, latency_ms: int,
    policy: RetryPolicy,
) -> AttemptResult:  # fmt: skip
    """What one attempt means for its message and its endpoint."""
    attempt = claimed.attempts + 1
    delivered = AttemptResult(
        message_id=claimed.id,
        endpoint_id=claimed.endpoint_id,
        type=claimed.type,
        record_seq=claimed.record_seq,
        attempt=attempt,
        attempted_at_ms=attempted_at_ms,
        latency_ms=latency_ms,
        outcome="delivered",
        effect="success",
        status_code=answer.status,
        coalescible=claimed.type == STOCK_CHANGED,
    )
    status = answer.status
    if status is not None and 200 <= status < 300:
        return delivered
    if status == GONE_STATUS:
        return replace(delivered, outcome="gone", effect="gone", error="410 Gone: disabled")
    retry_after_ms = parse_retry_after(answer.retry_after, done_ms)
    next_at = policy.next_attempt_at(attempt, done_ms, retry_after_ms)
    if status in SLOW_DOWN_STATUSES or (status is not None and retry_after_ms is not None):
        step = policy.throttle_step(claimed.throttle_ms)
        asked = f" (Retry-After {answer.retry_after})" if answer.retry_after else ""
        return replace(
            delivered,
            outcome="throttled",
            effect="throttle",
            error=f"{status}: slowing down{asked}",
            next_attempt_at_ms=next_at,
            pause_until_ms=done_ms + max(step, retry_after_ms or 0),
            throttle_ms=step,
        )
    if answer.timed_out:
        outcome, error = "timeout", "no answer within the timeout"
    elif answer.refused:
        outcome, error = "refused", answer.error or "destination refused"
    elif status is None:
        outcome, error = "failed", answer.error or "no response"
    elif 300 <= status < 400:
        outcome, error = "failed", f"{status}: redirect to {answer.location!r} not followed"
    else:
        outcome, error = "failed", f"{status}: not a 2xx"
    return replace(
        delivered, outcome=outcome, effect="failure", error=_short(error),
        next_attempt_at_ms=next_at,
    )  # fmt: skip


class DeliveryWorker:
    """Sends due messages, ``config.concurrency`` at a time (``per_endpoint`` of any one
    endpoint), until stopped. ``clock`` and ``policy`` are injectable: tests run the
    schedule on a fake clock."""

    def __init__(
        self,
        store: WebhookStore,
        config: WebhookConfig,
        *,
        owner: str,
        clock: Clock = wall_clock_ms,
        signing_clock: Clock = wall_clock_ms,
        policy: RetryPolicy | None = None,
        metrics: WebhookMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store, self.config, self.owner, self.clock = store, config, owner, clock
        # webhook-timestamp is always the real time of the attempt (receivers check it
        # against theirs); ``clock`` only drives the schedule.
        self.signing_clock = signing_clock
        self.policy = policy or RetryPolicy(schedule_seconds=config.schedule_seconds)
        self.metrics = metrics
        limits = httpx.Limits(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: webhooks go where they say
            limits=limits,
            transport=transport,
            headers={"user-agent": _user_agent(), "content-type": "application/json"},
        )
        self.wake = asyncio.Event()  # set by the dispatcher when it wrote messages
        self.poll = IdlePoll(config.poll_seconds, config.poll_idle_seconds_max)
        self._unfinished: list[AttemptResult] = []

    async def close(self) -> None:
        await self.client.aclose()

    # -- one attempt -------------------------------------------------------------------------

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        async with self.client.stream("POST", url, content=body, headers=headers) as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= self.config.response_bytes_max:
                    break  # the rest is not ours to read
            return Answer(
                status=response.status_code,
                retry_after=response.headers.get("retry-after"),
                location=response.headers.get("location"),
            )

    async def _send(self, claimed: Claimed) -> Answer:
        body = claimed.payload.encode()
        timestamp = self.signing_clock() // 1000
        headers = headers_for(claimed.secrets, claimed.id, timestamp, body)
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                await self._check(claimed.url)
                return await self._post(claimed.url, headers, body)
        except InvalidWebhookUrl as refused:
            return Answer(error=str(refused), refused=True)
        except (TimeoutError, httpx.TimeoutException):
            return Answer(timed_out=True)
        except httpx.HTTPError as error:
            return Answer(error=f"{type(error).__name__}: {error}")
        except OSError as error:
            return Answer(error=f"{type(error).__name__}: {error}")

    async def _check(self, url: str) -> None:
        await check_destination(url, allow_private=self.config.allow_private, require_resolved=True)

    async def attempt(self, claimed: Claimed) -> AttemptResult:
        attempted_at = self.clock()
        started = time.perf_counter()
        answer = await self._send(claimed)
        latency_ms = round((time.perf_counter() - started) * 1000)
        result = decide(claimed, answer, attempted_at, self.clock(), latency_ms, self.policy)
        self._observe(claimed, result, latency_ms)
        return result

    def _observe(self, claimed: Claimed, result: AttemptResult, latency_ms: int) -> None:
        if self.metrics is None:
            return
        self.metrics.attempts.labels(claimed.endpoint_id, result.outcome).inc()
        self.metrics.latency.labels(claimed.endpoint_id).observe(latency_ms / 1000)
        if result.delivered:
            self.metrics.deliveries.labels(claimed.endpoint_id, "delivered").inc()
            lag_ms = max(0, self.clock() - claimed.recorded_at_ms)
            self.metrics.lag.observe(lag_ms / 1000)
        elif result.next_attempt_at_ms is None:
            self.metrics.deliveries.labels(claimed.endpoint_id, "failed").inc()

    # -- rounds ----------------------------------------------------------------------------

    async def _claim(self, limit: int, busy: dict[str, int]) -> list[Claimed]:
        exclude = [e for e, n in busy.items() if n >= self.config.per_endpoint]
        return await self.store.claim(
            self.clock(),
            limit,
            per_endpoint=self.config.per_endpoint,
            exclude=exclude,
            lease_ms=self.config.lease_ms,
            owner=self.owner,
        )

    async def _finish(self, results: Sequence[AttemptResult]) -> None:
        """Records results (with any a failed round left over); on failure keeps them for
        the next round (the leases may run out first: the messages are then sent again)."""
        batch = [*self._unfinished, *results]
        self._unfinished = []
        if not batch:
            return
        try:
            await self.store.finish(
                batch,
                self.owner,
                self.clock(),
                disable_after_ms=self.config.disable_after_ms,
                coalesce=self.config.coalesce,
            )
        except LedgerUnavailable:
            self._unfinished = batch
            raise

    async def deliver_due(self) -> list[AttemptResult]:
        """Sends every message due now (by ``clock``), round after round, until none is
        left; returns the attempts made. For tests and ``earmark webhooks deliver --once``."""
        made: list[AttemptResult] = []
        while True:
            claimed = await self._claim(self.config.concurrency, {})
            if not claimed:
                await self._finish([])
                return made
            results = await asyncio.gather(*(self.attempt(c) for c in claimed))
            await self._finish(results)
            made += results

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers until ``stop`` is set; record outages are retried with backoff."""
        inflight: Inflight = {}
        backoff_ms = BACKOFF_MS_MIN
        try:
            while not stop.is_set():
                try:
                    await self._round(inflight, stop)
                except LedgerUnavailable as error:
                    log.warning("webhook delivery: record unavailable, retrying: %r", error)
                    await _wait(stop, backoff_ms / 1000)
                    backoff_ms = min(backoff_ms * 2, BACKOFF_MS_MAX)
                else:
                    backoff_ms = BACKOFF_MS_MIN
        finally:
            await self._stop(inflight)

    async def _round(self, inflight: Inflight, stop: asyncio.Event) -> None:
        free = self.config.concurrency - len(inflight)
        if free > 0:
            busy: dict[str, int] = {}
            for claimed in inflight.values():
                busy[claimed.endpoint_id] = busy.get(claimed.endpoint_id, 0) + 1
            for claimed in await self._claim(free, busy):
                inflight[asyncio.create_task(self.attempt(claimed))] = claimed
        if not inflight:
            await self._finish([])
            self.wake.clear()
            await wait_any(stop, self.wake, self.poll.idle())
            return
        self.poll.busy()
        waiters: set[asyncio.Future[Any]] = set(inflight)
        woken = None
        if len(inflight) < self.config.concurrency:  # new messages may fill free slots
            self.wake.clear()
            woken = asyncio.ensure_future(self.wake.wait())
            waiters.add(woken)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self.config.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if woken is not None:
                woken.cancel()
        finished = [task for task in done if task in inflight]
        for task in finished:
            del inflight[task]
        await self._finish([task.result() for task in finished])

    async def _stop(self, inflight: Inflight) -> None:
        """Lets attempts in flight finish (briefly), records them, gives the rest back."""
        if inflight:
            done, pending = await asyncio.wait(inflight, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            results = [t.result() for t in done if not t.cancelled() and t.exception() is None]
        else:
            results, pending = [], set()
        with contextlib.suppress(LedgerUnavailable):
            await self._finish(results)
            await self.store.release([inflight[t].id for t in pending], self.owner)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Until ``stop`` or ``wake`` is set, or ``seconds`` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
