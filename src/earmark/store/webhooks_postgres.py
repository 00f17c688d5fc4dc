"""The webhook tables in PostgreSQL, on the ledger's asyncpg pool (``store.webhooks``).

Concurrency: the dispatcher's cursor row is locked ``FOR UPDATE`` for the length of a
dispatch, so two dispatchers take turns and no ledger row is planned twice. Workers
claim messages with ``FOR UPDATE SKIP LOCKED`` and a lease, so two workers never send
the same message at once, and a message whose worker died is claimed again once its
lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from earmark.store.events import BUCKETS
from earmark.store.postgres import LEDGER_COLUMNS, PostgresLedger, event_of, to_ms
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

if TYPE_CHECKING:
    from earmark.store.postgres import Conn

ENDPOINT_COLUMNS = (
    "id, url, events, description, secret, previous_secret, previous_secret_expires_at_ms, "
    "disabled, disabled_reason, disabled_at_ms, start_seq, failing_since_ms, "
    "paused_until_ms, throttle_ms, created_at_ms, updated_at_ms"
)
MESSAGE_COLUMNS = (
    "id, endpoint_id, type, record_seq, event_id, payload, status, attempts, "
    "next_attempt_at_ms, superseded_by, recorded_at_ms, created_at_ms, finished_at_ms"
)
REPLAY_COLUMNS = (
    "id, endpoint_id, after_seq, until_seq, since_ms, cursor_seq, messages, created_at_ms, "
    "finished_at_ms"
)
ATTEMPT_COLUMNS = (
    "id, message_id, type, record_seq, attempt, attempted_at_ms, status_code, latency_ms, "
    "outcome, error, next_attempt_at_ms"
)
NEWEST_SEQ = "SELECT coalesce(max(record_seq), 0) FROM ledger"
INSERT_MESSAGES = """
INSERT INTO webhook_messages (id, endpoint_id, type, record_seq, event_id, coalesce_key,
  stock_seq, payload, attempts, next_attempt_at_ms, recorded_at_ms, created_at_ms)
SELECT u.*, $12::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
  $5::text[], $6::text[], $7::bigint[], $8::text[], $9::int[], $10::bigint[], $11::bigint[])
  AS u ORDER BY 1
ON CONFLICT (id) DO {conflict}
"""
# A replay sends a message again (same id, same body) unless it is still on its way.
REPLAY_CONFLICT = """UPDATE SET status = 'pending', attempts = excluded.attempts,
  next_attempt_at_ms = excluded.next_attempt_at_ms, lease_owner = NULL,
  lease_until_ms = NULL, superseded_by = NULL, finished_at_ms = NULL
  WHERE webhook_messages.status <> 'pending'"""
PENDING_BY_KEY = """
SELECT m.id, m.endpoint_id, m.coalesce_key, m.stock_seq, m.attempts, m.next_attempt_at_ms
FROM webhook_messages m
JOIN unnest($1::text[], $2::text[]) AS k(endpoint_id, coalesce_key)
  ON m.endpoint_id = k.endpoint_id AND m.coalesce_key = k.coalesce_key
WHERE m.status = 'pending' AND (m.lease_until_ms IS NULL OR m.lease_until_ms <= $3)
ORDER BY m.id
FOR UPDATE OF m SKIP LOCKED
"""
SUPERSEDE = """
UPDATE webhook_messages AS m SET status = 'coalesced', superseded_by = u.new_id,
  finished_at_ms = $3, lease_owner = NULL, lease_until_ms = NULL
FROM unnest($1::text[], $2::text[]) AS u(old_id, new_id)
WHERE m.id = u.old_id AND m.status = 'pending'
"""
_bucket_sums = ", ".join(f"coalesce(sum((l.deltas->>'{b}')::bigint), 0) AS {b}" for b in BUCKETS)
# A (sku, location) as of record_seq $1: the sum of every delta recorded up to there.
STOCK_AS_OF = f"""
SELECT l.sku, l.location, {_bucket_sums},
  count(*) FILTER (WHERE l.deltas <> '{{}}'::jsonb) AS version
FROM ledger l JOIN unnest($2::text[], $3::text[]) AS k(sku, location)
  ON l.sku = k.sku AND l.location = k.location
WHERE l.record_seq <= $1
GROUP BY l.sku, l.location
"""
_n = len(BUCKETS) + 3
SAVE_STOCK = f"""
INSERT INTO webhook_stock (sku, location, {", ".join(BUCKETS)}, version)
SELECT * FROM unnest($1::text[], $2::text[],
  {", ".join(f"${i + 3}::bigint[]" for i in range(len(BUCKETS)))}, ${_n}::bigint[])
ON CONFLICT (sku, location) DO UPDATE SET
  {", ".join(f"{b} = excluded.{b}" for b in BUCKETS)}, version = excluded.version
"""
CLAIM = f"""
WITH picked AS (
  SELECT m.id FROM webhook_endpoints e
  CROSS JOIN LATERAL (
    SELECT id, next_attempt_at_ms, record_seq FROM webhook_messages
    WHERE endpoint_id = e.id AND status = 'pending' AND next_attempt_at_ms <= $1
      AND (lease_until_ms IS NULL OR lease_until_ms <= $1)
    ORDER BY next_attempt_at_ms, record_seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED) AS m
  WHERE NOT e.disabled AND e.paused_until_ms <= $1 AND NOT (e.id = ANY($3::text[]))
  ORDER BY m.next_attempt_at_ms, m.record_seq
  LIMIT $4)
UPDATE webhook_messages AS w SET lease_owner = $5, lease_until_ms = $6
FROM picked, webhook_endpoints AS e
WHERE w.id = picked.id AND e.id = w.endpoint_id
RETURNING w.id, w.endpoint_id, w.type, w.record_seq, w.payload, w.attempts,
  w.coalesce_key, w.created_at_ms, w.recorded_at_ms, w.next_attempt_at_ms,
  {", ".join(f"e.{c} AS e_{c}" for c in ENDPOINT_COLUMNS.split(", "))}
"""
INSERT_ATTEMPTS = """
INSERT INTO webhook_attempts (message_id, endpoint_id, type, record_seq, attempt,
  attempted_at_ms, status_code, latency_ms, outcome, error, next_attempt_at_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[],
  $6::bigint[], $7::int[], $8::int[], $9::text[], $10::text[], $11::bigint[])
"""
DELIVERED_SQL = """
UPDATE webhook_messages AS m SET status = 'delivered', attempts = u.attempt,
  finished_at_ms = $3, lease_owner = NULL, lease_until_ms = NULL, last_error = NULL
FROM unnest($1::text[], $2::int[]) AS u(id, attempt)
WHERE m.id = u.id AND m.status = 'pending'
"""
# A newer pending state of the same (endpoint, sku, location) replaces a failed one.
COALESCE_RETRY = """
UPDATE webhook_messages AS m SET status = 'coalesced', attempts = $2, finished_at_ms = $3,
  lease_owner = NULL, lease_until_ms = NULL, last_error = $4, superseded_by = (
    SELECT n.id FROM webhook_messages n WHERE n.endpoint_id = m.endpoint_id
      AND n.coalesce_key = m.coalesce_key AND n.status = 'pending' AND n.stock_seq > m.stock_seq
    ORDER BY n.stock_seq DESC LIMIT 1)
WHERE m.id = $1 AND m.status = 'pending' AND m.lease_owner = $5 AND m.coalesce_key IS NOT NULL
  AND EXISTS (SELECT 1 FROM webhook_messages n WHERE n.endpoint_id = m.endpoint_id
      AND n.coalesce_key = m.coalesce_key AND n.status = 'pending' AND n.stock_seq > m.stock_seq)
"""
RETRY_SQL = """
UPDATE webhook_messages SET attempts = $2, next_attempt_at_ms = $3, last_error = $4,
  lease_owner = NULL, lease_until_ms = NULL
WHERE id = $1 AND status = 'pending' AND lease_owner = $5
"""
FAILED_SQL = """
UPDATE webhook_messages SET status = 'failed', attempts = $2, finished_at_ms = $3,
  last_error = $4, lease_owner = NULL, lease_until_ms = NULL
WHERE id = $1 AND status = 'pending' AND lease_owner = $5
"""
ENDPOINT_SUCCESS = """
UPDATE webhook_endpoints SET failing_since_ms = NULL, throttle_ms = 0
WHERE id = $1 AND (failing_since_ms IS NOT NULL OR throttle_ms <> 0)
"""
ENDPOINT_FAILURE = """
UPDATE webhook_endpoints SET failing_since_ms = coalesce(failing_since_ms, $2),
  paused_until_ms = greatest(paused_until_ms, $3), throttle_ms = greatest(throttle_ms, $4)
WHERE id = $1
"""
ENDPOINT_DISABLE = """
UPDATE webhook_endpoints SET disabled = true, disabled_reason = $2, disabled_at_ms = $3,
  disabled_notified = false, updated_at_ms = $3
WHERE id = $1 AND NOT disabled AND ($2 <> 'failing' OR failing_since_ms <= $4)
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


def replay_of(row: Any) -> ReplayRow:
    return ReplayRow(**{name: row[name] for name in REPLAY_COLUMNS.split(", ")})


def message_of(row: Any) -> MessageRow:
    return MessageRow(**{name: row[name] for name in MESSAGE_COLUMNS.split(", ")})


def attempt_of(row: Any) -> AttemptRow:
    return AttemptRow(**{name: row[name] for name in ATTEMPT_COLUMNS.split(", ")})


def recorded_of(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(event_of(row), int(row["record_seq"]), to_ms(row["flushed_at"]) or 0)


class PostgresWebhooks:
    """The ``WebhookStore`` on the ledger's PostgreSQL pool."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self.ledger = ledger

    # -- endpoints ------------------------------------------------------------------------

    async def create_endpoint(self, new: NewEndpoint, now_ms: int) -> EndpointRow:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                "INSERT INTO webhook_endpoints (id, url, events, description, secret,"
                " start_seq, created_at_ms, updated_at_ms)"
                f" VALUES ($1, $2, $3::jsonb, $4, $5, ({NEWEST_SEQ}), $6, $6)"
                f" RETURNING {ENDPOINT_COLUMNS}",
                new.id,
                new.url,
                orjson.dumps(list(new.events)).decode(),
                new.description,
                new.secret,
                now_ms,
            )
        return endpoint_of(row)

    async def endpoint(self, endpoint_id: str) -> EndpointRow | None:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1", endpoint_id
            )
        return None if row is None else endpoint_of(row)

    async def endpoints(self) -> list[EndpointRow]:
        async with self.ledger.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at_ms, id"
            )
        return [endpoint_of(r) for r in rows]

    async def endpoint_count(self) -> int:
        async with self.ledger.connection() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM webhook_endpoints"))

    async def update_endpoint(
        self, endpoint_id: str, changes: EndpointChanges, now_ms: int
    ) -> EndpointRow | None:
        sets, params = ["updated_at_ms = $2"], [endpoint_id, now_ms]

        def put(clause: str, value: Any) -> None:
            params.append(value)
            sets.append(clause.format(f"${len(params)}"))

        if changes.url is not None:
            put("url = {}", changes.url)
        if changes.events is not None:
            put("events = {}::jsonb", orjson.dumps(list(changes.events)).decode())
        if changes.description is not None:
            put("description = {}", changes.description)
        if changes.disabled is True:
            sets.append(
                "disabled_reason = CASE WHEN disabled THEN disabled_reason ELSE 'operator' END,"
                " disabled_at_ms = CASE WHEN disabled THEN disabled_at_ms ELSE $2 END,"
                " disabled_notified = disabled, disabled = true"
            )
        elif changes.disabled is False:
            sets.append(
                "disabled = false, disabled_reason = NULL, disabled_at_ms = NULL,"
                " disabled_notified = true, failing_since_ms = NULL, paused_until_ms = 0,"
                " throttle_ms = 0"
            )
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = $1"
                f" RETURNING {ENDPOINT_COLUMNS}",
                *params,
            )
        return None if row is None else endpoint_of(row)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        async with self.ledger.connection() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id", endpoint_id
            )
        return deleted is not None

    async def rotate_secret(
        self, endpoint_id: str, secret: str, previous_expires_at_ms: int, now_ms: int
    ) -> EndpointRow | None:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,"
                " previous_secret_expires_at_ms = $3, updated_at_ms = $4 WHERE id = $1"
                f" RETURNING {ENDPOINT_COLUMNS}",
                endpoint_id,
                secret,
                previous_expires_at_ms,
                now_ms,
            )
        return None if row is None else endpoint_of(row)

    # -- the dispatcher -------------------------------------------------------------------

    async def dispatch(
        self, limit: int, planner: Planner, now_ms: int, *, coalesce: bool
    ) -> DispatchReport:
        async with self.ledger.connection() as conn, conn.transaction():
            cursor = await conn.fetchval(
                "SELECT cursor_seq FROM webhook_dispatch WHERE id = 1 FOR UPDATE"
            )
            rows = await conn.fetch(
                f"SELECT {LEDGER_COLUMNS}, record_seq, flushed_at FROM ledger"
                " WHERE record_seq > $1 ORDER BY record_seq LIMIT $2",
                cursor,
                limit,
            )
            if not rows:
                return DispatchReport()
            events = [recorded_of(r) for r in rows]
            states = await self._saved_states(conn, events)
            endpoints = await self._enabled(conn)
            messages = planner(events, states, endpoints)
            written, dropped = await self._write(conn, messages, now_ms, coalesce, replay=False)
            columns = list(zip(*stock_rows(states), strict=True))
            await conn.execute(SAVE_STOCK, *[list(c) for c in columns])
            await conn.execute(
                "UPDATE webhook_dispatch SET cursor_seq = $1, updated_at_ms = $2 WHERE id = 1",
                events[-1].record_seq,
                now_ms,
            )
        return DispatchReport(len(events), written, dropped)

    @staticmethod
    def _keys(events: Sequence[RecordedEvent]) -> list[StockKey]:
        return sorted({(e.event.sku, e.event.location) for e in events})

    async def _saved_states(
        self, conn: Conn, events: Sequence[RecordedEvent]
    ) -> dict[StockKey, StockState]:
        keys = self._keys(events)
        rows = await conn.fetch(
            "SELECT w.* FROM webhook_stock w JOIN unnest($1::text[], $2::text[]) AS"
            " k(sku, location) ON w.sku = k.sku AND w.location = k.location",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        states = {key: StockState() for key in keys}
        states.update({(r["sku"], r["location"]): state_of(r) for r in rows})
        return states

    async def _states_as_of(
        self, conn: Conn, events: Sequence[RecordedEvent], record_seq: int
    ) -> dict[StockKey, StockState]:
        keys = self._keys(events)
        rows = await conn.fetch(STOCK_AS_OF, record_seq, [k[0] for k in keys], [k[1] for k in keys])
        states = {key: StockState() for key in keys}
        states.update({(r["sku"], r["location"]): state_of(r) for r in rows})
        return states

    @staticmethod
    async def _enabled(conn: Conn) -> list[EndpointRow]:
        """Locked FOR KEY SHARE until the commit: an endpoint deleted meanwhile waits, so
        no message is written for a row that is gone."""
        rows = await conn.fetch(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE NOT disabled ORDER BY id"
            " FOR KEY SHARE"
        )
        return [endpoint_of(r) for r in rows]

    async def _write(
        self,
        conn: Conn,
        messages: Sequence[NewMessage],
        now_ms: int,
        enabled: bool,
        *,
        replay: bool,
    ) -> tuple[int, int]:
        """Coalesces, supersedes and inserts; returns (written, coalesced away)."""
        if not messages:
            return 0, 0
        keyed = sorted({(m.endpoint_id, m.coalesce_key) for m in messages if m.coalesce_key})
        pending: list[PendingKeyed] = []
        if enabled and keyed:
            rows = await conn.fetch(
                PENDING_BY_KEY, [k[0] for k in keyed], [k[1] for k in keyed], now_ms
            )
            pending = [PendingKeyed(**dict(r)) for r in rows]
        plan = coalesce(messages, pending, now_ms, enabled=enabled)
        if plan.superseded:
            await conn.execute(
                SUPERSEDE,
                [old for old, _ in plan.superseded],
                [new for _, new in plan.superseded],
                now_ms,
            )
        if plan.insert:
            ms = [m for m, _, _ in plan.insert]
            conflict = REPLAY_CONFLICT if replay else "NOTHING"
            await conn.execute(
                INSERT_MESSAGES.format(conflict=conflict),
                [m.id for m in ms],
                [m.endpoint_id for m in ms],
                [m.type for m in ms],
                [m.record_seq for m in ms],
                [m.event_id for m in ms],
                [m.coalesce_key for m in ms],
                [m.stock_seq for m in ms],
                [m.payload for m in ms],
                [attempts for _, attempts, _ in plan.insert],
                [due for _, _, due in plan.insert],
                [m.recorded_at_ms for m in ms],
                now_ms,
            )
        return len(plan.insert), plan.dropped + len(plan.superseded)

    async def notify_disabled(self, planner: DisabledPlanner, now_ms: int) -> int:
        async with self.ledger.connection() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
                " WHERE NOT disabled_notified ORDER BY id FOR UPDATE SKIP LOCKED"
            )
            if not rows:
                return 0
            disabled = [endpoint_of(r) for r in rows]
            messages = planner(disabled, await self._enabled(conn), now_ms)
            await self._write(conn, messages, now_ms, False, replay=False)
            await conn.execute(
                "UPDATE webhook_endpoints SET disabled_notified = true WHERE id = ANY($1)",
                [e.id for e in disabled],
            )
        return len(disabled)

    async def create_replay(
        self,
        replay_id: str,
        endpoint_id: str,
        after_seq: int,
        since_ms: int | None,
        now_ms: int,
    ) -> ReplayRow | None:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                "INSERT INTO webhook_replays (id, endpoint_id, after_seq, until_seq, since_ms,"
                f" cursor_seq, created_at_ms) SELECT $1, id, $3, ({NEWEST_SEQ}), $4, $3, $5"
                f" FROM webhook_endpoints WHERE id = $2 RETURNING {REPLAY_COLUMNS}",
                replay_id,
                endpoint_id,
                after_seq,
                since_ms,
                now_ms,
            )
        return None if row is None else replay_of(row)

    async def replay_step(
        self, limit: int, planner: Planner, now_ms: int, *, coalesce: bool
    ) -> ReplayRow | None:
        async with self.ledger.connection() as conn, conn.transaction():
            job = await conn.fetchrow(
                f"SELECT {REPLAY_COLUMNS} FROM webhook_replays WHERE finished_at_ms IS NULL"
                " ORDER BY created_at_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            if job is None:
                return None
            replay = replay_of(job)
            endpoint = await conn.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 FOR KEY SHARE",
                replay.endpoint_id,
            )
            rows = await conn.fetch(
                f"SELECT {LEDGER_COLUMNS}, record_seq, flushed_at FROM ledger"
                " WHERE record_seq > $1 AND record_seq <= $2 ORDER BY record_seq LIMIT $3",
                replay.cursor_seq,
                replay.until_seq,
                limit,
            )
            cursor, written = replay.cursor_seq, 0
            if rows and endpoint is not None:
                events = [recorded_of(r) for r in rows]
                states = await self._states_as_of(conn, events, replay.cursor_seq)
                messages = planner(
                    events, states, [endpoint_of(endpoint)], replay=True, since_ms=replay.since_ms
                )
                written, _ = await self._write(conn, messages, now_ms, coalesce, replay=True)
                cursor = events[-1].record_seq
            finished = len(rows) < limit or cursor >= replay.until_seq
            row = await conn.fetchrow(
                "UPDATE webhook_replays SET cursor_seq = $2, messages = messages + $3,"
                " finished_at_ms = $4 WHERE id = $1"
                f" RETURNING {REPLAY_COLUMNS}",
                replay.id,
                cursor,
                written,
                now_ms if finished else None,
            )
        return replay_of(row)

    async def replay(self, replay_id: str) -> ReplayRow | None:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {REPLAY_COLUMNS} FROM webhook_replays WHERE id = $1", replay_id
            )
        return None if row is None else replay_of(row)

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
        async with self.ledger.connection() as conn, conn.transaction():
            rows = await conn.fetch(
                CLAIM, now_ms, per_endpoint, list(exclude), limit, owner, now_ms + lease_ms
            )
        claimed = []
        for r in sorted(rows, key=lambda r: (r["next_attempt_at_ms"], r["record_seq"])):
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
        async with self.ledger.connection() as conn, conn.transaction():
            # An endpoint deleted while its attempts were in flight takes them with it.
            present = await conn.fetch(
                "SELECT id FROM webhook_endpoints WHERE id = ANY($1) ORDER BY id FOR KEY SHARE",
                sorted({r.endpoint_id for r in results}),
            )
            kept = {r["id"] for r in present}
            ordered = sorted(
                (r for r in results if r.endpoint_id in kept),
                key=lambda r: (r.attempted_at_ms, r.message_id),
            )
            if not ordered:
                return
            await conn.execute(
                INSERT_ATTEMPTS,
                [r.message_id for r in ordered],
                [r.endpoint_id for r in ordered],
                [r.type for r in ordered],
                [r.record_seq for r in ordered],
                [r.attempt for r in ordered],
                [r.attempted_at_ms for r in ordered],
                [r.status_code for r in ordered],
                [r.latency_ms for r in ordered],
                [r.outcome for r in ordered],
                [r.error for r in ordered],
                [r.next_attempt_at_ms for r in ordered],
            )
            # Endpoint rows first, in id order (one lock order for concurrent workers).
            for group in effects_by_endpoint(ordered):
                for result in group:
                    await self._endpoint_effect(conn, result, now_ms, disable_after_ms)
            delivered = sorted((r for r in ordered if r.delivered), key=lambda r: r.message_id)
            if delivered:
                await conn.execute(
                    DELIVERED_SQL,
                    [r.message_id for r in delivered],
                    [r.attempt for r in delivered],
                    now_ms,
                )
            for result in sorted(ordered, key=lambda r: r.message_id):
                if not result.delivered:
                    await self._message_after(conn, result, owner, now_ms, coalesce)

    @staticmethod
    async def _message_after(
        conn: Conn, r: AttemptResult, owner: str, now_ms: int, coalesce: bool
    ) -> None:
        status = next_status(r)
        if status == FAILED:
            await conn.execute(FAILED_SQL, r.message_id, r.attempt, now_ms, r.error, owner)
        else:
            if coalesce and r.coalescible:
                done = await conn.execute(
                    COALESCE_RETRY, r.message_id, r.attempt, now_ms, r.error, owner
                )
                if done != "UPDATE 0":
                    return
            await conn.execute(
                RETRY_SQL, r.message_id, r.attempt, r.next_attempt_at_ms, r.error, owner
            )

    @staticmethod
    async def _endpoint_effect(
        conn: Conn, r: AttemptResult, now_ms: int, disable_after_ms: int
    ) -> None:
        if r.effect == "success":
            await conn.execute(ENDPOINT_SUCCESS, r.endpoint_id)
            return
        await conn.execute(
            ENDPOINT_FAILURE, r.endpoint_id, r.attempted_at_ms, r.pause_until_ms, r.throttle_ms
        )
        reason = "gone" if r.effect == "gone" else "failing"
        await conn.execute(
            ENDPOINT_DISABLE, r.endpoint_id, reason, now_ms, now_ms - disable_after_ms
        )

    async def release(self, message_ids: Sequence[str], owner: str) -> None:
        if not message_ids:
            return
        async with self.ledger.connection() as conn:
            await conn.execute(
                "UPDATE webhook_messages SET lease_owner = NULL, lease_until_ms = NULL"
                " WHERE id = ANY($1) AND lease_owner = $2",
                list(message_ids),
                owner,
            )

    # -- reads ------------------------------------------------------------------------------

    async def attempts(
        self, endpoint_id: str, before_id: int | None, limit: int
    ) -> list[AttemptRow]:
        async with self.ledger.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts"
                " WHERE endpoint_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                endpoint_id,
                before_id if before_id is not None else 2**62,
                limit,
            )
        return [attempt_of(r) for r in rows]

    async def messages(self, endpoint_id: str | None = None) -> list[MessageRow]:
        async with self.ledger.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM webhook_messages"
                " WHERE $1::text IS NULL OR endpoint_id = $1"
                " ORDER BY record_seq, type, endpoint_id",
                endpoint_id,
            )
        return [message_of(r) for r in rows]

    async def backlog(self) -> Backlog:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, min(m.recorded_at_ms) AS oldest FROM webhook_messages m"
                " JOIN webhook_endpoints e ON e.id = m.endpoint_id"
                " WHERE m.status = 'pending' AND NOT e.disabled"
            )
            behind = await conn.fetchval(
                "SELECT count(*) FROM ledger WHERE record_seq >"
                " (SELECT cursor_seq FROM webhook_dispatch WHERE id = 1)"
            )
        if row is None:  # an aggregate always answers one row
            return Backlog(0, None, int(behind))
        return Backlog(int(row["n"]), row["oldest"], int(behind))

    async def newest_record_seq(self) -> int:
        async with self.ledger.connection() as conn:
            return int(await conn.fetchval(NEWEST_SEQ))

    async def prune(self, finished_before_ms: int, requests_before_ms: int, limit: int) -> int:
        async with self.ledger.connection() as conn, conn.transaction():
            messages = await conn.execute(
                "DELETE FROM webhook_messages WHERE id IN (SELECT id FROM webhook_messages"
                " WHERE status <> 'pending' AND finished_at_ms < $1 LIMIT $2)",
                finished_before_ms,
                limit,
            )
            attempts = await conn.execute(
                "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts"
                " WHERE attempted_at_ms < $1 ORDER BY id LIMIT $2)",
                finished_before_ms,
                limit,
            )
            replays = await conn.execute(
                "DELETE FROM webhook_replays WHERE finished_at_ms < $1", finished_before_ms
            )
            requests = await conn.execute(
                "DELETE FROM webhook_requests WHERE key IN (SELECT key FROM webhook_requests"
                " WHERE created_at_ms < $1 LIMIT $2)",
                requests_before_ms,
                limit,
            )
        return sum(int(done.split()[-1]) for done in (messages, attempts, replays, requests))

    # -- Idempotency-Key of the POSTs -------------------------------------------------

    async def stored_response(self, key: str) -> StoredResponse | None:
        async with self.ledger.connection() as conn:
            row = await conn.fetchrow(
                "SELECT fingerprint, status, body FROM webhook_requests WHERE key = $1", key
            )
        return None if row is None else StoredResponse(row[0], row[1], row[2])

    async def store_response(self, key: str, response: StoredResponse, now_ms: int) -> None:
        async with self.ledger.connection() as conn:
            await conn.execute(
                "INSERT INTO webhook_requests VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                key,
                response.fingerprint,
                response.status,
                response.body,
                now_ms,
            )
