"""Turns what the Lua scripts return into models, or into our exceptions.

Every expected outcome comes back from a script as a JSON object; the one
function ``raise_for_error`` maps its ``error`` code to a typed exception.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from earmark.errors import (
    CommitInProgress,
    EarmarkError,
    IdempotencyConflict,
    InsufficientOnHand,
    InsufficientStock,
    InsufficientUnits,
    InvalidRequest,
    PurchaseOrderClosed,
    PurchaseOrderNotFound,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationReleased,
    ReturnExceedsShipped,
    StaleCount,
    StoreNotReady,
    TransferAlreadyReceived,
    TransferNotFound,
    WouldOversell,
)
from earmark.models import (
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    ReservationLine,
    ReservationStatus,
    Shortfall,
    StockLevel,
    Transfer,
    from_ms,
)

STATUSES = frozenset(ReservationStatus.__args__)  # type: ignore[attr-defined]

Json = dict[str, Any]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def script_reply(raw: Any) -> tuple[Json, bool]:
    """A write script's ``{json, replayed}`` reply."""
    result = orjson.loads(raw[0])
    return result, bool(int(raw[1]))


def raise_for_error(result: Json, reservation_id: str = "") -> None:
    """Raises the exception for a script's ``error`` code; returns when there is none."""
    code = result.get("error")
    if code is None:
        return
    if code == "not_ready":
        raise StoreNotReady(
            "Redis has no generation marker for this partition: its data was lost or never "
            "set up; writes are refused until stock is rebuilt (earmark rebuild)"
        )
    if code == "idempotency_conflict":
        raise IdempotencyConflict("this idempotency key was already used for another request")
    if code == "duplicate_reservation":
        raise IdempotencyConflict("a reservation with this id already exists")
    if code == "insufficient_stock":
        shortfalls = [Shortfall(**line) for line in result["lines"]]
        names = ", ".join(f"{s.sku}@{s.location} ({s.available}/{s.requested})" for s in shortfalls)
        raise InsufficientStock(f"not enough stock for: {names}", shortfalls)
    if code == "would_oversell":
        raise WouldOversell(
            f"a decrease of {result['requested']} is more than the {result['available']} "
            "units available; force the decrease to record it anyway",
            available=result["available"],
            requested=result["requested"],
        )
    if code == "insufficient_on_hand":
        raise InsufficientOnHand(
            "fewer units are on hand than the operation removes",
            **{k: v for k, v in result.items() if k != "error"},
        )
    if code == "not_found":
        raise ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id)
    if code == "not_held":
        raise_not_held(result["status"], reservation_id)
    raise EarmarkError(f"unexpected script outcome {code!r}")


def raise_not_held(status: str, reservation_id: str) -> None:
    if status == "expired":
        raise ReservationExpired(f"reservation {reservation_id} has expired", status)
    if status == "released":
        raise ReservationReleased(f"reservation {reservation_id} was released", status)
    if status == "commit_in_progress":
        raise CommitInProgress(
            f"reservation {reservation_id} is being committed by another request; retry",
            status,
        )
    raise ReservationNotHeld(
        f"reservation {reservation_id} is {status}: the operation is not allowed", status
    )


def stock_level(levels: Json) -> StockLevel:
    on_hand, reserved, committed = levels["on_hand"], levels["reserved"], levels["committed"]
    return StockLevel(**levels, available=on_hand - reserved - committed)


def stock_from_hash(sku: str, location: str, raw: dict[Any, Any]) -> StockLevel:
    levels: Json = {"sku": sku, "location": location}
    for field, value in raw.items():
        levels[text(field)] = int(value)
    for bucket in ("on_hand", "reserved", "committed"):
        levels.setdefault(bucket, 0)
    return stock_level(levels)


def part_status(part: Json, now_ms: int) -> str:
    """A part's status as the outside sees it: a held part past its expiry is expired."""
    status = str(part["status"])
    if status == "held" and now_ms >= int(part["expires_at"]):
        return "expired"
    if status == "pinned":
        return "held"
    return status


def combined_status(statuses: list[str]) -> ReservationStatus:
    """One status for a reservation whose parts live in several partitions.

    A committed part means the commit decision was taken (the rest follow);
    otherwise any part that ended makes the whole reservation ended.
    """
    kinds = set(statuses)
    if len(kinds) == 1:
        (only,) = kinds
        if only not in STATUSES:
            raise ValueError(f"unknown reservation status {only!r}")
        return only  # type: ignore[return-value]
    if kinds & {"committed", "shipped"}:
        return "committed"
    if "expired" in kinds:
        return "expired"
    if "released" in kinds:
        return "released"
    return "held"


def _ms(part: Json, field: str) -> int | None:
    value = part.get(field)
    return None if value in (None, "") else int(value)


def reservation(reservation_id: str, parts: list[Json], statuses: list[str]) -> Reservation:
    """One reservation from its parts (in partition order) and their outward statuses.

    Built without re-validation: the fields come from our own scripts (typed there),
    and this runs on every reservation call."""
    lines = [
        ReservationLine.model_construct(
            sku=str(line["sku"]), location=str(line["location"]), qty=int(line["qty"])
        )
        for part in parts
        for line in part["lines"]
    ]

    def first(field: str, pick: Any = min) -> Any:
        values = [v for v in (_ms(part, field) for part in parts) if v is not None]
        return from_ms(pick(values)) if values else None

    return Reservation.model_construct(
        id=reservation_id,
        status=combined_status(statuses),
        lines=lines,
        channel=str(parts[0].get("channel", "")),
        created_at=first("created_at"),
        expires_at=first("expires_at"),
        committed_at=first("committed_at", max),
        released_at=first("released_at", max),
        expired_at=first("expired_at", max),
        shipped_at=first("shipped_at", max),
    )


def reservation_from_views(views: list[Json]) -> Reservation:
    """From the views the write scripts return (their status is already outward). The id
    comes from the views: a replayed reserve returns the id of the original request."""
    statuses = ["held" if v["status"] == "pinned" else str(v["status"]) for v in views]
    return reservation(str(views[0]["id"]), views, statuses)


def fingerprint(*request: Any) -> str:
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


# -- stock lifecycle (docs/lifecycle.md) --------------------------------------------------


def raise_for_lifecycle_error(result: Json, subject: str = "") -> None:
    """``raise_for_error`` for the lifecycle scripts; ``subject`` names the transfer,
    purchase order or reservation the call acted on."""
    code = result.get("error")
    details = {k: v for k, v in result.items() if k != "error"}
    if code == "stale_count":
        raise StaleCount(
            f"stock version {result['version']} cannot be counted against: the engine "
            f"remembers on_hand from version {result['oldest']} to {result['current']}; "
            "read the stock again and recount",
            **details,
        )
    if code == "insufficient_units":
        raise InsufficientUnits(
            f"only {result['available']} units are {result['bucket']}, "
            f"{result['requested']} requested",
            **details,
        )
    if code == "return_exceeds_shipped":
        raise ReturnExceedsShipped(
            f"reservation {subject} shipped {result['shipped']} of the line and "
            f"{result['returned']} already came back; {result['requested']} more cannot",
            **details,
        )
    if code == "no_line":
        raise InvalidRequest(
            f"{subject} has no line for {result['sku']} at {result['location']}", field="lines"
        )
    if code in ("duplicate_transfer", "duplicate_purchase_order"):
        raise IdempotencyConflict(f"{subject} already exists")
    raise_for_record_error(result, subject)
    raise_for_error(result, subject)


def raise_for_record_error(result: Json, subject: str) -> None:
    code = result.get("error")
    if code == "transfer_not_found":
        raise TransferNotFound(f"no transfer {subject}", id=subject)
    if code == "already_received":
        record = transfer(result["transfer"])
        raise TransferAlreadyReceived(
            f"transfer {subject} was already received with {record.qty_received} units",
            transfer=record.model_dump(mode="json"),
        )
    if code == "purchase_order_not_found":
        raise PurchaseOrderNotFound(f"no purchase order {subject}", id=subject)
    if code == "purchase_order_closed":
        status = str(result["status"])
        received = result.get("received", [])
        raise PurchaseOrderClosed(
            f"purchase order {subject} is {status}", status, received_before=received
        )


def transfer(record: Json) -> Transfer:
    """A transfer from its record (a script's view or the hash as read)."""
    received_at = record.get("received_at")
    return Transfer(
        id=text(record["id"]),
        sku=text(record["sku"]),
        from_location=text(record["from"]),
        to_location=text(record["to"]),
        qty_shipped=int(record["qty_shipped"]),
        qty_received=int(record.get("qty_received") or 0),
        status=text(record["status"]),
        reference=text(record.get("reference", "")),
        created_at=from_ms(int(record["created_at"])),
        received_at=from_ms(int(received_at)) if received_at else None,
    )


def purchase_order(views: list[Json]) -> PurchaseOrder:
    """One purchase order from its parts' views (partition order). A part still open makes
    the order open (a close that did not reach every part is finished by calling it again)."""
    statuses = {str(v["status"]) for v in views}
    status = "open" if "open" in statuses else min(statuses)  # 'cancelled' < 'closed'

    lines = [
        PurchaseOrderLine(
            sku=line["sku"],
            location=line["location"],
            expected=int(line["expected"]),
            received=int(line["received"]),
            outstanding=max(int(line["expected"]) - int(line["received"]), 0)
            if view["status"] == "open"
            else 0,
        )
        for view in views
        for line in view["lines"]
    ]
    closed = [_ms(v, "closed_at") for v in views]
    first = views[0]
    return PurchaseOrder(
        id=str(first["id"]),
        status=status,
        supplier=str(first["supplier"]),
        expected_date=str(first["expected_date"]),
        reference=str(first.get("reference") or ""),
        lines=lines,
        created_at=from_ms(min(int(v["created_at"]) for v in views)),
        closed_at=from_ms(max(c for c in closed if c is not None))
        if status != "open" and None not in closed
        else None,
    )
