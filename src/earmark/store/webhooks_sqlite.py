"""The webhook tables in the SQLite file, on the ledger's one connection (``store.webhooks``).

Each method runs in the ledger's worker thread, one at a time; every write is one
``BEGIN IMMEDIATE`` transaction, so concurrent processes on the file (``serve`` and
``earmark webhooks deliver``) queue for the write lock and never interleave a dispatch
or a claim. SQLite ignores the schema's foreign keys unless told, so deleting an endpoint
deletes its rows explicitly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from earmark.store.events import BUCKETS
from earmark.store.sqlite import IDS_PER_QUERY_MAX, LEDGER_COLUMNS, SqliteLedger, event_of
from earmark.store.webhooks import (
    FAILED,
    AttemptResult,
    AttemptRow,
    Backlog,
    Claimed,
    DisabledPlanner,
    DispatchReport,
    EndpointChanges,
    EndpointRow,
    MessageRow,
    NewEndpoint,
    NewMessage,
    PendingKeyed,
    Planner,
    RecordedEvent,
    ReplayRow,
    StockKey,
    StockState,
    StoredResponse,
    coalesce,
    effects_by_endpoint,
    next_status,
    state_of,
    stock_rows,
)
from earmark.store.webhooks_postgres import (
    ATTEMPT_COLUMNS,
    ENDPOINT_COLUMNS,
    MESSAGE_COLUMNS,
    NEWEST_SEQ,
    REPLAY_COLUMNS,
)

T = TypeVar("T")

INSERT_MESSAGE = """
INSERT INTO webhook_messages (id, endpoint_id, type, record_seq, event_id, coalesce_key,
  stock_seq, payload, attempts, next_attempt_at_ms, recorded_at_ms, created_at_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO {conflict}
"""
REPLAY_CONFLICT = """UPDATE SET status = 'pending', attempts = excluded.attempts,
  next_attempt_at_ms = excluded.next_attempt_at_ms, lease_owner = NULL,
  lease_until_ms = NULL, superseded_by = NULL, finished_at_ms = NULL
  WHERE webhook_messages.status <> 'pending'"""
SAVE_STOCK = (
    f"INSERT INTO webhook_stock (sku, location, {', '.join(BUCKETS)}, version)"
    f" VALUES (?, ?, {', '.join('?' for _ in BUCKETS)}, ?)"
    " ON CONFLICT (sku, location) DO UPDATE SET "
    + ", ".join(f"{b} = excluded.{b}" for b in BUCKETS)
    + ", version = excluded.version"
)
_bucket_sums = ", ".join(f"coalesce(sum(json_extract(deltas, '$.{b}')), 0) AS {b}" for b in BUCKETS)
STOCK_AS_OF = (
    f"SELECT {_bucket_sums}, coalesce(sum(deltas <> '{{}}'), 0) AS version FROM ledger"
    " WHERE sku = ? AND location = ? AND record_seq <= ?"
)
CLAIMABLE = """
SELECT id FROM (
  SELECT m.id, m.next_attempt_at_ms AS due, m.record_seq AS seq,
    row_number() OVER (PARTITION BY m.endpoint_id
                       ORDER BY m.next_attempt_at_ms, m.record_seq) AS nth
  FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
  WHERE m.status = 'pending' AND m.next_attempt_at_ms <= :now
    AND (m.lease_until_ms IS NULL OR m.lease_until_ms <= :now)
    AND e.disabled = 0 AND e.paused_until_ms <= :now
    AND e.id NOT IN (SELECT value FROM json_each(:exclude)))
WHERE nth <= :per_endpoint
ORDER BY due, seq
LIMIT :limit
"""
CLAIMED = f"""
SELECT m.id, m.endpoint_id, m.type, m.record_seq, m.payload, m.attempts, m.coalesce_key,
  m.created_at_ms, m.recorded_at_ms, m.next_attempt_at_ms,
  {", ".join(f"e.{c} AS e_{c}" for c in ENDPOINT_COLUMNS.split(", "))}
FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
WHERE m.id IN (SELECT value FROM json_each(?))
ORDER BY m.next_attempt_at_ms, m.record_seq
"""
DELIVERED_SQL = """
UPDATE webhook_messages SET status = 'delivered', attempts = ?, finished_at_ms = ?,
  lease_owner = NULL, lease_until_ms = NULL, last_error = NULL
WHERE id = ? AND status = 'pending'
"""
NEWER_PENDING = """
SELECT n.id FROM webhook_messages m JOIN webhook_messages n
  ON n.endpoint_id = m.endpoint_id AND n.coalesce_key = m.coalesce_key
WHERE m.id = ? AND m.status = 'pending' AND m.lease_owner = ? AND n.status = 'pending'
  AND n.stock_seq > m.stock_seq
ORDER BY n.stock_seq DESC LIMIT 1
"""
COALESCE_RETRY = """
UPDATE webhook_messages SET status = 'coalesced', attempts = ?, finished_at_ms = ?,
  last_error = ?, superseded_by = ?, lease_owner = NULL, lease_until_ms = NULL
WHERE id = ?
"""
RETRY_SQL = """
UPDATE webhook_messages SET attempts = ?, next_attempt_at_ms = ?, last_error = ?,
  lease_owner = NULL, lease_until_ms = NULL
WHERE id = ? AND status = 'pending' AND lease_owner = ?
"""
FAILED_SQL = """
UPDATE webhook_messages SET status = 'failed', attempts = ?, finished_at_ms = ?,
  last_error = ?, lease_owner = NULL, lease_until_ms = NULL
WHERE id = ? AND status = 'pending' AND lease_owner = ?
"""
ENDPOINT_SUCCESS = """
UPDATE webhook_endpoints SET failing_since_ms = NULL, throttle_ms = 0
WHERE id = ? AND (failing_since_ms IS NOT NULL OR throttle_ms <> 0)
"""
ENDPOINT_FAILURE = """
UPDATE webhook_endpoints SET failing_since_ms = coalesce(failing_since_ms, ?),
  paused_until_ms = max(paused_until_ms, ?), throttle_ms = max(throttle_ms, ?)
WHERE id = ?
"""
ENDPOINT_DISABLE = """
UPDATE webhook_endpoints SET disabled = 1, disabled_reason = ?, disabled_at_ms = ?,
  disabled_notified = 0, updated_at_ms = ?
WHERE id = ? AND disabled = 0 AND (? <> 'failing' OR failing_since_ms <= ?)
"""


def endpoint_of(row: Any, prefix: str = "") -> EndpointRow:
    def col(name: str) -> Any:
        return row[prefix + name]

    return EndpointRow(
        id=col("id"),
        url=col("url"),
        events=tuple(orjson.loads(col("events"))),
        description=col("description"),
        secret=col("secret"),
        previous_secret=col("previous_secret"),
        previous_secret_expires_at_ms=col("previous_secret_expires_at_ms"),
        disabled=bool(col("disabled")),
        disabled_reason=col("disabled_reason"),
        disabled_at_ms=col("disabled_at_ms"),
        start_seq=int(col("start_seq")),
        failing_since_ms=col("failing_since_ms"),
        paused_until_ms=int(col("paused_until_ms")),
        throttle_ms=int(col("throttle_ms")),
        created_at_ms=int(col("created_at_ms")),
        updated_at_ms=int(col("updated_at_ms")),
    )


def _named(columns: str, row: sqlite3.Row) -> dict[str, Any]:
    return {name: row[name] for name in columns.split(", ")}


def recorded_of(row: sqlite3.Row) -> RecordedEvent:
    return RecordedEvent(event_of(row), int(row["record_seq"]), int(row["flushed_at_ms"]))


def _json(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


class SqliteWebhooks:
    """The ``WebhookStore`` on the ledger's SQLite connection."""

    def __init__(self, ledger: SqliteLedger) -> None:
        self.ledger = ledger

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self.ledger.run_blocking(lambda: work(self.ledger.connection()))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self.ledger.transaction() as db:
                return work(db)

        return await self.ledger.run_blocking(run)

    # -- endpoints ------------------------------------------------------------------------

    async def create_endpoint(self, new: NewEndpoint, now_ms: int) -> EndpointRow:
        def work(db: sqlite3.Connection) -> EndpointRow:
            db.execute(
                "INSERT INTO webhook_endpoints (id, url, events, description, secret,"
                f" start_seq, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ({NEWEST_SEQ}),"
                " ?, ?)",
                (new.id, new.url, _json(new.events), new.description, new.secret, now_ms, now_ms),
            )
            created = self._endpoint(db, new.id)
            if created is None:  # cannot happen inside this transaction
                raise sqlite3.IntegrityError(f"endpoint {new.id} vanished while created")
            return created

        return await self._write(work)

    @staticmethod
    def _endpoint(db: sqlite3.Connection, endpoint_id: str) -> EndpointRow | None:
        row = db.execute(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        return None if row is None else endpoint_of(row)

    async def endpoint(self, endpoint_id: str) -> EndpointRow | None:
        return await self._read(lambda db: self._endpoint(db, endpoint_id))

    async def endpoints(self) -> list[EndpointRow]:
        def work(db: sqlite3.Connection) -> list[EndpointRow]:
            rows = db.execute(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at_ms, id"
            )
            return [endpoint_of(r) for r in rows]

        return await self._read(work)

    async def endpoint_count(self) -> int:
        return await self._read(
            lambda db: int(db.execute("SELECT count(*) FROM webhook_endpoints").fetchone()[0])
        )

    async def update_endpoint(
        self, endpoint_id: str, changes: EndpointChanges, now_ms: int
    ) -> EndpointRow | None:
        sets, params = ["updated_at_ms = :now"], {"id": endpoint_id, "now": now_ms}
        if changes.url is not None:
            sets.append("url = :url")
            params["url"] = changes.url
        if changes.events is not None:
            sets.append("events = :events")
            params["events"] = _json(changes.events)
        if changes.description is not None:
            sets.append("description = :description")
            params["description"] = changes.description
        if changes.disabled is True:
            sets.append(
                "disabled_reason = CASE WHEN disabled THEN disabled_reason ELSE 'operator' END,"
                " disabled_at_ms = CASE WHEN disabled THEN disabled_at_ms ELSE :now END,"
                " disabled_notified = disabled, disabled = 1"
            )
        elif changes.disabled is False:
            sets.append(
                "disabled = 0, disabled_reason = NULL, disabled_at_ms = NULL,"
                " disabled_notified = 1, failing_since_ms = NULL, paused_until_ms = 0,"
                " throttle_ms = 0"
            )

        def work(db: sqlite3.Connection) -> EndpointRow | None:
            db.execute(f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = :id", params)
            return self._endpoint(db, endpoint_id)

        return await self._write(work)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            for table in ("webhook_messages", "webhook_attempts", "webhook_replays"):
                db.execute(f"DELETE FROM {table} WHERE endpoint_id = ?", (endpoint_id,))
            done = db.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
            return done.rowcount == 1

        return await self._write(work)

    async def rotate_secret(
        self, endpoint_id: str, secret: str, previous_expires_at_ms: int, now_ms: int
    ) -> EndpointRow | None:
        def work(db: sqlite3.Connection) -> EndpointRow | None:
            db.execute(
                "UPDATE webhook_endpoints SET previous_secret = secret, secret = ?,"
                " previous_secret_expires_at_ms = ?, updated_at_ms = ? WHERE id = ?",
                (secret, previous_expires_at_ms, now_ms, endpoint_id),
            )
            return self._endpoint(db, endpoint_id)

        return await self._write(work)

    # -- the dispatcher -------------------------------------------------------------------

    async def dispatch(
        self, limit: int, planner: Planner, now_ms: int, *, coalesce: bool
    ) -> DispatchReport:
        def work(db: sqlite3.Connection) -> DispatchReport:
            cursor = db.execute("SELECT cursor_seq FROM webhook_dispatch WHERE id = 1").fetchone()
            rows = db.execute(
                f"SELECT {LEDGER_COLUMNS}, record_seq, flushed_at_ms FROM ledger"
                " WHERE record_seq > ? ORDER BY record_seq LIMIT ?",
                (cursor[0], limit),
            ).fetchall()
            if not rows:
                return DispatchReport()
            events = [recorded_of(r) for r in rows]
            states = self._saved_states(db, events)
            messages = planner(events, states, self._enabled(db))
            written, dropped = self._insert(db, messages, now_ms, coalesce, replay=False)
            db.executemany(SAVE_STOCK, stock_rows(states))
            db.execute(
                "UPDATE webhook_dispatch SET cursor_seq = ?, updated_at_ms = ? WHERE id = 1",
                (events[-1].record_seq, now_ms),
            )
            return DispatchReport(len(events), written, dropped)

        return await self._write(work)

    @staticmethod
    def _keys(events: Sequence[RecordedEvent]) -> list[StockKey]:
        return sorted({(e.event.sku, e.event.location) for e in events})

    def _saved_states(
        self, db: sqlite3.Connection, events: Sequence[RecordedEvent]
    ) -> dict[StockKey, StockState]:
        states = {}
        for sku, location in self._keys(events):
            row = db.execute(
                "SELECT * FROM webhook_stock WHERE sku = ? AND location = ?", (sku, location)
            ).fetchone()
            states[(sku, location)] = StockState() if row is None else state_of(row)
        return states

    def _states_as_of(
        self, db: sqlite3.Connection, events: Sequence[RecordedEvent], record_seq: int
    ) -> dict[StockKey, StockState]:
        return {
            (sku, location): state_of(
                db.execute(STOCK_AS_OF, (sku, location, record_seq)).fetchone()
            )
            for sku, location in self._keys(events)
        }

    @staticmethod
    def _enabled(db: sqlite3.Connection) -> list[EndpointRow]:
        rows = db.execute(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE disabled = 0 ORDER BY id"
        )
        return [endpoint_of(r) for r in rows]

    @staticmethod
    def _pending(
        db: sqlite3.Connection, keyed: Sequence[tuple[str, str]], now_ms: int
    ) -> list[PendingKeyed]:
        found = []
        for endpoint_id, key in keyed:
            rows = db.execute(
                "SELECT id, endpoint_id, coalesce_key, stock_seq, attempts, next_attempt_at_ms"
                " FROM webhook_messages WHERE endpoint_id = ? AND coalesce_key = ?"
                " AND status = 'pending' AND (lease_until_ms IS NULL OR lease_until_ms <= ?)",
                (endpoint_id, key, now_ms),
            )
            found += [PendingKeyed(**dict(r)) for r in rows]
        return found

    def _insert(
        self,
        db: sqlite3.Connection,
        messages: Sequence[NewMessage],
        now_ms: int,
        enabled: bool,
        *,
        replay: bool,
    ) -> tuple[int, int]:
        if not messages:
            return 0, 0
        keyed = sorted({(m.endpoint_id, m.coalesce_key) for m in messages if m.coalesce_key})
        pending = self._pending(db, keyed, now_ms) if enabled else []
        plan = coalesce(messages, pending, now_ms, enabled=enabled)
        db.executemany(
            "UPDATE webhook_messages SET status = 'coalesced', superseded_by = ?,"
            " finished_at_ms = ?, lease_owner = NULL, lease_until_ms = NULL"
            " WHERE id = ? AND status = 'pending'",
            [(new, now_ms, old) for old, new in plan.superseded],
        )
        conflict = REPLAY_CONFLICT if replay else "NOTHING"
        db.executemany(
            INSERT_MESSAGE.format(conflict=conflict),
            [
                (m.id, m.endpoint_id, m.type, m.record_seq, m.event_id, m.coalesce_key,
                 m.stock_seq, m.payload, attempts, due, m.recorded_at_ms, now_ms)
                for m, attempts, due in sorted(plan.insert, key=lambda x: x[0].id)
            ],
        )  # fmt: skip
        return len(plan.insert), plan.dropped + len(plan.superseded)

    async def notify_disabled(self, planner: DisabledPlanner, now_ms: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            rows = db.execute(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE disabled_notified = 0"
                " ORDER BY id"
            ).fetchall()
            if not rows:
                return 0
            disabled = [endpoint_of(r) for r in rows]
            self._insert(db, planner(disabled, self._enabled(db), now_ms), now_ms, False,
                         replay=False)  # fmt: skip
            db.executemany(
                "UPDATE webhook_endpoints SET disabled_notified = 1 WHERE id = ?",
                [(e.id,) for e in disabled],
            )
            return len(disabled)

        return await self._write(work)

    async def create_replay(
        self,
        replay_id: str,
        endpoint_id: str,
        after_seq: int,
        since_ms: int | None,
        now_ms: int,
    ) -> ReplayRow | None:
        def work(db: sqlite3.Connection) -> ReplayRow | None:
            db.execute(
                "INSERT INTO webhook_replays (id, endpoint_id, after_seq, until_seq, since_ms,"
                f" cursor_seq, created_at_ms) SELECT ?, id, ?, ({NEWEST_SEQ}), ?, ?, ?"
                " FROM webhook_endpoints WHERE id = ?",
                (replay_id, after_seq, since_ms, after_seq, now_ms, endpoint_id),
            )
            return self._replay(db, replay_id)

        return await self._write(work)

    @staticmethod
    def _replay(db: sqlite3.Connection, replay_id: str) -> ReplayRow | None:
        row = db.execute(
            f"SELECT {REPLAY_COLUMNS} FROM webhook_replays WHERE id = ?", (replay_id,)
        ).fetchone()
        return None if row is None else ReplayRow(**_named(REPLAY_COLUMNS, row))

    async def replay_step(
        self, limit: int, planner: Planner, now_ms: int, *, coalesce: bool
    ) -> ReplayRow | None:
        def work(db: sqlite3.Connection) -> ReplayRow | None:
            job = db.execute(
                "SELECT id FROM webhook_replays WHERE finished_at_ms IS NULL"
                " ORDER BY created_at_ms, id LIMIT 1"
            ).fetchone()
            if job is None:
                return None
            replay = self._replay(db, job[0])
            if replay is None:  # cannot happen inside this transaction
                return None
            endpoint = self._endpoint(db, replay.endpoint_id)
            rows = db.execute(
                f"SELECT {LEDGER_COLUMNS}, record_seq, flushed_at_ms FROM ledger"
                " WHERE record_seq > ? AND record_seq <= ? ORDER BY record_seq LIMIT ?",
                (replay.cursor_seq, replay.until_seq, limit),
            ).fetchall()
            cursor, written = replay.cursor_seq, 0
            if rows and endpoint is not None:
                events = [recorded_of(r) for r in rows]
                states = self._states_as_of(db, events, replay.cursor_seq)
                messages = planner(
                    events, states, [endpoint], replay=True, since_ms=replay.since_ms
                )
                written, _ = self._insert(db, messages, now_ms, coalesce, replay=True)
                cursor = events[-1].record_seq
            finished = len(rows) < limit or cursor >= replay.until_seq
            db.execute(
                "UPDATE webhook_replays SET cursor_seq = ?, messages = messages + ?,"
                " finished_at_ms = ? WHERE id = ?",
                (cursor, written, now_ms if finished else None, replay.id),
            )
            return self._replay(db, replay.id)

        return await self._write(work)

    async def replay(self, replay_id: str) -> ReplayRow | None:
        return await self._read(lambda db: self._replay(db, replay_id))

    # -- the delivery worker ------------------------------------------------------------

    async def claim(
        self,
        now_ms: int,
        limit: int,
        *,
        per_endpoint: int,
        exclude: Sequence[str],
        lease_ms: int,
        owner: str,
    ) -> list[Claimed]:
        if limit <= 0:
            return []

        def work(db: sqlite3.Connection) -> list[Claimed]:
            params = {
                "now": now_ms,
                "exclude": _json(exclude),
                "per_endpoint": per_endpoint,
                "limit": limit,
            }
            ids = [row[0] for row in db.execute(CLAIMABLE, params)]
            if not ids:
                return []
            db.executemany(
                "UPDATE webhook_messages SET lease_owner = ?, lease_until_ms = ? WHERE id = ?",
                [(owner, now_ms + lease_ms, i) for i in ids],
            )
            claimed = []
            for r in db.execute(CLAIMED, (_json(ids),)):
                endpoint = endpoint_of(r, "e_")
                claimed.append(
                    Claimed(
                        id=r["id"],
                        endpoint_id=r["endpoint_id"],
                        type=r["type"],
                        record_seq=r["record_seq"],
                        payload=r["payload"],
                        attempts=r["attempts"],
                        url=endpoint.url,
                        secrets=endpoint.signing_secrets(now_ms),
                        throttle_ms=endpoint.throttle_ms,
                        coalesce_key=r["coalesce_key"],
                        created_at_ms=r["created_at_ms"],
                        recorded_at_ms=r["recorded_at_ms"],
                    )
                )
            return claimed

        return await self._write(work)

    async def finish(
        self,
        results: Sequence[AttemptResult],
        owner: str,
        now_ms: int,
        *,
        disable_after_ms: int,
        coalesce: bool,
    ) -> None:
        if not results:
            return

        def work(db: sqlite3.Connection) -> None:
            # An endpoint deleted while its attempts were in flight takes them with it.
            kept = {
                row[0]
                for row in db.execute(
                    "SELECT id FROM webhook_endpoints WHERE id IN (SELECT value FROM json_each(?))",
                    (_json(sorted({r.endpoint_id for r in results})),),
                )
            }
            ordered = sorted(
                (r for r in results if r.endpoint_id in kept),
                key=lambda r: (r.attempted_at_ms, r.message_id),
            )
            db.executemany(
                "INSERT INTO webhook_attempts (message_id, endpoint_id, type, record_seq,"
                " attempt, attempted_at_ms, status_code, latency_ms, outcome, error,"
                " next_attempt_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.message_id, r.endpoint_id, r.type, r.record_seq, r.attempt,
                     r.attempted_at_ms, r.status_code, r.latency_ms, r.outcome, r.error,
                     r.next_attempt_at_ms)
                    for r in ordered
                ],
            )  # fmt: skip
            for group in effects_by_endpoint(ordered):
                for r in group:
                    self._endpoint_effect(db, r, now_ms, disable_after_ms)
            db.executemany(
                DELIVERED_SQL, [(r.attempt, now_ms, r.message_id) for r in ordered if r.delivered]
            )
            for r in ordered:
                if not r.delivered:
                    self._message_after(db, r, owner, now_ms, coalesce)

        await self._write(work)

    @staticmethod
    def _message_after(
        db: sqlite3.Connection, r: AttemptResult, owner: str, now_ms: int, coalesce: bool
    ) -> None:
        status = next_status(r)
        if status == FAILED:
            db.execute(FAILED_SQL, (r.attempt, now_ms, r.error, r.message_id, owner))
        else:
            if coalesce and r.coalescible:
                newer = db.execute(NEWER_PENDING, (r.message_id, owner)).fetchone()
                if newer is not None:
                    db.execute(COALESCE_RETRY, (r.attempt, now_ms, r.error, newer[0], r.message_id))
                    return
            db.execute(RETRY_SQL, (r.attempt, r.next_attempt_at_ms, r.error, r.message_id, owner))

    @staticmethod
    def _endpoint_effect(
        db: sqlite3.Connection, r: AttemptResult, now_ms: int, disable_after_ms: int
    ) -> None:
        if r.effect == "success":
            db.execute(ENDPOINT_SUCCESS, (r.endpoint_id,))
            return
        db.execute(
            ENDPOINT_FAILURE, (r.attempted_at_ms, r.pause_until_ms, r.throttle_ms, r.endpoint_id)
        )
        reason = "gone" if r.effect == "gone" else "failing"
        db.execute(
            ENDPOINT_DISABLE,
            (reason, now_ms, now_ms, r.endpoint_id, reason, now_ms - disable_after_ms),
        )

    async def release(self, message_ids: Sequence[str], owner: str) -> None:
        if not message_ids:
            return

        def work(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE webhook_messages SET lease_owner = NULL, lease_until_ms = NULL"
                " WHERE id = ? AND lease_owner = ?",
                [(i, owner) for i in message_ids],
            )

        await self._write(work)

    # -- reads ------------------------------------------------------------------------------

    async def attempts(
        self, endpoint_id: str, before_id: int | None, limit: int
    ) -> list[AttemptRow]:
        def work(db: sqlite3.Connection) -> list[AttemptRow]:
            rows = db.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts"
                " WHERE endpoint_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (endpoint_id, before_id if before_id is not None else 2**62, limit),
            )
            return [AttemptRow(**_named(ATTEMPT_COLUMNS, r)) for r in rows]

        return await self._read(work)

    async def messages(self, endpoint_id: str | None = None) -> list[MessageRow]:
        def work(db: sqlite3.Connection) -> list[MessageRow]:
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM webhook_messages"
                " WHERE ? IS NULL OR endpoint_id = ? ORDER BY record_seq, type, endpoint_id",
                (endpoint_id, endpoint_id),
            )
            return [MessageRow(**_named(MESSAGE_COLUMNS, r)) for r in rows]

        return await self._read(work)

    async def backlog(self) -> Backlog:
        def work(db: sqlite3.Connection) -> Backlog:
            row = db.execute(
                "SELECT count(*), min(m.recorded_at_ms) FROM webhook_messages m"
                " JOIN webhook_endpoints e ON e.id = m.endpoint_id"
                " WHERE m.status = 'pending' AND e.disabled = 0"
            ).fetchone()
            behind = db.execute(
                "SELECT count(*) FROM ledger WHERE record_seq >"
                " (SELECT cursor_seq FROM webhook_dispatch WHERE id = 1)"
            ).fetchone()
            return Backlog(int(row[0]), row[1], int(behind[0]))

        return await self._read(work)

    async def newest_record_seq(self) -> int:
        return await self._read(lambda db: int(db.execute(NEWEST_SEQ).fetchone()[0]))

    async def prune(self, finished_before_ms: int, requests_before_ms: int, limit: int) -> int:
        limit = min(limit, IDS_PER_QUERY_MAX * 10)

        def work(db: sqlite3.Connection) -> int:
            done = db.execute(
                "DELETE FROM webhook_messages WHERE id IN (SELECT id FROM webhook_messages"
                " WHERE status <> 'pending' AND finished_at_ms < ? LIMIT ?)",
                (finished_before_ms, limit),
            ).rowcount
            done += db.execute(
                "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts"
                " WHERE attempted_at_ms < ? ORDER BY id LIMIT ?)",
                (finished_before_ms, limit),
            ).rowcount
            done += db.execute(
                "DELETE FROM webhook_replays WHERE finished_at_ms < ?", (finished_before_ms,)
            ).rowcount
            done += db.execute(
                "DELETE FROM webhook_requests WHERE key IN (SELECT key FROM webhook_requests"
                " WHERE created_at_ms < ? LIMIT ?)",
                (requests_before_ms, limit),
            ).rowcount
            return done

        return await self._write(work)

    # -- Idempotency-Key of the POSTs -------------------------------------------------

    async def stored_response(self, key: str) -> StoredResponse | None:
        def work(db: sqlite3.Connection) -> StoredResponse | None:
            row = db.execute(
                "SELECT fingerprint, status, body FROM webhook_requests WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else StoredResponse(row[0], row[1], row[2])

        return await self._read(work)

    async def store_response(self, key: str, response: StoredResponse, now_ms: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO webhook_requests VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key, response.fingerprint, response.status, response.body, now_ms),
            )

        await self._write(work)
