"""The durable record in a SQLite file: the embedded default, written by the same flusher.

The stdlib ``sqlite3`` module blocks, so every call runs on the ledger's own worker
thread, on one connection, one call at a time. The thread is the ledger's, not the event
loop's default executor: slow work there (a webhook host's DNS lookup that takes
seconds) never queues the record's reads and writes behind it. WAL mode lets readers
(verify, an HTTP status page) read while the flusher writes; ``BEGIN IMMEDIATE`` takes
the write lock up front so two flusher processes on one file queue instead of
failing half way through a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from earmark.apikeys import ApiKey
from earmark.errors import LedgerMismatch, LedgerUnavailable
from earmark.models import StockLevel
from earmark.store.events import check_no_collision
from earmark.store.ledger import (
    BUCKETS,
    Dialect,
    Event,
    EventKey,
    Page,
    PageQuery,
    ReservationRecord,
    Snapshot,
    fold_reservations,
    fold_stock,
    level_of,
    migrations,
    page_filter,
    page_of,
    reservation_ids,
)
from earmark.store.pages import ms_since, time_of_ms

log = logging.getLogger("earmark.store.ledger")
P = ParamSpec("P")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5_000
# SQLite's default limit on bound parameters per statement is 32766; stay far below.
IDS_PER_QUERY_MAX = 500

LEDGER_COLUMNS = (
    "partition, stream_ms, stream_seq, type, sku, location, qty, reservation_id, channel, "
    "actor, reason, idempotency_key, deltas, flags, occurred_at_ms"
)
INSERT_EVENT = (
    f"INSERT INTO ledger ({LEDGER_COLUMNS}, flushed_at_ms, record_seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
# One writer at a time (BEGIN IMMEDIATE): numbering from the largest record_seq inside
# the write transaction follows commit order (the webhook dispatcher's cursor).
LAST_RECORD_SEQ = "SELECT coalesce(max(record_seq), 0) FROM ledger"
UPSERT_STOCK = (
    f"INSERT INTO stock_levels (sku, location, {', '.join(BUCKETS)}, version, updated_at_ms)"
    f" VALUES (?, ?, {', '.join('?' for _ in BUCKETS)}, ?, ?)"
    " ON CONFLICT (sku, location) DO UPDATE SET "
    + ", ".join(f"{b} = {b} + excluded.{b}" for b in BUCKETS)
    + ", version = version + excluded.version,"
    " updated_at_ms = max(updated_at_ms, excluded.updated_at_ms)"
)
RESERVATION_COLUMNS = (
    "id, lines, parts, channel, created_at_ms, expires_at_ms, committed_at_ms, "
    "released_at_ms, expired_at_ms, shipped_at_ms"
)
UPSERT_RESERVATION = (
    f"INSERT INTO reservations ({RESERVATION_COLUMNS}, status, open_parts, updated_at_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    " lines = excluded.lines, parts = excluded.parts, channel = excluded.channel,"
    " created_at_ms = excluded.created_at_ms, expires_at_ms = excluded.expires_at_ms,"
    " committed_at_ms = excluded.committed_at_ms, released_at_ms = excluded.released_at_ms,"
    " expired_at_ms = excluded.expired_at_ms, shipped_at_ms = excluded.shipped_at_ms,"
    " status = excluded.status, open_parts = excluded.open_parts,"
    " updated_at_ms = excluded.updated_at_ms"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def record_of(row: Sequence[Any]) -> ReservationRecord:
    return ReservationRecord(
        id=row[0],
        lines=orjson.loads(row[1]),
        parts=orjson.loads(row[2]),
        channel=row[3],
        created_at_ms=row[4],
        expires_at_ms=row[5],
        committed_at_ms=row[6],
        released_at_ms=row[7],
        expired_at_ms=row[8],
        shipped_at_ms=row[9],
    )


def reservation_row(record: ReservationRecord, at_ms: int) -> tuple[Any, ...]:
    return (
        record.id,
        record.lines_json(),
        record.parts_json(),
        record.channel,
        record.created_at_ms,
        record.expires_at_ms,
        record.committed_at_ms,
        record.released_at_ms,
        record.expired_at_ms,
        record.shipped_at_ms,
        record.status,
        record.open_parts,
        at_ms,
    )


def event_of(r: sqlite3.Row) -> Event:
    return Event(
        partition=r["partition"],
        stream_ms=r["stream_ms"],
        stream_seq=r["stream_seq"],
        type=r["type"],
        sku=r["sku"],
        location=r["location"],
        qty=r["qty"],
        deltas=orjson.loads(r["deltas"]),
        occurred_at_ms=r["occurred_at_ms"],
        actor=r["actor"],
        channel=r["channel"],
        reservation_id=r["reservation_id"],
        reason=r["reason"],
        idempotency_key=r["idempotency_key"],
        flags=orjson.loads(r["flags"]),
    )


def statements(script: str) -> Iterator[str]:
    """The statements of a migration file (a ';' inside a comment ends none)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")


def _blocking(
    method: Callable[Concatenate[SqliteLedger, P], T],
) -> Callable[Concatenate[SqliteLedger, P], Coroutine[Any, Any, T]]:
    """Runs a blocking method in a worker thread, one at a time on the one connection;
    a busy or locked database surfaces as ``LedgerUnavailable`` (retry later)."""

    async def run(self: SqliteLedger, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.run_blocking(lambda: method(self, *args, **kwargs))

    run.__doc__, run.__name__ = method.__doc__, method.__name__
    return run


class SqliteLedger:
    """The ``Ledger`` on one SQLite file (``:memory:`` for a throwaway one)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="earmark-sqlite")

    @classmethod
    def from_url(cls, url: str) -> SqliteLedger:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            raise ValueError(f"no file in SQLite URL {url!r}")
        return cls(path)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoint
            self._db = db
        return self._db

    async def run_blocking(self, work: Callable[[], T]) -> T:
        """Runs ``work`` in a worker thread, one call at a time on the one connection (the
        webhook tables, ``earmark.store.webhooks``, share it this way); a busy or locked
        database surfaces as ``LedgerUnavailable`` (retry later)."""
        async with self._lock:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._thread, work)
            except sqlite3.OperationalError as error:
                if "locked" in str(error) or "busy" in str(error):
                    raise LedgerUnavailable(f"SQLite busy: {error}") from error
                raise

    def connection(self) -> sqlite3.Connection:
        """The one connection (call only inside ``run_blocking``)."""
        return self._conn()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction on the one connection (only inside ``run_blocking``)."""
        return self._transaction()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, db.close)

    # -- schema and store identity -------------------------------------------------

    @_blocking
    def migrate(self) -> list[int]:
        applied_now = []
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_version")}
            for migration in migrations("sqlite"):
                if migration.version in done:
                    continue
                for statement in statements(migration.sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    (migration.version, migration.name, now_ms()),
                )
                applied_now.append(migration.version)
        if applied_now:
            log.info("applied SQLite migrations %s", applied_now)
        return applied_now

    @_blocking
    def bind_store(self, prefix: str, partitions: int) -> None:
        wanted = {"prefix": prefix, "partitions": str(partitions)}
        with self._transaction() as db:
            for key, value in wanted.items():
                db.execute(
                    "INSERT INTO store_meta VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (key, value, now_ms()),
                )
            rows = db.execute("SELECT key, value FROM store_meta WHERE key IN (?, ?)", list(wanted))
            found = {row[0]: row[1] for row in rows}
        if found != wanted:
            raise LedgerMismatch(
                f"this durable record belongs to the store {found}, not {wanted}", **found
            )

    @_blocking
    def store_meta(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self._conn().execute("SELECT key, value FROM store_meta")}

    @_blocking
    def set_meta(self, values: Mapping[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO store_meta VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
                [(key, value, now_ms()) for key, value in values.items()],
            )

    # -- the flusher's write -----------------------------------------------------------

    @_blocking
    def persist(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        at = now_ms()
        with self._transaction() as db:
            seq = int(db.execute(LAST_RECORD_SEQ).fetchone()[0])
            new = []
            for e in sorted(events, key=lambda e: e.key):
                if self._insert(db, e, at, seq + 1):
                    new.append(e)
                    seq += 1
            keys = {e.key for e in new}
            seen = [e for e in sorted(events, key=lambda e: e.key) if e.key not in keys]
            check_no_collision(seen, {e.key: e for e in self._recorded(db, seen)})
            db.executemany(
                UPSERT_STOCK,
                [
                    (c.sku, c.location, *(c.deltas[b] for b in BUCKETS), c.version, c.updated_at_ms)
                    for c in fold_stock(new)
                ],
            )
            ids = reservation_ids(new)
            existing = {r.id: r for r in self._reservations(db, ids)}
            records = fold_reservations(existing, new)
            db.executemany(UPSERT_RESERVATION, [reservation_row(r, at) for r in records])
        return len(new)

    @staticmethod
    def _insert(db: sqlite3.Connection, e: Event, at: int, record_seq: int) -> bool:
        """True when the event was new (a replayed one hits the primary key)."""
        row = (
            *e.key,
            e.type,
            e.sku,
            e.location,
            e.qty,
            e.reservation_id,
            e.channel,
            e.actor,
            e.reason,
            e.idempotency_key,
            e.deltas_json(),
            e.flags_json(),
            e.occurred_at_ms,
            at,
            record_seq,
        )
        return db.execute(INSERT_EVENT, row).rowcount == 1

    @staticmethod
    def _recorded(db: sqlite3.Connection, events: Sequence[Event]) -> list[Event]:
        found = []
        for e in events:
            row = db.execute(
                f"SELECT {LEDGER_COLUMNS} FROM ledger"
                " WHERE partition = ? AND stream_ms = ? AND stream_seq = ?",
                e.key,
            ).fetchone()
            if row is not None:
                found.append(event_of(row))
        return found

    @staticmethod
    def _reservations(db: sqlite3.Connection, ids: Sequence[str]) -> list[ReservationRecord]:
        found = []
        for start in range(0, len(ids), IDS_PER_QUERY_MAX):
            chunk = ids[start : start + IDS_PER_QUERY_MAX]
            marks = ", ".join("?" for _ in chunk)
            rows = db.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id IN ({marks})", chunk
            )
            found += [record_of(row) for row in rows]
        return found

    # -- reads ---------------------------------------------------------------------------

    @_blocking
    def has_stock(self) -> bool:
        row = self._conn().execute("SELECT EXISTS (SELECT 1 FROM stock_levels)").fetchone()
        return bool(row[0])

    @_blocking
    def stock_levels(self) -> list[StockLevel]:
        rows = self._conn().execute("SELECT * FROM stock_levels ORDER BY sku, location")
        return [level_of(row) for row in rows]

    @_blocking
    def events(self, after: EventKey | None, limit: int) -> list[Event]:
        rows = self._conn().execute(
            f"SELECT {LEDGER_COLUMNS} FROM ledger"
            " WHERE (partition, stream_ms, stream_seq) > (?, ?, ?)"
            " ORDER BY partition, stream_ms, stream_seq LIMIT ?",
            (*(after or (-1, -1, -1)), limit),
        )
        return [event_of(row) for row in rows]

    @_blocking
    def page(self, query: PageQuery) -> Page:
        where, params = page_filter(query, lambda _: "?", ("occurred_at_ms", query.since_ms))
        rows = self._conn().execute(
            f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE {where}"
            " ORDER BY partition, stream_ms, stream_seq LIMIT ?",
            (*params, query.limit + 1),
        )
        return page_of([event_of(row) for row in rows], query.limit)

    @_blocking
    def reservation(self, reservation_id: str) -> ReservationRecord | None:
        found = self._reservations(self._conn(), [reservation_id])
        return found[0] if found else None

    @_blocking
    def snapshot(self, partitions: int) -> Snapshot:
        with self._transaction() as db:  # the write lock: no flush commits meanwhile
            stock = [level_of(row) for row in db.execute("SELECT * FROM stock_levels")]
            rows = db.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE status = 'committed'"
                " ORDER BY id"
            )
            committed = [r for r in map(record_of, rows) if "committed" in r.parts.values()]
            last_ids = {}
            for p in range(partitions):
                row = db.execute(
                    "SELECT stream_ms, stream_seq FROM ledger WHERE partition = ?"
                    " ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1",
                    (p,),
                ).fetchone()
                if row is not None:
                    last_ids[p] = (int(row[0]), int(row[1]))
            meta = {row[0]: row[1] for row in db.execute("SELECT key, value FROM store_meta")}
        return Snapshot(stock, committed, last_ids, meta)

    @_blocking
    def create_api_key(self, key: ApiKey) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO api_keys (name, sha256, scopes, created_at)"
                " VALUES (?, ?, ?, ?)",
                (key.name, key.sha256, ",".join(sorted(key.scopes)), ms_since(key.created_at)),
            )
        return cursor.rowcount == 1

    @_blocking
    def api_keys(self) -> list[ApiKey]:
        rows = self._conn().execute(
            "SELECT name, sha256, scopes, created_at FROM api_keys ORDER BY name"
        )
        return [ApiKey(r[0], frozenset(r[2].split(",")), time_of_ms(int(r[3])), r[1]) for r in rows]

    @_blocking
    def revoke_api_key(self, name: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM api_keys WHERE name = ?", (name,))
        return cursor.rowcount == 1

    @_blocking
    def newest_event_ids(self, partitions: int) -> dict[int, tuple[int, int]]:
        found = {}
        for p in range(partitions):
            row = (
                self._conn()
                .execute(
                    "SELECT stream_ms, stream_seq FROM ledger WHERE partition = ?"
                    " ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1",
                    (p,),
                )
                .fetchone()
            )
            if row is not None:
                found[p] = (int(row[0]), int(row[1]))
        return found

    @_blocking
    def mark_holds_lost(self, at_ms: int) -> int:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE open_parts > 0"
            ).fetchall()
            records = [record_of(row) for row in rows]
            for record in records:
                record.lose_holds(at_ms)
            db.executemany(UPSERT_RESERVATION, [reservation_row(r, now_ms()) for r in records])
        return len(records)
