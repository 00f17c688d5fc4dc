"""Reconciliation against external counts, and the discrepancy cases it opens
(docs/reconciliation.md).

The expected count of a line is what the durable record says on_hand was **as of
counted_at** (the sum of the on_hand deltas of the events that occurred by then, by
Redis time), so holds and sales between the count and the upload are not discrepancies.
Events still waiting in Redis are flushed first. A case is announced (opened, resolved,
overdue) by an event with no deltas in its SKU's stream (``Engine.note``), so its webhook
comes from the record like every other; ``announce`` sends whatever is not announced
yet, and ``run`` calls it periodically (in ``serve``'s process, beside the flusher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from earmark import limits, validation
from earmark.durable.flusher import REDIS_TRANSIENT
from earmark.errors import (
    DiscrepancyNotFound,
    DiscrepancyResolved,
    EarmarkError,
    IdempotencyConflict,
    InvalidReconciliation,
    InvalidRequest,
    ReconciliationNotFound,
)
from earmark.models import DiscrepancyCase, ReconciliationReport, StockPlace
from earmark.store.ledger import Ledger
from earmark.store.pages import time_of_ms
from earmark.store.reconciliation import (
    RESOLUTIONS,
    CaseQuery,
    CaseRow,
    LineResult,
    NewReconciliation,
    NoticeKind,
    ReconciliationRow,
    exceeds,
    reconciliation_store,
)

log = logging.getLogger("earmark.reconciliation")

Clock = Callable[[], int]  # milliseconds since the epoch
NOTE_ACTOR = "earmark:reconciliation"
ANNOUNCE_INTERVAL_SECONDS = 30.0
DRAIN_TIMEOUT_SECONDS = 60.0
NOTE_OF: dict[NoticeKind, str] = {
    "opened": "discrepancy_opened",
    "overdue": "discrepancy_overdue",
    "resolved": "discrepancy_resolved",
}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class CountLine:
    sku: str
    location: str
    qty: Any  # an int once check_line passed it


def check_line(line: CountLine, number: int) -> CountLine:
    """The line, or ``InvalidReconciliation`` naming it (``details.line``, 1-based)."""
    try:
        validation.sku(line.sku)
        validation.location(line.location)
        validation.whole(line.qty, "qty", 0, limits.RECONCILIATION_QTY_MAX)
    except InvalidRequest as error:
        raise InvalidReconciliation(
            f"line {number}: {error.message}", line=number, field=error.details.get("field")
        ) from error
    return line


def check_thresholds(units: object, percent: object) -> tuple[int | None, float | None]:
    if units is not None:
        units = validation.whole(units, "threshold_units", 0, limits.RECONCILIATION_QTY_MAX)
    if percent is not None:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidReconciliation(
                "threshold_percent must be a number", field="threshold_percent"
            )
        if not 0 <= percent <= 1_000:
            raise InvalidReconciliation(
                "threshold_percent must be between 0 and 1000", field="threshold_percent"
            )
        percent = float(percent)
    return units, percent


def resolution_write(case_id: str, source: str, action: str) -> tuple[str, str]:
    """The reason and idempotency key of a resolution's engine write: made of the case
    alone, so a retried resolve (whatever its reason text) is the same request and is
    replayed, never applied twice."""
    reason = f"discrepancy {case_id} ({source}) {action}"[: limits.REASON_LENGTH_MAX]
    return reason, f"discrepancy-{case_id}-{action}"


def case_model(row: CaseRow, now_ms: int) -> DiscrepancyCase:
    return DiscrepancyCase(
        id=row.id,
        reconciliation_id=row.reconciliation_id,
        source=row.source,
        sku=row.sku,
        location=row.location,
        expected=row.expected,
        counted=row.counted,
        difference=row.difference,
        counted_at=time_of_ms(row.counted_at_ms),
        status=row.status,
        assignee=row.assignee,
        root_cause=row.root_cause,
        notes=row.notes,
        resolution=row.resolution,
        reason=row.reason,
        resolved_by=row.resolved_by,
        opened_at=time_of_ms(row.opened_at_ms),
        due_at=time_of_ms(row.due_at_ms),
        resolved_at=None if row.resolved_at_ms is None else time_of_ms(row.resolved_at_ms),
        overdue=row.overdue(now_ms),
    )


def note_fields(row: CaseRow, kind: NoticeKind, now_ms: int) -> dict[str, str]:
    """What a case's event (and so its webhook) carries."""
    fields = {
        "case_id": row.id,
        "reconciliation_id": row.reconciliation_id,
        "source": row.source,
        "expected": str(row.expected),
        "counted": str(row.counted),
        "difference": str(row.difference),
        "counted_at_ms": str(row.counted_at_ms),
        "due_at_ms": str(row.due_at_ms),
        "status": row.status,
        "assignee": row.assignee or "",
    }
    if kind == "resolved":
        fields |= {
            "resolution": row.resolution or "",
            "reason": row.reason or "",
            "root_cause": row.root_cause or "",
            "resolved_by": row.resolved_by or "",
        }
    if kind == "overdue":
        fields["overdue_by_ms"] = str(max(0, now_ms - row.due_at_ms))
    return fields


async def _chunks(
    lines: Iterable[CountLine] | AsyncIterable[CountLine], size: int
) -> AsyncIterable[list[CountLine]]:
    chunk: list[CountLine] = []
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            chunk.append(line)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    else:
        for line in lines:
            chunk.append(line)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class ReconciliationService:
    """Reconciliations and cases on one engine and one durable record.

    Args:
        sla_hours: a case is due this long after it opened (``EARMARK_DISCREPANCY_SLA_HOURS``).
        clock: the wall clock for case times and lateness (tests inject one).
        on_overdue: called with the number of overdue cases after each ``announce``
            (the metric).
    """

    def __init__(
        self,
        engine: object,
        ledger: Ledger,
        *,
        sla_hours: float = 24.0,
        clock: Clock = wall_clock_ms,
        on_overdue: Callable[[int], None] | None = None,
        drain: bool = True,
    ) -> None:
        self.engine, self.ledger = engine, ledger
        self.store = reconciliation_store(ledger)
        self.sla_ms = round(sla_hours * 3_600_000)
        self.clock, self.on_overdue, self.drain = clock, on_overdue, drain

    # -- reconciling --------------------------------------------------------------------

    async def reconcile(
        self,
        source: str,
        counted_at_ms: int,
        lines: Iterable[CountLine] | AsyncIterable[CountLine],
        *,
        threshold_units: int | None = None,
        threshold_percent: float | None = None,
        actor: str = "library",
        progress: Callable[[int], None] | None = None,
        idempotency_key: str | None = None,
        fingerprint: str = "",
    ) -> ReconciliationReport:
        """Compares the lines (any number, read in chunks of
        ``RECONCILIATION_CHUNK_LINES``: bounded memory) as of ``counted_at_ms``, opens a
        case per line over a threshold and announces them. A bad line fails the
        reconciliation (``InvalidReconciliation``) before any case is opened. With an
        idempotency key (per actor), a request already made returns its report
        (``replayed``); another request under that key is ``IdempotencyConflict``."""
        source = validation.text(source, "source", limits.SOURCE_LENGTH_MAX, required=True)
        validation.name(source, "source", limits.SOURCE_LENGTH_MAX)
        units, percent = check_thresholds(threshold_units, threshold_percent)
        if counted_at_ms > self.clock():
            raise InvalidReconciliation("counted_at is in the future", field="counted_at")
        if idempotency_key is not None:
            earlier = await self._replay(actor, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        await self._record_up_to_now()
        now = self.clock()
        rec_id = f"rec_{now:012x}{secrets.token_hex(6)}"
        new = NewReconciliation(
            rec_id, source, counted_at_ms, units, percent, actor, now, idempotency_key, fingerprint
        )
        if not await self.store.create(new):
            raise IdempotencyConflict(
                "this idempotency key is in use by a reconciliation still running"
            )
        done = 0
        try:
            async for chunk in _chunks(lines, limits.RECONCILIATION_CHUNK_LINES):
                checked = [check_line(x, done + i + 1) for i, x in enumerate(chunk)]
                keys = [(x.sku, x.location) for x in checked]
                expected = await self.store.on_hand_as_of(keys, counted_at_ms)
                results = []
                for x in checked:
                    result = LineResult(
                        x.sku, x.location, expected.get((x.sku, x.location), 0), x.qty
                    )
                    results.append((result, exceeds(result.expected, x.qty, units, percent)))
                await self.store.add_lines(rec_id, results)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        except BaseException:
            await self.store.fail(rec_id, self.clock())
            raise
        await self.store.finish(rec_id, self.clock(), self.sla_ms)
        await self.announce()
        return await self.report(rec_id)

    async def _replay(
        self, actor: str, idempotency_key: str, fingerprint: str
    ) -> ReconciliationReport | None:
        found = await self.store.by_idempotency_key(actor, idempotency_key)
        if found is None:
            return None
        row, stored = found
        if stored != fingerprint:
            raise IdempotencyConflict("this idempotency key was already used for another request")
        if row.status != "complete":
            raise IdempotencyConflict(
                f"the reconciliation of this idempotency key is {row.status}: use a new key"
            )
        report = await self.report(row.id)
        object.__setattr__(report, "replayed", True)
        return report

    async def _record_up_to_now(self) -> None:
        """Every event Redis holds is recorded before the comparison, so the record
        answers for every event that occurred by counted_at."""
        if not self.drain:
            return
        from earmark.durable.flusher import Flusher

        flusher = Flusher.for_engine(self.engine, self.ledger, consumer="earmark-reconcile")
        try:
            await flusher.drain(DRAIN_TIMEOUT_SECONDS)
        finally:
            await flusher.close()

    async def report(self, reconciliation_id: str) -> ReconciliationReport:
        row = await self._reconciliation(reconciliation_id)
        cases = await self.store.cases(
            CaseQuery(reconciliation_id=row.id, limit=limits.REPORT_LISTED_MAX)
        )
        uncounted = await self.store.not_counted(row.id, limits.REPORT_LISTED_MAX)
        now = self.clock()
        return ReconciliationReport(
            id=row.id,
            source=row.source,
            counted_at=time_of_ms(row.counted_at_ms),
            status=row.status,
            threshold_units=row.threshold_units,
            threshold_percent=row.threshold_percent,
            lines=row.lines,
            matched=row.matched,
            discrepancies=row.discrepancies,
            not_counted=row.not_counted,
            cases=[case_model(c, now) for c in cases],
            not_counted_skus=[StockPlace(sku=s, location=loc) for s, loc in uncounted],
            created_by=row.created_by,
            created_at=time_of_ms(row.created_at_ms),
            completed_at=None if row.completed_at_ms is None else time_of_ms(row.completed_at_ms),
        )

    async def _reconciliation(self, reconciliation_id: str) -> ReconciliationRow:
        row = None
        if validation.PRINTABLE.fullmatch(reconciliation_id) and len(reconciliation_id) <= 64:
            row = await self.store.reconciliation(reconciliation_id)
        if row is None:
            raise ReconciliationNotFound(f"no reconciliation {reconciliation_id!r}")
        return row

    # -- cases ----------------------------------------------------------------------------

    async def cases(self, query: CaseQuery) -> tuple[list[DiscrepancyCase], str | None]:
        """A page of cases by id, and the cursor of the next page (None: the last)."""
        rows = await self.store.cases(
            CaseQuery(
                query.status, query.source, query.reconciliation_id, query.after, query.limit + 1
            )
        )
        now = self.clock()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return [case_model(r, now) for r in rows], (rows[-1].id if more else None)

    async def case(self, case_id: str) -> DiscrepancyCase:
        return case_model(await self._case(case_id), self.clock())

    async def _case(self, case_id: str) -> CaseRow:
        row = None
        if validation.PRINTABLE.fullmatch(case_id) and len(case_id) <= 96:
            row = await self.store.case(case_id)
        if row is None:
            raise DiscrepancyNotFound(f"no discrepancy case {case_id!r}")
        return row

    async def assign(
        self, case_id: str, assignee: str, notes: str | None = None
    ) -> DiscrepancyCase:
        assignee = validation.text(assignee, "assignee", limits.ASSIGNEE_LENGTH_MAX, required=True)
        if notes is not None:
            notes = validation.text(notes, "notes", limits.CASE_TEXT_LENGTH_MAX)
        row = await self._case(case_id)
        if row.status == "resolved":
            raise DiscrepancyResolved(f"case {case_id} is resolved", case_id=case_id)
        changed = await self.store.assign(case_id, assignee, notes, self.clock())
        if changed is None:
            raise DiscrepancyResolved(f"case {case_id} is resolved", case_id=case_id)
        return case_model(changed, self.clock())

    async def resolve(
        self,
        case_id: str,
        action: str,
        reason: str,
        *,
        root_cause: str | None = None,
        actor: str = "library",
    ) -> DiscrepancyCase:
        """``adjust``: on_hand moves by counted - expected (the count as of counted_at,
        applied over the sales since); ``write_off``: the shortfall is written off;
        ``dismiss``: nothing moves, the reason is kept. The engine write carries an
        idempotency key made of the case id, so a retried resolve never applies twice."""
        action = validation.choice(action, "action", RESOLUTIONS)
        reason = validation.text(reason, "reason", limits.CASE_TEXT_LENGTH_MAX, required=True)
        if root_cause is not None:
            root_cause = validation.text(root_cause, "root_cause", limits.CASE_TEXT_LENGTH_MAX)
        row = await self._case(case_id)
        if row.status == "resolved":
            raise DiscrepancyResolved(f"case {case_id} is resolved", case_id=case_id)
        engine: object = self.engine
        text, key = resolution_write(row.id, row.source, action)
        if action == "adjust":
            await engine.adjust(  # type: ignore[attr-defined]
                row.sku,
                row.difference,
                text,
                location=row.location,
                force=True,
                actor=actor,
                idempotency_key=key,
            )
        elif action == "write_off":
            shortfall = row.expected - row.counted
            if shortfall <= 0:
                raise InvalidRequest(
                    f"case {row.id} counted more than expected: nothing to write off (adjust)",
                    field="action",
                )
            await engine.write_off(  # type: ignore[attr-defined]
                row.sku,
                shortfall,
                text,
                location=row.location,
                force=True,
                actor=actor,
                idempotency_key=key,
            )
        changed = await self.store.resolve(case_id, action, reason, root_cause, actor, self.clock())  # type: ignore[arg-type]
        if changed is None:
            raise DiscrepancyResolved(f"case {case_id} is resolved", case_id=case_id)
        await self.announce()
        return case_model(changed, self.clock())

    # -- announcing -----------------------------------------------------------------------

    async def announce(self) -> int:
        """Records an event for every case opening, resolution and lateness not yet
        announced (each once: the case row remembers, and the event's idempotency key
        is the case and kind, so a crash in between records it once); returns how many."""
        now = self.clock()
        notices = await self.store.notices(now, limits.OVERDUE_PER_CHECK_MAX)
        for kind, row in notices:
            await self.engine.note(  # type: ignore[attr-defined]
                NOTE_OF[kind],
                row.sku,
                note_fields(row, kind, now),
                location=row.location,
                qty=abs(row.difference),
                actor=NOTE_ACTOR,
                idempotency_key=f"{row.id}-{kind}",
            )
            await self.store.mark_notified(row.id, kind)
        if self.on_overdue is not None:
            self.on_overdue(await self.store.overdue_count(now))
        return len(notices)

    async def run(
        self, stop: asyncio.Event, interval_seconds: float = ANNOUNCE_INTERVAL_SECONDS
    ) -> None:
        """``announce`` every ``interval_seconds`` until ``stop``; a failure is logged and
        tried again at the next turn (nothing is marked announced until recorded)."""
        while not stop.is_set():
            try:
                await self.announce()
            except (TimeoutError, EarmarkError, *REDIS_TRANSIENT) as error:
                log.warning("discrepancy announcements failed, retrying: %r", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)


def counts_of(lines: Sequence[dict[str, Any]]) -> list[CountLine]:
    """Request JSON lines as ``CountLine`` values (validated later, per line)."""
    return [
        CountLine(x.get("sku", ""), x.get("location", limits.DEFAULT_LOCATION), x.get("qty"))
        for x in lines
    ]
