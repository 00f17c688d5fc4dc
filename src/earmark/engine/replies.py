"""Turns what the Lua scripts return into models, or into our exceptions.

Every expected outcome comes back from a script as a JSON object; ``raise_for_error``
raises the error its ``error`` code names in the one outcome table (``earmark.errors``).
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from earmark.errors import EarmarkError
from earmark.models import (
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    ReservationLine,
    StockLevel,
    Transfer,
    combined_status,
    from_ms,
)

Json = dict[str, Any]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def script_reply(raw: Any) -> tuple[Json, bool]:
    """A write script's ``{json, replayed}`` reply."""
    result = orjson.loads(raw[0])
    return result, bool(int(raw[1]))


M = TypeVar("M", bound=BaseModel)


def replayed(model: M, flag: bool) -> M:
    """Marks ``model`` as a replay of a stored success when ``flag`` (``Frozen.replayed``:
    an instance attribute outside the fields, so equality and JSON are unchanged)."""
    if flag:
        object.__setattr__(model, "replayed", True)
    return model


def raise_for_error(result: Json, subject: str = "") -> None:
    """Raises the error a script's refusal names (``earmark.errors.OUTCOMES``); returns
    when the reply is not a refusal. ``subject`` names what the call acted on (a
    reservation, transfer or purchase order id, or a (sku, location))."""
    if "error" in result:
        raise EarmarkError.outcome(result, subject)


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


def transfer(record: Json) -> Transfer:
    """A transfer from its record (a script's view or the hash as read)."""
    return Transfer.from_record(record)


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
