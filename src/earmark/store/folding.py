"""What a batch of events changes, decided once for every store: bucket sums per
(sku, location) and reservation states. The PostgreSQL and SQLite stores only decide how
to write it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from earmark.models import (
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
    combined_status,
    from_ms,
)
from earmark.store.events import BUCKETS, Event

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


@dataclass(slots=True)
class StockChange:
    """The summed deltas of one (sku, location) over the newly inserted events of a batch."""

    sku: str
    location: str
    deltas: dict[str, int]
    version: int = 0  # events that changed a bucket (the engine bumps version on each)
    updated_at_ms: int = 0


def fold_stock(events: Iterable[Event]) -> list[StockChange]:
    """Sums deltas per (sku, location), generically: no event type is special (events at
    no location, which move no bucket, are about no stock record and left out). Sorted by
    key so that concurrent flushers lock stock_levels rows in one order (no deadlock)."""
    changes: dict[tuple[str, str], StockChange] = {}
    for event in events:
        if not event.location:
            continue  # about no stock record (a channel's rule, docs/channels.md)
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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What rebuild restores from, read in one consistent view of the record."""

    stock: list[StockLevel]
    committed: list[ReservationRecord]  # reservations with a committed, unshipped part
    last_stream_ids: dict[int, tuple[int, int]]  # partition -> newest (ms, seq) recorded
    meta: dict[str, str]
