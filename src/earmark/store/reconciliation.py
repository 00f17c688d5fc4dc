"""Reconciliations and discrepancy cases in the durable record (docs/reconciliation.md).

What a count line becomes (matched, or a case) and how a case may move is decided here,
once, as plain functions; ``earmark.store.reconciliation_sql`` holds the one set of
statements both stores run (times as integer ms in both). ``reconciliation_store(ledger)``
gives the store on the ledger's connection.

Every time is milliseconds since the epoch, from the caller's clock (tests inject one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from earmark.store.ledger import Ledger

CaseStatus = Literal["open", "investigating", "resolved"]
Resolution = Literal["adjust", "write_off", "dismiss"]
NoticeKind = Literal["opened", "overdue", "resolved"]
CASE_STATUSES: tuple[CaseStatus, ...] = ("open", "investigating", "resolved")
RESOLUTIONS: tuple[Resolution, ...] = ("adjust", "write_off", "dismiss")
NOTICE_KINDS: tuple[NoticeKind, ...] = ("opened", "overdue", "resolved")
StockKey = tuple[str, str]


def exceeds(
    expected: int, counted: int, threshold_units: int | None, threshold_percent: float | None
) -> bool:
    """Whether a line opens a case: its difference is over ``threshold_units`` **or** over
    ``threshold_percent`` of the expected count. A zero expected count with a non-zero
    external one always exceeds (a percentage of zero is blind there); with no threshold
    at all, any difference does."""
    difference = abs(counted - expected)
    if difference == 0:
        return False
    if expected == 0:
        return True
    if threshold_units is None and threshold_percent is None:
        return True
    if threshold_units is not None and difference > threshold_units:
        return True
    return threshold_percent is not None and difference * 100 > threshold_percent * abs(expected)


@dataclass(frozen=True, slots=True)
class NewReconciliation:
    id: str
    source: str
    counted_at_ms: int
    threshold_units: int | None
    threshold_percent: float | None
    created_by: str
    created_at_ms: int
    idempotency_key: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    id: str
    source: str
    counted_at_ms: int
    threshold_units: int | None
    threshold_percent: float | None
    status: str
    lines: int
    matched: int
    discrepancies: int
    not_counted: int
    created_by: str
    created_at_ms: int
    completed_at_ms: int | None


@dataclass(frozen=True, slots=True)
class LineResult:
    sku: str
    location: str
    expected: int
    counted: int

    @property
    def difference(self) -> int:
        return self.counted - self.expected


@dataclass(frozen=True, slots=True)
class CaseRow:
    id: str
    reconciliation_id: str
    source: str
    sku: str
    location: str
    expected: int
    counted: int
    difference: int
    counted_at_ms: int
    status: CaseStatus
    assignee: str | None
    root_cause: str | None
    notes: str | None
    resolution: Resolution | None
    reason: str | None
    resolved_by: str | None
    opened_at_ms: int
    due_at_ms: int
    resolved_at_ms: int | None

    def overdue(self, now_ms: int) -> bool:
        """Past its due time and not resolved."""
        return self.status != "resolved" and now_ms >= self.due_at_ms


@dataclass(frozen=True, slots=True)
class CaseQuery:
    status: CaseStatus | None = None
    source: str | None = None
    reconciliation_id: str | None = None
    after: str | None = None  # the last case id of the previous page
    limit: int = 100


class ReconciliationStore(Protocol):
    """Every method may raise ``LedgerUnavailable`` (retry later)."""

    async def create(self, new: NewReconciliation) -> bool:
        """False when the creator already used the idempotency key (nothing written)."""
        ...

    async def by_idempotency_key(
        self, created_by: str, idempotency_key: str
    ) -> tuple[ReconciliationRow, str] | None:
        """The reconciliation made with that key, and its request's fingerprint."""
        ...

    async def on_hand_as_of(self, keys: Sequence[StockKey], at_ms: int) -> dict[StockKey, int]:
        """on_hand of each (sku, location) at ``at_ms``: the sum of the on_hand deltas of
        its ledger events that occurred at or before it (absent: none did)."""
        ...

    async def add_lines(
        self, reconciliation_id: str, lines: Sequence[tuple[LineResult, bool]]
    ) -> None:
        """Records compared lines (each with whether it exceeds); ``InvalidReconciliation``
        when a (sku, location) was counted twice."""
        ...

    async def finish(self, reconciliation_id: str, now_ms: int, sla_ms: int) -> ReconciliationRow:
        """In one transaction: opens a case per exceeding line (due ``now + sla``),
        counts matched, discrepancies and the SKUs of the counted locations the source
        did not count, and marks the reconciliation complete."""
        ...

    async def fail(self, reconciliation_id: str, now_ms: int) -> None:
        """Forgets the lines of a reconciliation that could not finish (no case opened)."""
        ...

    async def reconciliation(self, reconciliation_id: str) -> ReconciliationRow | None: ...

    async def not_counted(self, reconciliation_id: str, limit: int) -> list[StockKey]: ...

    async def cases(self, query: CaseQuery) -> list[CaseRow]: ...

    async def case(self, case_id: str) -> CaseRow | None: ...

    async def assign(
        self, case_id: str, assignee: str, notes: str | None, now_ms: int
    ) -> CaseRow | None:
        """open/investigating -> investigating with the assignee; None when no unresolved
        case has that id."""
        ...

    async def resolve(
        self,
        case_id: str,
        resolution: Resolution,
        reason: str,
        root_cause: str | None,
        resolved_by: str,
        now_ms: int,
    ) -> CaseRow | None:
        """-> resolved; None when no unresolved case has that id."""
        ...

    async def notices(self, now_ms: int, limit: int) -> list[tuple[NoticeKind, CaseRow]]:
        """Cases whose opening, resolution or lateness has not been announced yet."""
        ...

    async def mark_notified(self, case_id: str, kind: NoticeKind) -> None: ...

    async def overdue_count(self, now_ms: int) -> int: ...


def reconciliation_store(ledger: Ledger) -> ReconciliationStore:
    """The reconciliation tables of ``ledger``'s database, on its connection."""
    from earmark.store.reconciliation_sql import PostgresReconciliations, SqliteReconciliations

    if ledger.dialect == "postgres":
        return PostgresReconciliations(ledger)
    return SqliteReconciliations(ledger)
