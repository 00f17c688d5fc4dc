"""Events as the durable record keeps them: one ``Event`` per stream entry, with its
unique key (partition, stream id), and ``ledger_entry``, its public view
(``earmark.models.LedgerEntry``: ``GET /v1/ledger``, ``earmark ledger --json``)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from earmark.errors import LedgerConflict, LedgerError
from earmark.models import LedgerEntry, StockLevel

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
EventKey = tuple[int, int, int]  # (partition, stream ms, stream seq): the unique event id


def check_no_collision(sent: Sequence[Event], recorded: Mapping[EventKey, Event]) -> None:
    """Raises ``LedgerConflict`` unless every event whose key is already recorded is that
    same event (a redelivery, which is harmless)."""
    for event in sent:
        stored = recorded.get(event.key)
        if stored is not None and not event.same_content(stored):
            raise LedgerConflict(
                f"event {event.event_id} ({event.type} {event.sku}@{event.location}) collides "
                f"with the recorded {stored.type} {stored.sku}@{stored.location}: Redis "
                "reuses event ids the record holds (a failover to a replica that was "
                "behind?). The flusher stops rather than drop either; see "
                "docs/design/durability.md (Topologies) for the runbook.",
                event_id=event.event_id,
            )


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

    def same_content(self, other: Event) -> bool:
        """Whether ``other`` (the recorded event with this key) is this event again: a
        redelivery. Anything else is a collision (``LedgerConflict``)."""
        return (
            self.type,
            self.sku,
            self.location,
            self.qty,
            dict(self.deltas),
            self.occurred_at_ms,
            self.actor,
            self.channel,
            self.reservation_id,
            self.reason,
            self.idempotency_key,
            dict(self.flags),
        ) == (
            other.type,
            other.sku,
            other.location,
            other.qty,
            dict(other.deltas),
            other.occurred_at_ms,
            other.actor,
            other.channel,
            other.reservation_id,
            other.reason,
            other.idempotency_key,
            dict(other.flags),
        )

    def deltas_json(self) -> str:
        return orjson.dumps(dict(self.deltas)).decode()

    def flags_json(self) -> str:
        return orjson.dumps(dict(self.flags)).decode()


def ledger_entry(event: Event) -> LedgerEntry:
    """The public view of a recorded event (``GET /v1/ledger``, ``earmark ledger --json``,
    the webhook payloads)."""
    return LedgerEntry(
        id=event.event_id,
        type=event.type,
        sku=event.sku,
        location=event.location,
        qty=event.qty,
        deltas=dict(event.deltas),
        actor=event.actor,
        reason=event.reason,
        channel=event.channel,
        reservation_id=event.reservation_id,
        idempotency_key=event.idempotency_key,
        occurred_at=datetime.datetime.fromtimestamp(event.occurred_at_ms / 1000, datetime.UTC),
        attributes=dict(event.flags),
    )
