"""Fixtures for the webhook suites: a fake clock, a durable record on either store,
ledger events written straight into it, and a webhook service with short timeouts."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from earmark.store.events import Event
from earmark.store.ledger import Ledger
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.schedule import RetryPolicy
from earmark.webhooks.service import WebhookService
from tests.support.durable import migrated
from tests.support.receivers import Behaviour, Receiver

START_MS = 1_750_000_000_000


@dataclass
class FakeClock:
    """Milliseconds since the epoch, moved only by the test."""

    now_ms: int = START_MS

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)


def short_config(**overrides: Any) -> WebhookConfig:
    """Private addresses allowed (the receivers are on 127.0.0.1), short timeout and lease."""
    values: dict[str, Any] = {
        "allow_private": True,
        "timeout_seconds": 0.5,
        "lease_seconds": 2.0,
        "poll_seconds": 0.01,
    }
    return WebhookConfig(**{**values, **overrides})


_stream_ms = itertools.count(2_000_000_000_000)


@dataclass
class Writer:
    """Writes events into a ledger as the flusher would (each call one transaction)."""

    ledger: Ledger
    partition: int = 0
    written: list[Event] = field(default_factory=list)

    def event(
        self,
        type: str = "received",
        sku: str = "A",
        deltas: dict[str, int] | None = None,
        *,
        location: str = "default",
        qty: int = 1,
        reservation: str | None = None,
        partition: int | None = None,
        at_ms: int | None = None,
    ) -> Event:
        ms = next(_stream_ms)
        return Event(
            partition=self.partition if partition is None else partition,
            stream_ms=ms,
            stream_seq=0,
            type=type,
            sku=sku,
            location=location,
            qty=qty,
            deltas={"on_hand": qty} if deltas is None else deltas,
            occurred_at_ms=at_ms if at_ms is not None else START_MS,
            reservation_id=reservation,
        )

    async def write(self, *events: Event) -> list[Event]:
        await self.ledger.persist(list(events))
        self.written += events
        return list(events)

    async def receipts(self, n: int, sku: str = "A", qty: int = 1) -> list[Event]:
        return await self.write(*(self.event("received", sku, qty=qty) for _ in range(n)))


@pytest.fixture(params=["sqlite", "postgres"])
async def record(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Ledger]:
    """A migrated durable record on SQLite and on PostgreSQL (``[sqlite]``/``[postgres]``)."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path}/record.db"
    ledger = await migrated(url)
    yield ledger
    await ledger.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    """(Not ``clock``: tests/support/backends.py has that one, for Redis time.)"""
    return FakeClock()


@pytest.fixture
def writer(record: Ledger) -> Writer:
    return Writer(record)


def make_service(
    ledger: Ledger,
    clock: FakeClock,
    *,
    seed: int = 7,
    owner: str = "test-worker",
    **config: Any,
) -> WebhookService:
    """A service on ``ledger`` with the schedule on ``clock`` (close it: ``services``)."""
    cfg = short_config(**config)
    policy = RetryPolicy(schedule_seconds=cfg.schedule_seconds, rng=random.Random(seed))
    return WebhookService(ledger, cfg, owner=owner, clock=clock, policy=policy)


@pytest.fixture
async def services(record: Ledger, fake_clock: FakeClock) -> AsyncIterator[Any]:
    """``services(**config)`` makes a service on the record and the fake clock; each is
    closed after the test, whatever happened."""
    made: list[WebhookService] = []

    def make(**config: Any) -> WebhookService:
        made.append(make_service(record, fake_clock, **config))
        return made[-1]

    yield make
    for service in made:
        await service.close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    """``receiver_factory(behaviour)`` starts a receiver; all are closed after the test."""
    started: list[Receiver] = []

    def make(behaviour: Behaviour | None = None) -> Receiver:
        receiver = Receiver(behaviour).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.close()
