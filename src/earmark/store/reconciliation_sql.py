"""The reconciliation tables on PostgreSQL and on SQLite: one set of statements (``?``
placeholders, numbered for asyncpg), each method one transaction of them."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg

from earmark.errors import InvalidReconciliation
from earmark.store.ledger import Ledger
from earmark.store.reconciliation import (
    CaseQuery,
    CaseRow,
    LineResult,
    NewReconciliation,
    NoticeKind,
    ReconciliationRow,
    Resolution,
    StockKey,
)

Mode = Literal["rows", "none", "many"]
Statement = tuple[str, Sequence[Any], Mode]

REC_COLUMNS = (
    "id, source, counted_at_ms, threshold_units, threshold_percent, status, lines, matched,"
    " discrepancies, not_counted, created_by, created_at_ms, completed_at_ms"
)
CASE_COLUMNS = (
    "id, reconciliation_id, source, sku, location, expected, counted, difference,"
    " counted_at_ms, status, assignee, root_cause, notes, resolution, reason, resolved_by,"
    " opened_at_ms, due_at_ms, resolved_at_ms"
)
UNCOUNTED = """
FROM stock_levels s
WHERE s.location IN (SELECT location FROM reconciliation_lines WHERE reconciliation_id = ?)
  AND NOT EXISTS (SELECT 1 FROM reconciliation_lines l WHERE l.reconciliation_id = ?
                  AND l.sku = s.sku AND l.location = s.location)
"""
OPEN_CASES = """
INSERT INTO discrepancy_cases (id, reconciliation_id, source, sku, location, expected, counted,
  difference, counted_at_ms, opened_at_ms, due_at_ms)
SELECT 'dsc_' || substr(l.reconciliation_id, 5) || '_'
         || CAST(row_number() OVER (ORDER BY l.sku, l.location) AS TEXT),
       l.reconciliation_id, r.source, l.sku, l.location, l.expected, l.counted, l.difference,
       r.counted_at_ms, CAST(? AS BIGINT), CAST(? AS BIGINT)
FROM reconciliation_lines l JOIN reconciliations r ON r.id = l.reconciliation_id
WHERE l.reconciliation_id = ? AND l.exceeded = 1 AND r.status = 'running'
"""
COMPLETE = f"""
UPDATE reconciliations SET status = 'complete', completed_at_ms = CAST(? AS BIGINT),
  lines = (SELECT count(*) FROM reconciliation_lines WHERE reconciliation_id = ?),
  matched = (SELECT count(*) FROM reconciliation_lines WHERE reconciliation_id = ?
             AND exceeded = 0),
  discrepancies = (SELECT count(*) FROM reconciliation_lines WHERE reconciliation_id = ?
                   AND exceeded = 1),
  not_counted = (SELECT count(*) {UNCOUNTED})
WHERE id = ? AND status = 'running'
"""
ASSIGN = f"""
UPDATE discrepancy_cases SET status = 'investigating', assignee = ?,
  notes = coalesce(?, notes)
WHERE id = ? AND status <> 'resolved'
RETURNING {CASE_COLUMNS}
"""
RESOLVE = f"""
UPDATE discrepancy_cases SET status = 'resolved', resolution = ?, reason = ?,
  root_cause = coalesce(?, root_cause), resolved_by = ?, resolved_at_ms = CAST(? AS BIGINT)
WHERE id = ? AND status <> 'resolved'
RETURNING {CASE_COLUMNS}
"""
NOTICES = f"""
SELECT * FROM (
  SELECT 'opened' AS kind, {CASE_COLUMNS} FROM discrepancy_cases WHERE opened_notified = 0
  UNION ALL
  SELECT 'overdue' AS kind, {CASE_COLUMNS} FROM discrepancy_cases
    WHERE overdue_notified = 0 AND status <> 'resolved' AND due_at_ms <= CAST(? AS BIGINT)
      AND opened_notified = 1
  UNION ALL
  SELECT 'resolved' AS kind, {CASE_COLUMNS} FROM discrepancy_cases
    WHERE resolved_notified = 0 AND status = 'resolved' AND opened_notified = 1
) AS due ORDER BY id, kind LIMIT CAST(? AS BIGINT)
"""
NOTIFIED_COLUMN = {
    "opened": "opened_notified",
    "overdue": "overdue_notified",
    "resolved": "resolved_notified",
}


def _rec(row: Any) -> ReconciliationRow:
    percent = row["threshold_percent"]
    return ReconciliationRow(
        id=row["id"],
        source=row["source"],
        counted_at_ms=int(row["counted_at_ms"]),
        threshold_units=row["threshold_units"],
        threshold_percent=None if percent is None else float(percent),
        status=row["status"],
        lines=int(row["lines"]),
        matched=int(row["matched"]),
        discrepancies=int(row["discrepancies"]),
        not_counted=int(row["not_counted"]),
        created_by=row["created_by"],
        created_at_ms=int(row["created_at_ms"]),
        completed_at_ms=row["completed_at_ms"],
    )


def _case(row: Any) -> CaseRow:
    return CaseRow(
        **{name: row[name] for name in CASE_COLUMNS.replace(" ", "").split(",")},
    )


class _Reconciliations:
    """The statements; a subclass runs them (``_run``: one transaction)."""

    async def _run(self, statements: Sequence[Statement]) -> list[list[Any]]:
        raise NotImplementedError

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        return (await self._run([(sql, args, "rows")]))[0]

    async def create(self, new: NewReconciliation) -> bool:
        sql = (
            "INSERT INTO reconciliations (id, source, counted_at_ms, threshold_units,"
            " threshold_percent, created_by, created_at_ms, idempotency_key, fingerprint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id"
        )
        args = (
            new.id,
            new.source,
            new.counted_at_ms,
            new.threshold_units,
            new.threshold_percent,
            new.created_by,
            new.created_at_ms,
            new.idempotency_key,
            new.fingerprint,
        )
        return bool(await self._rows(sql, *args))

    async def by_idempotency_key(
        self, created_by: str, idempotency_key: str
    ) -> tuple[ReconciliationRow, str] | None:
        rows = await self._rows(
            f"SELECT {REC_COLUMNS}, fingerprint FROM reconciliations"
            " WHERE created_by = ? AND idempotency_key = ?",
            created_by,
            idempotency_key,
        )
        return (_rec(rows[0]), rows[0]["fingerprint"] or "") if rows else None

    async def add_lines(
        self, reconciliation_id: str, lines: Sequence[tuple[LineResult, bool]]
    ) -> None:
        rows = [
            (reconciliation_id, x.sku, x.location, x.expected, x.counted, x.difference, int(over))
            for x, over in lines
        ]
        sql = (
            "INSERT INTO reconciliation_lines (reconciliation_id, sku, location, expected,"
            " counted, difference, exceeded) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        try:
            await self._run([(sql, rows, "many")])
        except (sqlite3.IntegrityError, asyncpg.UniqueViolationError) as error:
            raise InvalidReconciliation(
                "a (sku, location) is counted twice in this reconciliation", field="counts"
            ) from error

    async def finish(self, reconciliation_id: str, now_ms: int, sla_ms: int) -> ReconciliationRow:
        r = reconciliation_id
        results = await self._run(
            [
                (OPEN_CASES, (now_ms, now_ms + sla_ms, r), "none"),
                (COMPLETE, (now_ms, r, r, r, r, r, r), "none"),
                (f"SELECT {REC_COLUMNS} FROM reconciliations WHERE id = ?", (r,), "rows"),
            ]
        )
        return _rec(results[2][0])

    async def fail(self, reconciliation_id: str, now_ms: int) -> None:
        await self._run(
            [
                (
                    "DELETE FROM reconciliation_lines WHERE reconciliation_id = ?",
                    (reconciliation_id,),
                    "none",
                ),
                (
                    "UPDATE reconciliations SET status = 'failed', completed_at_ms = ?"
                    " WHERE id = ? AND status = 'running'",
                    (now_ms, reconciliation_id),
                    "none",
                ),
            ]
        )

    async def reconciliation(self, reconciliation_id: str) -> ReconciliationRow | None:
        rows = await self._rows(
            f"SELECT {REC_COLUMNS} FROM reconciliations WHERE id = ?", reconciliation_id
        )
        return _rec(rows[0]) if rows else None

    async def not_counted(self, reconciliation_id: str, limit: int) -> list[StockKey]:
        rows = await self._rows(
            f"SELECT s.sku, s.location {UNCOUNTED} ORDER BY s.sku, s.location"
            " LIMIT CAST(? AS BIGINT)",
            reconciliation_id,
            reconciliation_id,
            limit,
        )
        return [(r["sku"], r["location"]) for r in rows]

    async def cases(self, query: CaseQuery) -> list[CaseRow]:
        where, args = ["id > ?"], [query.after or ""]
        for column, value in (
            ("status", query.status),
            ("source", query.source),
            ("reconciliation_id", query.reconciliation_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = await self._rows(
            f"SELECT {CASE_COLUMNS} FROM discrepancy_cases WHERE {' AND '.join(where)}"
            " ORDER BY id LIMIT CAST(? AS BIGINT)",
            *args,
            query.limit,
        )
        return [_case(r) for r in rows]

    async def case(self, case_id: str) -> CaseRow | None:
        rows = await self._rows(
            f"SELECT {CASE_COLUMNS} FROM discrepancy_cases WHERE id = ?", case_id
        )
        return _case(rows[0]) if rows else None

    async def assign(
        self, case_id: str, assignee: str, notes: str | None, now_ms: int
    ) -> CaseRow | None:
        rows = await self._rows(ASSIGN, assignee, notes, case_id)
        return _case(rows[0]) if rows else None

    async def resolve(
        self,
        case_id: str,
        resolution: Resolution,
        reason: str,
        root_cause: str | None,
        resolved_by: str,
        now_ms: int,
    ) -> CaseRow | None:
        rows = await self._rows(
            RESOLVE, resolution, reason, root_cause, resolved_by, now_ms, case_id
        )
        return _case(rows[0]) if rows else None

    async def notices(self, now_ms: int, limit: int) -> list[tuple[NoticeKind, CaseRow]]:
        rows = await self._rows(NOTICES, now_ms, limit)
        return [(r["kind"], _case(r)) for r in rows]

    async def mark_notified(self, case_id: str, kind: NoticeKind) -> None:
        column = NOTIFIED_COLUMN[kind]
        await self._run(
            [(f"UPDATE discrepancy_cases SET {column} = 1 WHERE id = ?", (case_id,), "none")]
        )

    async def overdue_count(self, now_ms: int) -> int:
        rows = await self._rows(
            "SELECT count(*) AS n FROM discrepancy_cases WHERE status <> 'resolved'"
            " AND due_at_ms <= CAST(? AS BIGINT)",
            now_ms,
        )
        return int(rows[0]["n"])


_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2, ...`` (no statement here uses ``?``
    otherwise)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresReconciliations(_Reconciliations):
    def __init__(self, ledger: Ledger) -> None:
        from earmark.store.postgres import PostgresLedger

        if not isinstance(ledger, PostgresLedger):
            raise TypeError(f"not a PostgreSQL ledger: {ledger!r}")
        self.ledger = ledger

    async def _run(self, statements: Sequence[Statement]) -> list[list[Any]]:
        results: list[list[Any]] = []
        async with self.ledger.connection() as conn, conn.transaction():
            for sql, args, mode in statements:
                if mode == "many":
                    await conn.executemany(numbered(sql), args)
                    results.append([])
                elif mode == "rows":
                    results.append(list(await conn.fetch(numbered(sql), *args)))
                else:
                    await conn.execute(numbered(sql), *args)
                    results.append([])
        return results

    async def on_hand_as_of(self, keys: Sequence[StockKey], at_ms: int) -> dict[StockKey, int]:
        if not keys:
            return {}
        rows = await self._rows(
            "SELECT l.sku, l.location,"
            " coalesce(sum(CAST(l.deltas->>'on_hand' AS BIGINT)), 0) AS on_hand"
            " FROM ledger l JOIN unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[])) AS k(sku, location)"
            " ON l.sku = k.sku AND l.location = k.location"
            " WHERE l.occurred_at <= to_timestamp(CAST(? AS BIGINT) / 1000.0)"
            " GROUP BY l.sku, l.location",
            [k[0] for k in keys],
            [k[1] for k in keys],
            at_ms,
        )
        return {(r["sku"], r["location"]): int(r["on_hand"]) for r in rows}


class SqliteReconciliations(_Reconciliations):
    def __init__(self, ledger: Ledger) -> None:
        from earmark.store.sqlite import SqliteLedger

        if not isinstance(ledger, SqliteLedger):
            raise TypeError(f"not a SQLite ledger: {ledger!r}")
        self.ledger = ledger

    async def _run(self, statements: Sequence[Statement]) -> list[list[Any]]:
        def work() -> list[list[Any]]:
            results: list[list[Any]] = []
            with self.ledger.transaction() as db:
                for sql, args, mode in statements:
                    if mode == "many":
                        db.executemany(sql, args)
                        results.append([])
                    else:
                        results.append(db.execute(sql, tuple(args)).fetchall())
            return results

        return await self.ledger.run_blocking(work)

    async def on_hand_as_of(self, keys: Sequence[StockKey], at_ms: int) -> dict[StockKey, int]:
        sql = (
            "SELECT count(*) AS n, coalesce(sum(json_extract(deltas, '$.on_hand')), 0) AS on_hand"
            " FROM ledger WHERE sku = ? AND location = ? AND occurred_at_ms <= ?"
        )

        def work() -> dict[StockKey, int]:
            db = self.ledger.connection()
            found: dict[StockKey, int] = {}
            for sku, location in keys:
                row = db.execute(sql, (sku, location, at_ms)).fetchone()
                if row["n"]:
                    found[(sku, location)] = int(row["on_hand"])
            return found

        return await self.ledger.run_blocking(work)
