"""Listing held reservations (``GET /v1/reservations``, ``earmark reservations list``):
what an operator needs to find a stuck hold and free it.

Only held reservations are indexed in Redis: each partition's ``expiries`` sorted set
(every held part by expiry) and each line's ``holds`` set (the holds counted in that
(sku, location)'s ``reserved``). A page walks one of them by expiry, then reads each
reservation; committed, released, expired and shipped ones are found in the durable
record (``GET /v1/ledger?type=committed``). The customer is recorded on the part of a
drop's reservation that holds the drop's SKUs (lua/includes/drops.lua, ``drop_record``):
filtering by customer reads that field beside the index, one pipeline per range read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import OpsBase
from earmark.engine.replies import text
from earmark.engine.steps import Op, Pipeline
from earmark.errors import InvalidRequest, ReservationNotFound
from earmark.models import Reservation, ReservationPage

RESERVATION_PAGE_LIMIT_MAX = limits.RESERVATION_PAGE_MAX
LISTED_STATUSES = limits.LISTED_RESERVATION_STATUSES


def encode_hold_cursor(partition: int, expiry_ms: int, seen: int) -> str:
    return f"{partition}.{expiry_ms}.{seen}"


def decode_hold_cursor(cursor: str, partitions: int) -> tuple[int, int, int]:
    fields = cursor.split(".")
    if len(fields) != 3 or not all(f.isdigit() for f in fields) or int(fields[0]) >= partitions:
        raise InvalidRequest(f"{cursor!r} is not a cursor of this listing", field="cursor")
    return int(fields[0]), int(fields[1]), int(fields[2])


def scored(reply: list[Any]) -> list[tuple[str, int]]:
    """``ZRANGE ... WITHSCORES`` as (member, score): redis-py parses it into pairs, a raw
    reply is flat."""
    if reply and isinstance(reply[0], list | tuple):
        return [(text(member), int(float(score))) for member, score in reply]
    return [(text(reply[i]), int(float(reply[i + 1]))) for i in range(0, len(reply), 2)]


class ListingOps(OpsBase):
    if TYPE_CHECKING:  # from ReservationOps, beside this mixin in Operations

        def _get_reservation(self, reservation_id: str) -> Op[Reservation]: ...

    @operation
    def held_reservations(
        self,
        *,
        sku: str | None = None,
        location: str = limits.DEFAULT_LOCATION,
        status: str = "held",
        customer: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Op[ReservationPage]:
        """Held reservations, soonest expiry first (of a (sku, location) when ``sku`` is
        given), a page at a time: at most ``limit`` ids read per page. A cart held in
        several partitions appears once per partition when no ``sku`` is given.
        ``customer`` (trimmed and case-folded as ``reserve`` does): only the holds of a
        drop recorded for that customer; the part recording it is the one listed."""
        if status not in LISTED_STATUSES:
            raise InvalidRequest(
                f"status {status!r} cannot be listed: only held reservations are indexed in "
                "Redis; the others are in the durable record (GET /v1/ledger?type=...)",
                field="status",
            )
        if not 1 <= limit <= RESERVATION_PAGE_LIMIT_MAX:
            raise InvalidRequest(f"limit must be between 1 and {RESERVATION_PAGE_LIMIT_MAX}")
        if sku is not None:
            sku, location = validation.sku(sku), validation.location(location)
        if customer is not None:
            customer = validation.customer(customer)
            if not customer:
                raise InvalidRequest("customer must not be empty", field="customer")
        home = None if sku is None else self.partition_of(sku)
        start = (home or 0, 0, 0)
        p, after_ms, seen = start if cursor is None else decode_hold_cursor(cursor, self.partitions)
        if home is not None and p != home:
            raise InvalidRequest(f"{cursor!r} is not a cursor of this listing", field="cursor")
        items: list[Reservation] = []
        while p < self.partitions and len(items) < limit:
            key = (
                self.keys.expiries(p) if sku is None else self.keys.hold_expiries(p, sku, location)
            )
            want = limit - len(items)
            command = ("ZRANGE", key, after_ms, "+inf", "BYSCORE", "LIMIT", seen, want,
                       "WITHSCORES")  # fmt: skip
            (reply,) = yield Pipeline([command])
            pairs = scored(reply)
            owners = (yield from self._customers(p, pairs)) if customer is not None else None
            for index, (rid, expiry_ms) in enumerate(pairs):
                seen = seen + 1 if expiry_ms == after_ms else 1
                after_ms = expiry_ms
                if owners is not None and owners[index] != customer:
                    continue
                try:
                    found = yield from self._get_reservation(rid)
                except ReservationNotFound:  # released or swept since the range was read
                    continue
                if found.status == "held":
                    items.append(found)
            if len(pairs) < want:  # this index is done
                if home is not None:
                    return ReservationPage(items=items, next_cursor=None)
                p, after_ms, seen = p + 1, 0, 0
        done = p >= self.partitions
        next_cursor = None if done else encode_hold_cursor(p, after_ms, seen)
        return ReservationPage(items=items, next_cursor=next_cursor)

    def _customers(self, p: int, pairs: list[tuple[str, int]]) -> Op[list[str | None]]:
        """The customer recorded on each reservation's part in partition ``p`` (None for
        none: not a drop's hold, or not the part holding the drop's SKUs)."""
        if not pairs:
            return []
        replies = yield Pipeline(
            [("HGET", self.keys.reservation(p, rid), "customer") for rid, _ in pairs]
        )
        return [None if raw is None else text(raw) for raw in replies]
