"""The durable record in PostgreSQL, through asyncpg.

asyncpg speaks PostgreSQL's binary protocol directly (no libpq, no text round trip of
every value), sends array parameters in binary, supports COPY, and is the fastest
asyncio driver available: a batch of events is one multi-row ``INSERT ... SELECT FROM
unnest(...)`` with binary arrays, which costs about what a COPY does (see
``loadtests/bench_flusher.py``) while it still tells, through ``RETURNING``, which rows
were new.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
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
    time_of_ms,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger("earmark.store.ledger")

POOL_SIZE_MAX = 4
CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 60.0
MIGRATION_LOCK_ID = 0x6561726D61726B  # 'earmark': one migrator at a time
# Held by every persist until it commits, so ledger.record_seq (drawn from a sequence
# while the lock is held) follows commit order: the webhook dispatcher reads the ledger
# after a cursor on record_seq and can never pass over an event that commits later.
RECORD_ORDER_LOCK_ID = 0x656D7265636F7264  # 'emrecord'
# Errors after which a retry can succeed: the server is down, restarting, overloaded,
# or a lock conflict chose this transaction as the victim.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    # Resetting a connection whose operation the server cut short (it shut down mid-
    # query) fails this way; the pool has already discarded that connection.
    asyncpg.InternalClientError,
)

LEDGER_COLUMNS = (
    "partition, stream_ms, stream_seq, type, sku, location, qty, reservation_id, channel, "
    "actor, reason, idempotency_key, deltas, flags, occurred_at"
)
INSERT_EVENTS = f"""
INSERT INTO ledger ({LEDGER_COLUMNS})
SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                     $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[],
                     $11::text[], $12::text[], $13::jsonb[], $14::jsonb[], $15::timestamptz[])
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
RETURNING partition, stream_ms, stream_seq
"""
_bucket_params = ", ".join(f"${i + 3}::bigint[]" for i in range(len(BUCKETS)))
_n = len(BUCKETS) + 3
UPSERT_STOCK = f"""
INSERT INTO stock_levels (sku, location, {", ".join(BUCKETS)}, version, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], {_bucket_params}, ${_n}::bigint[],
                     ${_n + 1}::timestamptz[])
ON CONFLICT (sku, location) DO UPDATE SET
  {", ".join(f"{b} = stock_levels.{b} + excluded.{b}" for b in BUCKETS)},
  version = stock_levels.version + excluded.version,
  updated_at = greatest(stock_levels.updated_at, excluded.updated_at)
"""
RESERVATION_COLUMNS = (
    "id, lines, parts, channel, created_at, expires_at, committed_at, released_at, "
    "expired_at, shipped_at"
)
UPDATE_RESERVATIONS = """
UPDATE reservations AS r SET status = u.status, lines = u.lines, parts = u.parts,
  open_parts = u.open_parts, channel = u.channel, created_at = u.created_at,
  expires_at = u.expires_at, committed_at = u.committed_at, released_at = u.released_at,
  expired_at = u.expired_at, shipped_at = u.shipped_at, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::int[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
            $11::timestamptz[], $12::timestamptz[])
  AS u(id, status, lines, parts, open_parts, channel, created_at, expires_at,
       committed_at, released_at, expired_at, shipped_at)
WHERE r.id = u.id
"""
# Recorded events by key (to tell a redelivery from a collision).
RECORDED_EVENTS = f"""
SELECT {LEDGER_COLUMNS} FROM ledger
WHERE (partition, stream_ms, stream_seq) IN
      (SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[]))
"""
# The newest event id per partition, one index probe each (no scan of the ledger).
LAST_STREAM_IDS = """
SELECT p AS partition, l.stream_ms, l.stream_seq FROM generate_series(0, $1 - 1) AS p
CROSS JOIN LATERAL (SELECT stream_ms, stream_seq FROM ledger WHERE partition = p
                    ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1) AS l
"""


def to_time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(value: datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


def record_of(row: asyncpg.Record) -> ReservationRecord:
    return ReservationRecord(
        id=row["id"],
        lines=orjson.loads(row["lines"]),
        parts=orjson.loads(row["parts"]),
        channel=row["channel"],
        created_at_ms=to_ms(row["created_at"]),
        expires_at_ms=to_ms(row["expires_at"]),
        committed_at_ms=to_ms(row["committed_at"]),
        released_at_ms=to_ms(row["released_at"]),
        expired_at_ms=to_ms(row["expired_at"]),
        shipped_at_ms=to_ms(row["shipped_at"]),
    )


def event_of(r: asyncpg.Record) -> Event:
    return Event(
        partition=r["partition"],
        stream_ms=r["stream_ms"],
        stream_seq=r["stream_seq"],
        type=r["type"],
        sku=r["sku"],
        location=r["location"],
        qty=r["qty"],
        deltas=orjson.loads(r["deltas"]),
        occurred_at_ms=to_ms(r["occurred_at"]) or 0,
        actor=r["actor"],
        channel=r["channel"],
        reservation_id=r["reservation_id"],
        reason=r["reason"],
        idempotency_key=r["idempotency_key"],
        flags=orjson.loads(r["flags"]),
    )


class PostgresLedger:
    """The ``Ledger`` on PostgreSQL. Connects lazily: a flusher can start while the
    database is down and catch up once it is back."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str, *, pool_size_max: int = POOL_SIZE_MAX) -> None:
        self.url = url
        self.pool_size_max = pool_size_max
        self._pool: asyncpg.Pool | None = None

    async def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size_max,
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
            )
        return self._pool

    def connection(self) -> contextlib.AbstractAsyncContextManager[Conn]:
        """A pooled connection of this ledger's pool, for the stores that share it (the
        webhook tables, ``earmark.store.webhooks``); failures as in ``_connection``."""
        return self._connection()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; transient failures surface as ``LedgerUnavailable``."""
        try:
            pool = await self._connected()
            async with pool.acquire() as conn:
                yield conn
        except TRANSIENT as error:
            raise LedgerUnavailable(f"PostgreSQL unavailable: {error!r}") from error

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- schema and store identity -------------------------------------------------

    async def migrate(self) -> list[int]:
        applied_now = []
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
            for migration in migrations("postgres"):
                if migration.version in done:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
                applied_now.append(migration.version)
        if applied_now:
            log.info("applied PostgreSQL migrations %s", applied_now)
        return applied_now

    async def bind_store(self, prefix: str, partitions: int) -> None:
        wanted = {"prefix": prefix, "partitions": str(partitions)}
        async with self._connection() as conn, conn.transaction():
            for key, value in wanted.items():
                await conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    key,
                    value,
                )
            rows = await conn.fetch(
                "SELECT key, value FROM store_meta WHERE key = ANY($1)", list(wanted)
            )
        found = {r["key"]: r["value"] for r in rows}
        if found != wanted:
            raise LedgerMismatch(
                f"this durable record belongs to the store {found}, not {wanted}", **found
            )

    async def store_meta(self) -> dict[str, str]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT key, value FROM store_meta")
        return {r["key"]: r["value"] for r in rows}

    async def set_meta(self, values: Mapping[str, str]) -> None:
        async with self._connection() as conn:
            await conn.executemany(
                "INSERT INTO store_meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
                list(values.items()),
            )

    # -- the flusher's write -----------------------------------------------------------

    async def persist(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", RECORD_ORDER_LOCK_ID)
            inserted = await conn.fetch(INSERT_EVENTS, *self._event_columns(events))
            keys = {(r["partition"], r["stream_ms"], r["stream_seq"]) for r in inserted}
            new = [e for e in events if e.key in keys]
            seen = [e for e in events if e.key not in keys]
            if seen:
                rows = await conn.fetch(
                    RECORDED_EVENTS,
                    [e.partition for e in seen],
                    [e.stream_ms for e in seen],
                    [e.stream_seq for e in seen],
                )
                check_no_collision(seen, {(e := event_of(r)).key: e for r in rows})
            await self._add_stock(conn, new)
            await self._fold_reservations(conn, new)
        return len(new)

    @staticmethod
    def _event_columns(events: Sequence[Event]) -> list[list[Any]]:
        return [
            [e.partition for e in events],
            [e.stream_ms for e in events],
            [e.stream_seq for e in events],
            [e.type for e in events],
            [e.sku for e in events],
            [e.location for e in events],
            [e.qty for e in events],
            [e.reservation_id for e in events],
            [e.channel for e in events],
            [e.actor for e in events],
            [e.reason for e in events],
            [e.idempotency_key for e in events],
            [e.deltas_json() for e in events],
            [e.flags_json() for e in events],
            [to_time(e.occurred_at_ms) for e in events],
        ]

    @staticmethod
    async def _add_stock(conn: Conn, new: Sequence[Event]) -> None:
        changes = fold_stock(new)
        if not changes:
            return
        columns: list[list[Any]] = [[c.sku for c in changes], [c.location for c in changes]]
        columns += [[c.deltas[b] for c in changes] for b in BUCKETS]
        columns += [[c.version for c in changes], [to_time(c.updated_at_ms) for c in changes]]
        await conn.execute(UPSERT_STOCK, *columns)

    @staticmethod
    async def _fold_reservations(conn: Conn, new: Sequence[Event]) -> None:
        """Read-modify-write under row locks taken in id order: concurrent flushers that
        touch one reservation (its parts live in different partitions) queue up."""
        ids = reservation_ids(new)
        if not ids:
            return
        # One statement creates the missing rows and locks them all (DO UPDATE locks a
        # conflicting row as FOR UPDATE would) and returns what they hold now.
        rows = await conn.fetch(
            "INSERT INTO reservations (id) SELECT unnest($1::text[]) ORDER BY 1"
            f" ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING {RESERVATION_COLUMNS}",
            ids,
        )
        records = fold_reservations({r["id"]: record_of(r) for r in rows}, new)
        await PostgresLedger._write_reservations(conn, records)

    @staticmethod
    async def _write_reservations(conn: Conn, records: Sequence[ReservationRecord]) -> None:
        await conn.execute(
            UPDATE_RESERVATIONS,
            [r.id for r in records],
            [r.status for r in records],
            [r.lines_json() for r in records],
            [r.parts_json() for r in records],
            [r.open_parts for r in records],
            [r.channel for r in records],
            [to_time(r.created_at_ms) for r in records],
            [to_time(r.expires_at_ms) for r in records],
            [to_time(r.committed_at_ms) for r in records],
            [to_time(r.released_at_ms) for r in records],
            [to_time(r.expired_at_ms) for r in records],
            [to_time(r.shipped_at_ms) for r in records],
        )

    # -- reads ---------------------------------------------------------------------------

    async def has_stock(self) -> bool:
        async with self._connection() as conn:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM stock_levels)"))

    async def stock_levels(self) -> list[StockLevel]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT * FROM stock_levels ORDER BY sku, location")
        return [level_of(r) for r in rows]

    async def events(self, after: EventKey | None, limit: int) -> list[Event]:
        start = after or (-1, -1, -1)
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {LEDGER_COLUMNS} FROM ledger"
                " WHERE (partition, stream_ms, stream_seq) > ($1, $2, $3)"
                " ORDER BY partition, stream_ms, stream_seq LIMIT $4",
                *start,
                limit,
            )
        return [event_of(r) for r in rows]

    async def page(self, query: PageQuery) -> Page:
        since_ms = query.since_ms
        since = ("occurred_at", None if since_ms is None else time_of_ms(since_ms))
        where, params = page_filter(query, lambda n: f"${n}", since)
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE {where}"
                f" ORDER BY partition, stream_ms, stream_seq LIMIT ${len(params) + 1}",
                *params,
                query.limit + 1,
            )
        return page_of([event_of(r) for r in rows], query.limit)

    async def reservation(self, reservation_id: str) -> ReservationRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1", reservation_id
            )
        return None if row is None else record_of(row)

    async def snapshot(self, partitions: int) -> Snapshot:
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read"):
            # SHARE mode waits for every flush in progress to commit and holds off new
            # ones until the snapshot is read: what rebuild restores is complete.
            await conn.execute("LOCK TABLE ledger, stock_levels, reservations IN SHARE MODE")
            stock = [level_of(r) for r in await conn.fetch("SELECT * FROM stock_levels")]
            rows = await conn.fetch(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations"
                " WHERE status = 'committed' ORDER BY id"
            )
            committed = [r for r in map(record_of, rows) if "committed" in r.parts.values()]
            last = await conn.fetch(LAST_STREAM_IDS, partitions)
            meta = {r["key"]: r["value"] for r in await conn.fetch("SELECT * FROM store_meta")}
        last_ids = {r["partition"]: (r["stream_ms"], r["stream_seq"]) for r in last}
        return Snapshot(stock, committed, last_ids, meta)

    async def create_api_key(self, key: ApiKey) -> bool:
        async with self._connection() as conn:
            status = await conn.execute(
                "INSERT INTO api_keys (name, sha256, scopes, created_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                key.name,
                key.sha256,
                sorted(key.scopes),
                key.created_at,
            )
        return bool(status.endswith(" 1"))

    async def api_keys(self) -> list[ApiKey]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT * FROM api_keys ORDER BY name")
        return [
            ApiKey(r["name"], frozenset(r["scopes"]), r["created_at"], r["sha256"]) for r in rows
        ]

    async def revoke_api_key(self, name: str) -> bool:
        async with self._connection() as conn:
            status = await conn.execute("DELETE FROM api_keys WHERE name = $1", name)
        return bool(status.endswith(" 1"))

    async def newest_event_ids(self, partitions: int) -> dict[int, tuple[int, int]]:
        async with self._connection() as conn:
            rows = await conn.fetch(LAST_STREAM_IDS, partitions)
        return {r["partition"]: (r["stream_ms"], r["stream_seq"]) for r in rows}

    async def mark_holds_lost(self, at_ms: int) -> int:
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE open_parts > 0"
                " ORDER BY id FOR UPDATE"
            )
            records = [record_of(r) for r in rows]
            for record in records:
                record.lose_holds(at_ms)
            if records:
                await self._write_reservations(conn, records)
        return len(records)
