"""The webhook tables of the durable record (docs/webhooks.md), behind one interface.

The outbox is the ledger itself: the dispatcher reads ledger rows after its cursor on
``record_seq`` (the order the record learned them, commit order on both stores) and turns
them into messages in the same transaction as it advances the cursor, so a crash neither
loses nor duplicates a message. What a row becomes (types, payloads, which endpoints) is
decided by a ``Planner`` the caller passes in (``earmark.webhooks.planning``); what a
delivery attempt changes is decided by the worker (``earmark.webhooks.delivery``). The
stores here only decide how to read and write it, sharing the ledger's connection:
``webhook_store(ledger)``.

Every time is milliseconds since the epoch, from the caller's clock (tests inject one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from earmark.store.events import BUCKETS, Event
from earmark.store.ledger import Ledger

MessageStatus = Literal["pending", "delivered", "failed", "coalesced"]
# What an attempt does to its endpoint: a success clears the failure streak; a failure
# starts or extends it (5 days of it disable the endpoint); a throttle also pauses the
# endpoint (429, 502, 504, Retry-After); gone (410) disables it at once.
EndpointEffect = Literal["success", "failure", "throttle", "gone"]
StockKey = tuple[str, str]  # (sku, location)


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: str
    url: str
    events: tuple[str, ...]
    description: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at_ms: int | None
    disabled: bool
    disabled_reason: str | None
    disabled_at_ms: int | None
    start_seq: int  # receives the events recorded after this record_seq
    failing_since_ms: int | None
    paused_until_ms: int
    throttle_ms: int
    created_at_ms: int
    updated_at_ms: int

    def signing_secrets(self, now_ms: int) -> tuple[str, ...]:
        """The current secret, and the previous one while its grace period lasts."""
        previous = self.previous_secret
        expires = self.previous_secret_expires_at_ms
        if previous is not None and expires is not None and now_ms < expires:
            return (self.secret, previous)
        return (self.secret,)


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    id: str
    url: str
    events: tuple[str, ...]
    description: str
    secret: str


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """A PATCH: None leaves a field as it is."""

    url: str | None = None
    events: tuple[str, ...] | None = None
    description: str | None = None
    disabled: bool | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A ledger row as the dispatcher reads it: the event, its place in the order the
    record learned events, and when it was recorded."""

    event: Event
    record_seq: int
    recorded_at_ms: int


@dataclass(slots=True)
class StockState:
    """One (sku, location) as of some point of the record: every bucket and the version
    (events that changed a bucket), as ``stock_levels`` had it then."""

    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    version: int = 0

    @property
    def available(self) -> int:
        return self.buckets["on_hand"] - self.buckets["reserved"] - self.buckets["committed"]

    def apply(self, event: Event) -> None:
        """The state right after ``event`` (as ``store.folding.fold_stock`` counts it)."""
        for bucket, units in event.deltas.items():
            self.buckets[bucket] += units
        if event.deltas:
            self.version += 1

    def copy(self) -> StockState:
        return StockState(dict(self.buckets), self.version)


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: str  # the webhook-id: derived from endpoint, event and type (stable)
    endpoint_id: str
    type: str
    record_seq: int
    event_id: str | None
    payload: str
    recorded_at_ms: int
    coalesce_key: str | None = None  # stock.changed: "<sku> <location>"
    stock_seq: int | None = None  # stock.changed: the level's version after the event


class Planner(Protocol):
    """What a batch of ledger rows becomes (``earmark.webhooks.planning.plan``).
    ``states`` holds every (sku, location) of the batch as of just before it; the planner
    advances them through the batch (the store saves them after a live dispatch)."""

    def __call__(
        self,
        events: Sequence[RecordedEvent],
        states: dict[StockKey, StockState],
        endpoints: Sequence[EndpointRow],
        *,
        replay: bool = False,
        since_ms: int | None = None,
    ) -> list[NewMessage]: ...


class DisabledPlanner(Protocol):
    """The endpoint.disabled messages for endpoints just disabled (to the subscribers)."""

    def __call__(
        self, disabled: Sequence[EndpointRow], subscribers: Sequence[EndpointRow], now_ms: int
    ) -> list[NewMessage]: ...


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message leased to one worker, with what it needs to send it."""

    id: str
    endpoint_id: str
    type: str
    record_seq: int
    payload: str
    attempts: int  # attempts of its schedule so far
    url: str
    secrets: tuple[str, ...]
    throttle_ms: int
    coalesce_key: str | None
    created_at_ms: int
    recorded_at_ms: int


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt and what the worker decided it means."""

    message_id: str
    endpoint_id: str
    type: str
    record_seq: int
    attempt: int  # 1-based, within the message's schedule
    attempted_at_ms: int
    latency_ms: int
    outcome: str  # delivered, failed, timeout, throttled, gone, refused
    effect: EndpointEffect
    status_code: int | None = None
    error: str | None = None
    next_attempt_at_ms: int | None = None  # None with delivered: done; without: given up
    pause_until_ms: int = 0  # throttle: the endpoint sends nothing before this
    throttle_ms: int = 0  # throttle: the endpoint's next slow-down step
    coalescible: bool = False  # stock.changed: a newer pending one may replace the retry

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


@dataclass(frozen=True, slots=True)
class AttemptRow:
    id: int
    message_id: str
    type: str
    record_seq: int
    attempt: int
    attempted_at_ms: int
    status_code: int | None
    latency_ms: int
    outcome: str
    error: str | None
    next_attempt_at_ms: int | None


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    endpoint_id: str
    type: str
    record_seq: int
    event_id: str | None
    payload: str
    status: str
    attempts: int
    next_attempt_at_ms: int
    superseded_by: str | None
    recorded_at_ms: int
    created_at_ms: int
    finished_at_ms: int | None


@dataclass(frozen=True, slots=True)
class ReplayRow:
    id: str
    endpoint_id: str
    after_seq: int
    until_seq: int
    since_ms: int | None
    cursor_seq: int
    messages: int
    created_at_ms: int
    finished_at_ms: int | None


@dataclass(frozen=True, slots=True)
class DispatchReport:
    events: int = 0  # ledger rows read
    messages: int = 0  # messages written
    coalesced: int = 0  # stock.changed messages replaced by a newer one


@dataclass(frozen=True, slots=True)
class Backlog:
    messages: int  # pending on enabled endpoints
    oldest_recorded_at_ms: int | None  # when the record learned the oldest of them
    dispatch_behind: int  # ledger rows the dispatcher has not read yet


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first response to a POST with an Idempotency-Key."""

    fingerprint: str
    status: int
    body: str


class WebhookStore(Protocol):
    """The webhook tables. Every method may raise ``LedgerUnavailable`` (retry later)."""

    # -- endpoints ------------------------------------------------------------------------
    async def create_endpoint(self, new: NewEndpoint, now_ms: int) -> EndpointRow:
        """Its ``start_seq`` is the newest record_seq now: it hears of what comes next."""
        ...

    async def endpoint(self, endpoint_id: str) -> EndpointRow | None: ...

    async def endpoints(self) -> list[EndpointRow]: ...

    async def endpoint_count(self) -> int: ...

    async def update_endpoint(
        self, endpoint_id: str, changes: EndpointChanges, now_ms: int
    ) -> EndpointRow | None:
        """Disabling records reason ``operator`` (and endpoint.disabled is emitted);
        enabling clears the failure streak and any slow-down."""
        ...

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """With its messages, attempts and replays."""
        ...

    async def rotate_secret(
        self, endpoint_id: str, secret: str, previous_expires_at_ms: int, now_ms: int
    ) -> EndpointRow | None:
        """The current secret becomes the previous one, signing until the given time."""
        ...

    # -- the dispatcher -------------------------------------------------------------------
    async def dispatch(
        self, limit: int, planner: Planner, now_ms: int, *, coalesce: bool
    ) -> DispatchReport:
        """In one transaction: the next ``limit`` ledger rows after the cursor become
        messages for the enabled endpoints; the stock states and the cursor advance."""
        ...

    async def notify_disabled(self, planner: DisabledPlanner, now_ms: int) -> int:
        """endpoint.disabled for every endpoint disabled since the last call; returns
        how many endpoints were announced."""
        ...

    async def create_replay(
        self,
        replay_id: str,
        endpoint_id: str,
        after_seq: int,
        since_ms: int | None,
        now_ms: int,
    ) -> ReplayRow | None:
        """A replay of (after_seq, newest record_seq now]; None: no such endpoint."""
        ...

    async def replay_step(
        self, limit: int, planner: Planner, now_ms: int, *, coalesce: bool
    ) -> ReplayRow | None:
        """One chunk of the oldest unfinished replay, in one transaction; None: none."""
        ...

    async def replay(self, replay_id: str) -> ReplayRow | None: ...

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
        """Leases up to ``limit`` due messages (at most ``per_endpoint`` of each endpoint,
        none of ``exclude``) of enabled endpoints that are not paused, oldest due first.
        A lease that runs out makes the message due again: a worker that died loses
        nothing, and the next one sends it again with the same id."""
        ...

    async def finish(
        self,
        results: Sequence[AttemptResult],
        owner: str,
        now_ms: int,
        *,
        disable_after_ms: int,
        coalesce: bool,
    ) -> None:
        """In one transaction: records every attempt, moves each message on (a retry
        only while ``owner`` still holds its lease) and applies each endpoint effect."""
        ...

    async def release(self, message_ids: Sequence[str], owner: str) -> None:
        """Gives leases back unsent (a worker stopping)."""
        ...

    # -- reads ------------------------------------------------------------------------------
    async def attempts(
        self, endpoint_id: str, before_id: int | None, limit: int
    ) -> list[AttemptRow]:
        """Attempts of an endpoint, newest first, with ids below ``before_id``."""
        ...

    async def messages(self, endpoint_id: str | None = None) -> list[MessageRow]:
        """Every message (of an endpoint), by record_seq: for tests and operators."""
        ...

    async def backlog(self) -> Backlog: ...

    async def newest_record_seq(self) -> int: ...

    async def prune(self, finished_before_ms: int, requests_before_ms: int, limit: int) -> int:
        """Deletes finished messages and attempts older than the first time, stored
        responses older than the second (at most ``limit`` rows of each)."""
        ...

    # -- Idempotency-Key of the POSTs -------------------------------------------------
    async def stored_response(self, key: str) -> StoredResponse | None: ...

    async def store_response(self, key: str, response: StoredResponse, now_ms: int) -> None: ...


def webhook_store(ledger: Ledger) -> WebhookStore:
    """The webhook tables of ``ledger``'s database, on its connection (nothing opens)."""
    if ledger.dialect == "postgres":
        from earmark.store.postgres import PostgresLedger
        from earmark.store.webhooks_postgres import PostgresWebhooks

        if not isinstance(ledger, PostgresLedger):
            raise TypeError(f"not a PostgreSQL ledger: {ledger!r}")
        return PostgresWebhooks(ledger)
    from earmark.store.sqlite import SqliteLedger
    from earmark.store.webhooks_sqlite import SqliteWebhooks

    if not isinstance(ledger, SqliteLedger):
        raise TypeError(f"not a SQLite ledger: {ledger!r}")
    return SqliteWebhooks(ledger)


# -- what both stores decide the same way --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingKeyed:
    """A pending, unleased message with a coalesce key, as the stores read it."""

    id: str
    endpoint_id: str
    coalesce_key: str
    stock_seq: int
    attempts: int
    next_attempt_at_ms: int


@dataclass(slots=True)
class Coalesced:
    """What to write for a batch of new messages."""

    insert: list[tuple[NewMessage, int, int]]  # message, attempts, next_attempt_at_ms
    superseded: list[tuple[str, str]]  # (old id, the id that replaces it)
    dropped: int  # new messages already outdated by another one


def newest_per_key(messages: Sequence[NewMessage]) -> tuple[list[NewMessage], int]:
    """Keeps, per (endpoint, coalesce key), the message of the highest stock_seq (latest
    state wins); others pass through. Returns them in their order and how many went."""
    best: dict[tuple[str, str], NewMessage] = {}
    for message in messages:
        if message.coalesce_key is None:
            continue
        key = (message.endpoint_id, message.coalesce_key)
        held = best.get(key)
        if held is None or (message.stock_seq or 0, message.record_seq) >= (
            held.stock_seq or 0,
            held.record_seq,
        ):
            best[key] = message
    kept = [
        m for m in messages if m.coalesce_key is None or best[(m.endpoint_id, m.coalesce_key)] is m
    ]
    return kept, len(messages) - len(kept)


def coalesce(
    messages: Sequence[NewMessage], pending: Sequence[PendingKeyed], now_ms: int, *, enabled: bool
) -> Coalesced:
    """Collapses stock.changed messages per (endpoint, sku, location) when ``enabled``:
    the new batch to its newest, then against the messages still waiting unsent (not
    leased to a worker). The newer state replaces the older and takes over its place in
    the retry schedule, so an endpoint that keeps failing is not hit harder for it."""
    if not enabled:
        return Coalesced([(m, 0, now_ms) for m in messages], [], 0)
    kept, dropped = newest_per_key(messages)
    waiting: dict[tuple[str, str], list[PendingKeyed]] = {}
    for row in pending:
        waiting.setdefault((row.endpoint_id, row.coalesce_key), []).append(row)
    result = Coalesced([], [], dropped)
    for message in kept:
        rows = (
            []
            if message.coalesce_key is None
            else waiting.get((message.endpoint_id, message.coalesce_key), [])
        )
        if any(r.id == message.id or r.stock_seq >= (message.stock_seq or 0) for r in rows):
            result.dropped += 1  # a state as new or newer is already on its way
            continue
        attempts, due = 0, now_ms
        if rows:
            oldest = max(rows, key=lambda r: r.attempts)
            attempts, due = oldest.attempts, max(now_ms, oldest.next_attempt_at_ms)
            result.superseded += [(r.id, message.id) for r in rows]
        result.insert.append((message, attempts, due))
    return result


def stock_rows(states: Mapping[StockKey, StockState]) -> list[tuple[Any, ...]]:
    """(sku, location, *buckets, version) per state, in key order (one lock order)."""
    return [
        (sku, location, *(states[(sku, location)].buckets[b] for b in BUCKETS),
         states[(sku, location)].version)
        for sku, location in sorted(states)
    ]  # fmt: skip


def state_of(row: Any) -> StockState:
    """A webhook_stock row, or a prefix sum of the ledger (columns named as buckets)."""
    return StockState({b: int(row[b] or 0) for b in BUCKETS}, int(row["version"] or 0))


# Statuses an attempt result leads to (``finish``).
RETRY, FAILED, DELIVERED = "retry", "failed", "delivered"


def effects_by_endpoint(results: Sequence[AttemptResult]) -> list[list[AttemptResult]]:
    """The results whose endpoint effects to apply, per endpoint in id order (one lock
    order) and in attempt order within one; a run of successes needs only its first."""
    groups: dict[str, list[AttemptResult]] = {}
    for result in sorted(results, key=lambda r: (r.attempted_at_ms, r.message_id)):
        group = groups.setdefault(result.endpoint_id, [])
        if group and result.effect == "success" and group[-1].effect == "success":
            continue
        group.append(result)
    return [groups[endpoint_id] for endpoint_id in sorted(groups)]


def next_status(result: AttemptResult) -> str:
    if result.delivered:
        return DELIVERED
    return FAILED if result.next_attempt_at_ms is None else RETRY


__all__ = [
    "AttemptResult",
    "AttemptRow",
    "Backlog",
    "Claimed",
    "Coalesced",
    "DisabledPlanner",
    "DispatchReport",
    "EndpointChanges",
    "EndpointEffect",
    "EndpointRow",
    "MessageRow",
    "NewEndpoint",
    "NewMessage",
    "PendingKeyed",
    "Planner",
    "RecordedEvent",
    "ReplayRow",
    "StockKey",
    "StockState",
    "StoredResponse",
    "WebhookStore",
    "coalesce",
    "effects_by_endpoint",
    "newest_per_key",
    "next_status",
    "state_of",
    "stock_rows",
    "webhook_store",
]
