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
    ReservationExpired,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationReleased,
    StoreNotReady,
    WouldOversell,
)
from earmark.models import (
    Reservation,
    ReservationLine,
    ReservationStatus,
    Shortfall,
    StockLevel,
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
            "units available; pass force=True to record it anyway",
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
    """One reservation from its parts (in partition order) and their outward statuses."""
    lines = [ReservationLine(**line) for part in parts for line in part["lines"]]

    def first(field: str, pick: Any = min) -> Any:
        values = [v for v in (_ms(part, field) for part in parts) if v is not None]
        return from_ms(pick(values)) if values else None

    return Reservation(
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
