"""Reconciliation against external counts and discrepancy cases
(earmark.durable.reconciliation), on a real redis-server and the record on SQLite and a
real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from earmark import AsyncEngine
from earmark.durable.flusher import Flusher
from earmark.durable.reconciliation import CountLine, ReconciliationService, resolution_write
from earmark.errors import (
    DiscrepancyResolved,
    InvalidReconciliation,
    InvalidRequest,
)
from earmark.store.ledger import Ledger
from earmark.store.reconciliation import CaseQuery, exceeds

HOUR_MS = 3_600_000


class Clock:
    """The service's wall clock, moved by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture(params=["sqlite", "postgres"])
def record(request: pytest.FixtureRequest) -> Ledger:
    fixture = "pg_ledger" if request.param == "postgres" else "sqlite_ledger"
    ledger: Ledger = request.getfixturevalue(fixture)
    return ledger


async def redis_ms(engine: AsyncEngine) -> int:
    seconds, micros = await engine.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def after(engine: AsyncEngine, ms: int) -> None:
    """Returns once Redis time has passed ``ms``: later events occur strictly after it."""
    while await redis_ms(engine) <= ms:
        await asyncio.sleep(0.001)


async def stream_events(engine: AsyncEngine, kind: str) -> list[dict[str, Any]]:
    found = []
    for p in range(engine.partitions):
        for _, fields in await engine.client.xrange(engine.keys.events(p)):
            decoded = dict(fields)
            if decoded["type"] == kind:
                found.append(decoded)
    return found


async def flushed(engine: AsyncEngine, ledger: Ledger) -> None:
    flusher = Flusher.for_engine(engine, ledger, consumer="test")
    try:
        await flusher.drain(30)
    finally:
        await flusher.close()


def test_thresholds_units_or_percent_and_zero_expected() -> None:
    assert not exceeds(100, 100, None, None)
    assert exceeds(100, 99, None, None)  # no threshold: any difference
    assert not exceeds(100, 97, 3, None) and exceeds(100, 96, 3, None)
    assert not exceeds(100, 95, None, 5.0) and exceeds(100, 94, None, 5.0)
    # either threshold opens a case: 4 units is within 5 units but over 2 %
    assert exceeds(100, 96, 5, 2.0) and not exceeds(100, 98, 5, 2.0)
    # a zero expected count with a non-zero external one always exceeds
    assert exceeds(0, 1, 1_000, 1_000.0)
    assert not exceeds(0, 0, 0, 0.0)


async def reconciled(
    aengine: AsyncEngine, record: Ledger, clock: Clock | None = None, **thresholds: Any
) -> tuple[ReconciliationService, Any, int]:
    """Stock, a count at counted_at, then sales after it; the reconciliation."""
    await aengine.receive("A", 100)
    await aengine.receive("B", 50)
    await aengine.receive("D", 7)
    counted_at = await redis_ms(aengine)
    await after(aengine, counted_at)
    sold = await aengine.reserve([("A", 10), ("B", 5)], idempotency_key="sale")
    await aengine.commit(sold.id)
    await aengine.ship(sold.id)  # on_hand now 90 and 45: sales since the count
    await aengine.reserve([("A", 20)], idempotency_key="hold")
    service = ReconciliationService(aengine, record, clock=clock or Clock(counted_at + 1000))
    counts = [
        CountLine("A", "default", 100),  # as of counted_at: matched
        CountLine("B", "default", 46),  # 4 short of 50
        CountLine("Z", "default", 3),  # earmark never had it: expected 0
    ]
    report = await service.reconcile("3pl-east", counted_at, counts, **thresholds)
    return service, report, counted_at


async def test_as_of_counted_at_sales_after_it_are_not_discrepancies(
    aengine: AsyncEngine, record: Ledger
) -> None:
    _, report, _ = await reconciled(aengine, record, threshold_units=5)
    assert (report.lines, report.matched, report.discrepancies) == (3, 2, 1)
    (case,) = report.cases
    assert (case.sku, case.expected, case.counted, case.difference) == ("Z", 0, 3, 3)
    assert case.status == "open" and not case.overdue
    assert [(p.sku, p.location) for p in report.not_counted_skus] == [("D", "default")]
    assert report.not_counted == 1


async def test_percent_threshold_opens_a_case(aengine: AsyncEngine, record: Ledger) -> None:
    _, report, _ = await reconciled(aengine, record, threshold_units=5, threshold_percent=5.0)
    assert sorted((c.sku, c.difference) for c in report.cases) == [("B", -4), ("Z", 3)]
    assert report.matched == 1


async def test_resolve_adjust_applies_the_count_over_later_sales_once(
    aengine: AsyncEngine, record: Ledger
) -> None:
    service, report, _ = await reconciled(aengine, record, threshold_percent=5.0)
    case = next(c for c in report.cases if c.sku == "B")
    # A first attempt that crashed after its engine write: the retry must not apply again.
    reason, key = resolution_write(case.id, "3pl-east", "adjust")
    await aengine.adjust("B", -4, reason, force=True, actor="alice", idempotency_key=key)
    done = await service.resolve(
        case.id, "adjust", "recount confirmed", root_cause="mis-pick", actor="alice"
    )
    assert (done.status, done.resolution, done.resolved_by) == ("resolved", "adjust", "alice")
    level = (await aengine.stock("B", "default")).locations[0]
    assert level.on_hand == 45 - 4  # the count (46) as of counted_at, less 5 sold since
    await flushed(aengine, record)
    (entry,) = [e for e in await record.events(None, 1000) if e.type == "adjusted"]
    assert (entry.sku, dict(entry.deltas), entry.actor) == ("B", {"on_hand": -4}, "alice")
    with pytest.raises(DiscrepancyResolved):
        await service.resolve(case.id, "adjust", "again", actor="alice")


async def test_resolve_write_off_and_dismiss(aengine: AsyncEngine, record: Ledger) -> None:
    service, report, _ = await reconciled(aengine, record, threshold_percent=5.0)
    short = next(c for c in report.cases if c.sku == "B")
    surplus = next(c for c in report.cases if c.sku == "Z")
    with pytest.raises(InvalidRequest):
        await service.resolve(surplus.id, "write_off", "no shortfall")
    await service.resolve(short.id, "write_off", "shrinkage", actor="bob")
    level = (await aengine.stock("B", "default")).locations[0]
    assert (level.on_hand, level.written_off) == (41, 4)
    dismissed = await service.resolve(surplus.id, "dismiss", "the 3PL miscounted", actor="bob")
    assert (dismissed.resolution, dismissed.reason) == ("dismiss", "the 3PL miscounted")
    await flushed(aengine, record)
    entries = [e for e in await record.events(None, 1000) if e.sku in ("B", "Z")]
    assert [(e.type, dict(e.deltas)) for e in entries if e.type == "written_off"] == [
        ("written_off", {"on_hand": -4, "written_off": 4})
    ]
    assert not [e for e in entries if e.sku == "Z" and e.deltas]  # dismiss moves nothing


async def test_case_states_and_overdue_once_with_an_injected_clock(
    aengine: AsyncEngine, record: Ledger
) -> None:
    clock = Clock(0)
    overdue_gauge: list[int] = []
    clock.ms = await redis_ms(aengine) + 60_000
    service, report, _ = await reconciled(aengine, record, clock, threshold_percent=5.0)
    service.on_overdue = overdue_gauge.append
    assert len(await stream_events(aengine, "discrepancy_opened")) == 2
    case = report.cases[0]
    assigned = await service.assign(case.id, "carol", notes="checking the bin")
    assert (assigned.status, assigned.assignee) == ("investigating", "carol")
    assert await service.announce() == 0 and overdue_gauge[-1] == 0
    clock.ms += 24 * HOUR_MS  # due_at: overdue from now
    assert await service.announce() == 2 and overdue_gauge[-1] == 2
    assert await service.announce() == 0  # once per case
    page, cursor = await service.cases(CaseQuery(status="investigating"))
    assert [c.id for c in page] == [case.id] and page[0].overdue and cursor is None
    overdue = await stream_events(aengine, "discrepancy_overdue")
    assert sorted(e["case_id"] for e in overdue) == sorted(c.id for c in report.cases)
    await service.resolve(case.id, "dismiss", "found in the returns cage")
    assert len(await stream_events(aengine, "discrepancy_resolved")) == 1
    assert overdue_gauge[-1] == 1


async def test_a_bad_line_fails_the_reconciliation_and_opens_nothing(
    aengine: AsyncEngine, record: Ledger
) -> None:
    await aengine.receive("A", 5)
    counted_at = await redis_ms(aengine)
    service = ReconciliationService(aengine, record, clock=Clock(counted_at + 1))
    for bad in (CountLine("A", "default", -1), CountLine("bad sku!", "default", 1)):
        with pytest.raises(InvalidReconciliation) as refused:
            await service.reconcile("wms", counted_at, [CountLine("Z", "default", 9), bad])
        assert refused.value.details["line"] == 2
    with pytest.raises(InvalidReconciliation):
        await service.reconcile(
            "wms", counted_at, [CountLine("A", "default", 1), CountLine("A", "default", 2)]
        )
    assert (await service.cases(CaseQuery()))[0] == []
    assert await stream_events(aengine, "discrepancy_opened") == []
