"""The durable record behind one small interface, so one flusher serves every store.

The flusher turns stream entries into ``Event`` values and hands a batch to
``Ledger.persist``; everything that decides *what* a batch changes (bucket sums,
reservation states) lives here as plain functions, so the PostgreSQL
(``earmark.store.postgres``) and SQLite (``earmark.store.sqlite``) stores only
decide *how* to write it. ``open_ledger(url)`` picks the store from the URL:
``postgresql://...`` or ``sqlite:///path/to/file.db``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol, cast

import orjson

from earmark.engine.replies import combined_status
from earmark.errors import InvalidRequest, LedgerError
from earmark.models import (
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
    from_ms,
)

# Every stock bucket an event's ``deltas`` may name (``version`` is bookkeeping, not a bucket).
BUCKETS = (
    "on_hand",
    "reserved",
    "committed",
    "in_transit",
    "returned",
    "damaged",
    "written_off",
    "inbound",
)
# Event fields with a column of their own; every other field lands in ``flags``.
COLUMN_FIELDS = frozenset(
    {"type", "sku", "location", "qty", "deltas", "actor", "idempotency_key", "channel", "at"}
    | {"reservation", "reason"}
)
# How an event moves the part of a reservation that lives in its partition. Types not
# listed (extended, and any later ones) leave the part's status alone.
PART_STATUS_OF_TYPE = {
    "reserved": "held",
    "committed": "committed",
    "released": "released",
    "expired": "expired",
    "shipped": "shipped",
}
# A part only moves forward. Batches can land out of stream order (a dead flusher's
# batch is claimed late), so the furthest status wins whatever order events arrive in.
STATUS_RANK = {"held": 0, "released": 1, "expired": 1, "committed": 2, "shipped": 3}
TIMESTAMP_OF_TYPE = {
    "committed": "committed_at_ms",
    "released": "released_at_ms",
    "expired": "expired_at_ms",
    "shipped": "shipped_at_ms",
}
EventKey = tuple[int, int, int]  # (partition, stream ms, stream seq): the unique event id
Dialect = Literal["postgres", "sqlite"]

# Pages of ``Ledger.page`` (GET /v1/ledger, ``earmark ledger``): rows per page, and event
# types one query may filter on.
PAGE_LIMIT_DEFAULT = 100
PAGE_LIMIT_MAX = 1_000
PAGE_TYPES_MAX = 32
CURSOR_LENGTH_MAX = 128
CURSOR_PATTERN = re.compile(r"^([0-9]{1,9})-([0-9]{1,18})-([0-9]{1,18})$")


def level_of(row: Any) -> StockLevel:
    """A stock_levels row (asyncpg Record or sqlite3 Row: both index by column name)."""
    buckets = {b: int(row[b]) for b in BUCKETS}
    available = buckets["on_hand"] - buckets["reserved"] - buckets["committed"]
    return StockLevel(
        sku=row["sku"],
        location=row["location"],
        version=int(row["version"]),
        available=available,
        **buckets,
    )


def split_stream_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _optional(value: str | None) -> str | None:
    return value or None


@dataclass(frozen=True, slots=True)
class Event:
    """One engine event as the ledger stores it."""

    partition: int
    stream_ms: int
    stream_seq: int
    type: str
    sku: str
    location: str
    qty: int
    deltas: Mapping[str, int]
    occurred_at_ms: int
    actor: str = ""
    channel: str = ""
    reservation_id: str | None = None
    reason: str | None = None
    idempotency_key: str | None = None
    flags: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> EventKey:
        return (self.partition, self.stream_ms, self.stream_seq)

    @property
    def event_id(self) -> str:
        """``<partition>/<stream id>``: unique for the life of the store, because
        rebuild moves a new stream's ids past every id the ledger holds."""
        return f"{self.partition}/{self.stream_ms}-{self.stream_seq}"

    @classmethod
    def from_stream(cls, partition: int, entry_id: str, fields: Mapping[str, str]) -> Event:
        """Parses a stream entry. Raises ``LedgerError`` for a delta on an unknown bucket:
        applying part of an event would make stock_levels silently wrong."""
        stream_ms, stream_seq = split_stream_id(entry_id)
        # Lua's cjson cannot tell an empty object from an empty list: {} may come as [].
        deltas = orjson.loads(fields.get("deltas") or "{}") or {}
        if not isinstance(deltas, dict) or any(b not in BUCKETS for b in deltas):
            raise LedgerError(f"event {partition}/{entry_id} moves unknown buckets: {deltas}")
        return cls(
            partition=partition,
            stream_ms=stream_ms,
            stream_seq=stream_seq,
            type=fields["type"],
            sku=fields["sku"],
            location=fields["location"],
            qty=int(fields.get("qty") or 0),
            deltas={bucket: int(units) for bucket, units in deltas.items()},
            occurred_at_ms=int(fields.get("at") or stream_ms),
            actor=fields.get("actor", ""),
            channel=fields.get("channel", ""),
            reservation_id=_optional(fields.get("reservation")),
            reason=_optional(fields.get("reason")),
            idempotency_key=_optional(fields.get("idempotency_key")),
            flags={k: v for k, v in fields.items() if k not in COLUMN_FIELDS},
        )

    def deltas_json(self) -> str:
        return orjson.dumps(dict(self.deltas)).decode()

    def flags_json(self) -> str:
        return orjson.dumps(dict(self.flags)).decode()


# -- what a batch changes -------------------------------------------------------------


@dataclass(slots=True)
class StockChange:
    """The summed deltas of one (sku, location) over the newly inserted events of a batch."""

    sku: str
    location: str
    deltas: dict[str, int]
    version: int = 0  # events that changed a bucket (the engine bumps version on each)
    updated_at_ms: int = 0


def fold_stock(events: Iterable[Event]) -> list[StockChange]:
    """Sums deltas per (sku, location), generically: no event type is special. Sorted by
    key so that concurrent flushers lock stock_levels rows in one order (no deadlock)."""
    changes: dict[tuple[str, str], StockChange] = {}
    for event in events:
        change = changes.get((event.sku, event.location))
        if change is None:
            change = StockChange(event.sku, event.location, dict.fromkeys(BUCKETS, 0))
            changes[(event.sku, event.location)] = change
        for bucket, units in event.deltas.items():
            change.deltas[bucket] += units
        change.version += 1 if event.deltas else 0
        change.updated_at_ms = max(change.updated_at_ms, event.occurred_at_ms)
    return [changes[key] for key in sorted(changes)]


@dataclass(slots=True)
class ReservationRecord:
    """A reservation as the ledger knows it, folded from its events."""

    id: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)  # partition -> that part's status
    channel: str = ""
    created_at_ms: int | None = None
    expires_at_ms: int | None = None
    committed_at_ms: int | None = None
    released_at_ms: int | None = None
    expired_at_ms: int | None = None
    shipped_at_ms: int | None = None

    @property
    def status(self) -> str:
        """The engine's combination rule over the parts seen so far."""
        statuses = [self.parts[p] for p in sorted(self.parts)]
        return combined_status(statuses) if statuses else "held"

    @property
    def open_parts(self) -> int:
        return sum(1 for status in self.parts.values() if status == "held")

    def apply(self, event: Event) -> None:
        """Folds one event in; order-insensitive (see ``STATUS_RANK``)."""
        at = event.occurred_at_ms
        if event.type == "reserved":
            line = {"sku": event.sku, "location": event.location, "qty": event.qty}
            where = (event.sku, event.location)
            if not any((x["sku"], x["location"]) == where for x in self.lines):
                self.lines.append(line)
                self.lines.sort(key=lambda x: (x["sku"], x["location"]))
            self.created_at_ms = at if self.created_at_ms is None else min(self.created_at_ms, at)
            self.channel = self.channel or event.channel
        if "expires_at" in event.flags:
            expires = int(event.flags["expires_at"])
            self.expires_at_ms = max(self.expires_at_ms or 0, expires)
        status = PART_STATUS_OF_TYPE.get(event.type)
        if status is not None:
            part = str(event.partition)
            current = self.parts.get(part)
            if current is None or STATUS_RANK[status] > STATUS_RANK[current]:
                self.parts[part] = status
        stamp = TIMESTAMP_OF_TYPE.get(event.type)
        if stamp is not None:
            previous = getattr(self, stamp)
            setattr(self, stamp, at if previous is None else max(previous, at))

    def lose_holds(self, at_ms: int) -> None:
        """Redis was lost: parts still held are gone (their units were given back)."""
        for part, status in self.parts.items():
            if status == "held":
                self.parts[part] = "expired"
                self.expired_at_ms = max(self.expired_at_ms or 0, at_ms)

    def lines_json(self) -> str:
        return orjson.dumps(self.lines).decode()

    def parts_json(self) -> str:
        return orjson.dumps(self.parts, option=orjson.OPT_SORT_KEYS).decode()

    def to_model(self) -> Reservation:
        return Reservation(
            id=self.id,
            status=cast(ReservationStatus, self.status),
            lines=[ReservationLine(**line) for line in self.lines],
            channel=self.channel,
            created_at=from_ms(self.created_at_ms),
            expires_at=from_ms(self.expires_at_ms),
            committed_at=from_ms(self.committed_at_ms),
            released_at=from_ms(self.released_at_ms),
            expired_at=from_ms(self.expired_at_ms),
            shipped_at=from_ms(self.shipped_at_ms),
        )


def fold_reservations(
    existing: Mapping[str, ReservationRecord], events: Iterable[Event]
) -> list[ReservationRecord]:
    """The records the events touch, updated; sorted by id (one lock order everywhere)."""
    touched: dict[str, ReservationRecord] = {}
    for event in events:
        rid = event.reservation_id
        if rid is None:
            continue
        record = touched.get(rid) or existing.get(rid) or ReservationRecord(rid)
        touched[rid] = record
        record.apply(event)
    return [touched[rid] for rid in sorted(touched)]


def reservation_ids(events: Iterable[Event]) -> list[str]:
    return sorted({e.reservation_id for e in events if e.reservation_id is not None})


# -- the storage interface --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What rebuild restores from, read in one consistent view of the record."""

    stock: list[StockLevel]
    committed: list[ReservationRecord]  # reservations with a committed, unshipped part
    last_stream_ids: dict[int, tuple[int, int]]  # partition -> newest (ms, seq) recorded
    meta: dict[str, str]


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page of the ledger in event-id order (partition, stream ms, stream seq): the
    rows after ``after`` that pass every filter given (None: no filter)."""

    sku: str | None = None
    location: str | None = None
    types: tuple[str, ...] = ()  # any of these event types
    since_ms: int | None = None  # occurred_at >= since (ms since the epoch)
    after: EventKey | None = None
    limit: int = PAGE_LIMIT_DEFAULT

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= PAGE_LIMIT_MAX:
            raise InvalidRequest(f"limit must be between 1 and {PAGE_LIMIT_MAX}", field="limit")
        if len(self.types) > PAGE_TYPES_MAX:
            raise InvalidRequest(f"at most {PAGE_TYPES_MAX} event types", field="type")


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    next_after: EventKey | None  # where the next page starts; None: this was the last

    @property
    def next_cursor(self) -> str | None:
        return None if self.next_after is None else encode_cursor(self.next_after)


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def ms_since(at: datetime.datetime) -> int:
    """The first whole millisecond at or after ``at`` (an aware datetime), since the
    epoch: the ``since_ms`` of a page that starts at ``at``."""
    delta = at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return -(-micros // 1_000)


def time_of_ms(ms: int) -> datetime.datetime:
    """An aware UTC datetime (exact over datetime's whole range, unlike fromtimestamp)."""
    return EPOCH + datetime.timedelta(milliseconds=ms)


def encode_cursor(key: EventKey) -> str:
    """An opaque cursor for the position after the event ``key``."""
    raw = "-".join(str(part) for part in key).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> EventKey:
    """The event key of a cursor from ``encode_cursor``; ``InvalidRequest`` otherwise."""
    refused = InvalidRequest(
        "not a cursor of this ledger: pass next_cursor as given", field="cursor"
    )
    if len(cursor) > CURSOR_LENGTH_MAX:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise refused from None
    found = CURSOR_PATTERN.fullmatch(raw)
    if found is None:
        raise refused
    partition, ms, seq = (int(part) for part in found.groups())
    return partition, ms, seq


def page_filter(
    query: PageQuery, mark: Callable[[int], str], since: tuple[str, Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause of a page and its parameters, for either dialect: ``mark(n)`` is
    the placeholder of the n-th parameter (1-based), ``since`` the occurred-at column and
    the value to compare it with."""
    params: list[Any] = list(query.after or (-1, -1, -1))
    clauses = [f"(partition, stream_ms, stream_seq) > ({mark(1)}, {mark(2)}, {mark(3)})"]

    def add(template: str, value: Any) -> str:
        params.append(value)
        return template.format(mark(len(params)))

    if query.sku is not None:
        clauses.append(add("sku = {}", query.sku))
    if query.location is not None:
        clauses.append(add("location = {}", query.location))
    if query.types:
        clauses.append(f"type IN ({', '.join(add('{}', t) for t in query.types)})")
    if query.since_ms is not None:
        clauses.append(add(f"{since[0]} >= {{}}", since[1]))
    return " AND ".join(clauses), params


def page_of(events: list[Event], limit: int) -> Page:
    """A page from up to ``limit + 1`` rows: the extra row only says there is more."""
    shown = events[:limit]
    more = len(events) > limit and bool(shown)
    return Page(shown, shown[-1].key if more else None)


class Ledger(Protocol):
    """A durable record store. Every method may raise ``LedgerUnavailable`` (retry later)."""

    dialect: Dialect

    async def migrate(self) -> list[int]:
        """Applies the schema migrations not yet applied; returns their versions."""
        ...

    async def bind_store(self, prefix: str, partitions: int) -> None:
        """Records which store this is; ``LedgerMismatch`` if it already records another."""
        ...

    async def store_meta(self) -> dict[str, str]: ...

    async def set_meta(self, values: Mapping[str, str]) -> None: ...

    async def persist(self, events: Sequence[Event]) -> int:
        """In one transaction: inserts the events not yet recorded, applies the deltas of
        those (and only those) to stock_levels and folds them into reservations.
        Returns how many were new."""
        ...

    async def has_stock(self) -> bool:
        """True once any stock level is recorded: a Redis without markers must then be
        rebuilt, never initialised empty."""
        ...

    async def stock_levels(self) -> list[StockLevel]: ...

    async def events(self, after: EventKey | None, limit: int) -> list[Event]:
        """Ledger rows in key order, after ``after`` (None: from the start)."""
        ...

    async def page(self, query: PageQuery) -> Page:
        """One page of the rows that pass the query's filters, in key order (keyset
        pagination: ``Page.next_after`` goes into the next query's ``after``)."""
        ...

    async def reservation(self, reservation_id: str) -> ReservationRecord | None: ...

    async def snapshot(self, partitions: int) -> Snapshot:
        """Stock, committed reservations and the newest stream id of each of the
        ``partitions`` in one consistent view, after every flush in progress committed."""
        ...

    async def mark_holds_lost(self, at_ms: int) -> int:
        """Parts still held become expired (Redis lost them); returns reservations changed."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    """The numbered SQL files shipped in ``earmark/store/migrations/<dialect>``, in order."""
    root = resources.files("earmark.store") / "migrations" / dialect
    found = []
    for entry in root.iterdir():
        if entry.name.endswith(".sql"):
            number, _, _ = entry.name.partition("_")
            found.append(Migration(int(number), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise LedgerError(f"{dialect} migrations are not numbered 1..n: {[m.name for m in found]}")
    return found


def open_ledger(url: str) -> Ledger:
    """A ledger for ``url`` (nothing is connected until first use).

    ``postgresql://user@host/db`` (or ``postgres://``): asyncpg; ``sqlite:///path.db``
    (``sqlite:///:memory:`` for a throwaway one): the stdlib sqlite3 module.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from earmark.store.postgres import PostgresLedger

        return PostgresLedger(url)
    if url.startswith("sqlite://"):
        from earmark.store.sqlite import SqliteLedger

        return SqliteLedger.from_url(url)
    raise ValueError(f"unsupported ledger URL {url!r}: use postgresql://... or sqlite:///path")


async def migrate(url: str) -> list[int]:
    """Brings the schema at ``url`` up to date (safe at every start-up, and concurrently);
    returns the versions applied now. ``earmark migrate`` calls this."""
    ledger = open_ledger(url)
    try:
        return await ledger.migrate()
    finally:
        await ledger.close()
