"""An idle webhook worker looks at the record less and less often (earmark.webhooks.polling):
its wait doubles from ``poll_seconds`` to ``poll_idle_seconds_max`` while it finds
nothing, and the first look that finds work brings it back to ``poll_seconds``. The
waits are recorded, not slept."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from earmark.webhooks import delivery, dispatcher
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.delivery import DeliveryWorker
from earmark.webhooks.dispatcher import Dispatcher
from earmark.webhooks.polling import IdlePoll

CONFIG = WebhookConfig(poll_seconds=0.05, poll_idle_seconds_max=0.5)


def test_the_wait_doubles_to_the_cap_and_work_resets_it() -> None:
    poll = IdlePoll(0.05, 0.5)
    assert [poll.idle() for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    poll.busy()
    assert [poll.idle() for _ in range(2)] == [0.05, 0.1]
    assert [IdlePoll(0.2, 0.1).idle() for _ in range(2)] == [0.2, 0.2]  # never below base


def recording_waits(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[float]:
    waits: list[float] = []

    async def wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(module, "wait_any", wait_any)
    return waits


async def test_an_idle_dispatcher_backs_off_until_a_step_finds_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = recording_waits(monkeypatch, dispatcher)
    stop = asyncio.Event()
    found = iter([0, 0, 0, 0, 0, 0, 3, 0, 0])

    async def step() -> int:
        done = next(found, None)
        if done is None:
            stop.set()
        return done or 0

    async def housekeeping() -> None:
        return None

    worker = Dispatcher(cast(Any, None), CONFIG)
    monkeypatch.setattr(worker, "step", step)
    monkeypatch.setattr(worker, "housekeeping", housekeeping)
    await worker.run(stop)
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.05, 0.1, 0.2]


async def test_an_idle_delivery_worker_backs_off_until_it_claims_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = recording_waits(monkeypatch, delivery)
    claims: list[list[Any]] = [[], [], [], ["message"], [], []]

    async def claim(limit: int, busy: dict[str, int]) -> list[Any]:
        return claims.pop(0)

    async def attempt(claimed: Any) -> None:
        return None

    async def finish(results: Any) -> None:
        return None

    worker = DeliveryWorker(cast(Any, None), CONFIG, owner="test")
    monkeypatch.setattr(worker, "_claim", claim)
    monkeypatch.setattr(worker, "attempt", attempt)
    monkeypatch.setattr(worker, "_finish", finish)
    stop, inflight = asyncio.Event(), cast(Any, {})
    try:
        for _ in range(3):
            await worker._round(inflight, stop)
        await worker._round(inflight, stop)  # claims one: waits on the attempt, not idle
        while inflight:
            await worker._round(inflight, stop)
        await worker._round(inflight, stop)
    finally:
        await worker.close()
    assert waits == [0.05, 0.1, 0.2, 0.05]
