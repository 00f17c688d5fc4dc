"""Request and response bodies of the HTTP API.

Requests forbid unknown fields and carry the bounds of ``earmark.limits`` in their schema,
so ``/openapi.json`` documents exactly what the engine accepts; the engine validates
again (a request that slips past here still writes nothing). Responses reuse the engine's
models, which are what the routes serialize.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

from earmark import limits
from earmark.models import (
    CountResult,
    PurchaseOrder,
    Reservation,
    ReservationLine,
    ReturnReceipt,
    Shortfall,
    SkuStock,
    StockLevel,
    Transfer,
)
from earmark.store.ledger import Event

NAME_PATTERN = limits.NAME_PATTERN.pattern
PRINTABLE_PATTERN = "^[ -~]*$"
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
TTL_SECONDS_MIN = limits.TTL_MS_MIN / 1000
TTL_SECONDS_MAX = limits.TTL_MS_MAX / 1000

Sku = Annotated[
    str,
    Field(
        min_length=1,
        max_length=limits.SKU_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="letters, digits, '.', '_' and '-', starting with a letter or digit",
        examples=["TEE-M"],
    ),
]
Location = Annotated[
    str,
    Field(
        min_length=1,
        max_length=limits.LOCATION_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="a stock location; same alphabet as a SKU",
        examples=[limits.DEFAULT_LOCATION],
    ),
]


def _integral(value: object) -> object:
    """JSON Schema's ``integer`` includes ``3.0``; strings and booleans stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema defines it: 3 and 3.0, never "3", true or 3.5. (The
# validator comes after the bounds, so they stay minimum/maximum in the schema.)
INTEGRAL = BeforeValidator(_integral)
Qty = Annotated[
    StrictInt, Field(ge=1, le=limits.QTY_MAX, description="units, a whole number"), INTEGRAL
]
TtlSeconds = Annotated[
    float,
    Field(
        ge=TTL_SECONDS_MIN,
        le=TTL_SECONDS_MAX,
        allow_inf_nan=False,
        strict=True,
        description="how long the hold lives; the server may configure a lower maximum",
    ),
]


def _printable(length_max: int, description: str, *, required: bool = False) -> Any:
    return Field(
        min_length=1 if required else 0,
        max_length=length_max,
        pattern=PRINTABLE_PATTERN,
        description=f"{description}; printable ASCII",
    )


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiptIn(Request):
    """Units arrived at a location."""

    qty: Qty
    location: Location = limits.DEFAULT_LOCATION
    reference: Annotated[
        str, _printable(limits.REFERENCE_LENGTH_MAX, "e.g. a purchase order number")
    ] = ""


class AdjustmentIn(Request):
    """A correction of on_hand (a count, breakage, a find)."""

    delta: Annotated[
        StrictInt,
        Field(
            ge=-limits.ADJUST_DELTA_MAX,
            le=limits.ADJUST_DELTA_MAX,
            description="units added (positive) or removed (negative); never zero",
            json_schema_extra={"not": {"const": 0}},
        ),
        INTEGRAL,
    ]
    reason: Annotated[str, _printable(limits.REASON_LENGTH_MAX, "why", required=True)]
    location: Location = limits.DEFAULT_LOCATION
    force: StrictBool = Field(
        False, description="record a decrease below available anyway (an oversell exposure)"
    )

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be zero")
        return value


class LineIn(Request):
    sku: Sku
    qty: Qty
    location: Location = limits.DEFAULT_LOCATION


class ReservationIn(Request):
    """A cart to hold: every line or none."""

    lines: list[LineIn] = Field(
        min_length=1,
        max_length=limits.LINES_MAX,
        description="each (sku, location) at most once",
    )
    ttl_seconds: TtlSeconds | None = Field(None, description="default: the server's default TTL")
    channel: Annotated[
        str, _printable(limits.CHANNEL_LENGTH_MAX, "where the order comes from, e.g. web")
    ] = ""


class ExtendIn(Request):
    ttl_seconds: TtlSeconds


# -- stock lifecycle (docs/lifecycle.md) ------------------------------------------------

Reason = Annotated[str, _printable(limits.REASON_LENGTH_MAX, "why (recorded on the events)")]
RequiredReason = Annotated[
    str, _printable(limits.REASON_LENGTH_MAX, "why (recorded on the events)", required=True)
]
Reference = Annotated[
    str, _printable(limits.REFERENCE_LENGTH_MAX, "e.g. a delivery note or purchase order number")
]
Force = Annotated[
    StrictBool,
    Field(description="record a decrease below available anyway (an oversell exposure)"),
]


class TransferIn(Request):
    """Units leave one location for another of the same SKU."""

    qty: Qty
    from_location: Location
    to_location: Location = Field(description="a location other than from_location")
    reference: Reference = ""
    reason: Reason = ""


class TransferReceiptIn(Request):
    """The transfer arrived with ``qty_received`` units (fewer: the rest is written off;
    more: the surplus lands in on_hand)."""

    qty_received: Annotated[
        StrictInt,
        Field(ge=0, le=limits.QTY_RECEIVED_MAX, description="units counted on arrival"),
        INTEGRAL,
    ]
    reason: Reason = ""


class ReturnIn(Request):
    """Units of a shipped reservation line come back into quarantine (``returned``)."""

    sku: Sku
    qty: Qty
    location: Location | None = Field(
        None, description="picks the line when the reservation holds the SKU at several"
    )
    reason: Reason = ""


class DispositionIn(Request):
    """Returned units leave quarantine."""

    qty: Qty
    disposition: Literal["restock", "damaged", "write_off"] = Field(
        description="restock: back to on_hand; damaged; write_off: written off"
    )
    location: Location = limits.DEFAULT_LOCATION
    reason: Reason = ""


class DamageIn(Request):
    """Units on hand are damaged (on_hand -> damaged)."""

    qty: Qty
    reason: RequiredReason
    location: Location = limits.DEFAULT_LOCATION
    force: Force = False


class WriteOffIn(Request):
    """Units are written off from on_hand or from damaged."""

    qty: Qty
    reason: RequiredReason
    source: Literal["on_hand", "damaged"] = "on_hand"
    location: Location = limits.DEFAULT_LOCATION
    force: Force = Field(False, description="from on_hand: record it below available anyway")


class CountIn(Request):
    """A cycle count: what is on the shelf, against the stock version read before."""

    counted: Annotated[
        StrictInt, Field(ge=0, le=limits.COUNTED_MAX, description="units on the shelf"), INTEGRAL
    ]
    version: Annotated[
        StrictInt,
        Field(
            ge=0,
            le=limits.VERSION_MAX,
            description="the stock's `version` when the counter read it (GET /v1/skus/{sku})",
        ),
        INTEGRAL,
    ]
    location: Location = limits.DEFAULT_LOCATION
    reason: Reason = "cycle count"


Lines = Annotated[
    list[LineIn],
    Field(
        min_length=1, max_length=limits.LINES_MAX, description="each (sku, location) at most once"
    ),
]


class PurchaseOrderIn(Request):
    """Units a supplier promised: inbound += qty per line."""

    lines: Lines
    supplier: Annotated[str, _printable(limits.SUPPLIER_LENGTH_MAX, "who delivers", required=True)]
    expected_date: str = Field(
        description="promised delivery, YYYY-MM-DD", json_schema_extra={"format": "date"}
    )
    reference: Reference = ""
    reason: Reason = ""

    @field_validator("expected_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        if not ISO_DATE.fullmatch(value):
            raise ValueError("expected_date must be a date as YYYY-MM-DD")
        datetime.date.fromisoformat(value)  # a ValueError for a day the calendar lacks
        return value


class PurchaseOrderReceiptIn(Request):
    """A delivery against the order (partial, complete or over)."""

    lines: Lines
    reason: Reason = ""


class PurchaseOrderCloseIn(Request):
    cancel: StrictBool = Field(
        False, description="cancel (the supplier is not blamed) instead of close"
    )
    reason: Reason = ""


class LedgerEntry(BaseModel):
    """One recorded event (docs/lifecycle.md lists the types and their deltas)."""

    id: str = Field(description="<partition>/<stream id>: unique for the life of the store")
    type: str
    sku: str
    location: str
    qty: int
    deltas: dict[str, int] = Field(description="bucket -> signed units")
    actor: str
    reason: str | None
    channel: str
    reservation_id: str | None
    idempotency_key: str | None
    occurred_at: datetime.datetime
    attributes: dict[str, str] = Field(
        description="every other field of the event (transfer, purchase_order, forced, ...)"
    )

    @classmethod
    def of(cls, event: Event) -> LedgerEntry:
        return cls(
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


class LedgerPage(BaseModel):
    items: list[LedgerEntry]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class Availability(BaseModel):
    items: list[StockLevel]


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str = ""


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Check]


class Problem(BaseModel):
    """RFC 9457 problem details plus a stable ``code``; other members depend on the code."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class InsufficientStockProblem(Problem):
    lines: list[Shortfall]


class TransitionProblem(Problem):
    reservation_status: str = Field(description="the reservation's status now")


class PurchaseOrderClosedProblem(Problem):
    purchase_order_status: str = Field(description="closed or cancelled")


__all__ = [
    "AdjustmentIn",
    "Availability",
    "CountIn",
    "CountResult",
    "DamageIn",
    "DispositionIn",
    "ExtendIn",
    "Health",
    "InsufficientStockProblem",
    "LedgerEntry",
    "LedgerPage",
    "LineIn",
    "Problem",
    "PurchaseOrder",
    "PurchaseOrderCloseIn",
    "PurchaseOrderClosedProblem",
    "PurchaseOrderIn",
    "PurchaseOrderReceiptIn",
    "Readiness",
    "ReceiptIn",
    "Reservation",
    "ReservationIn",
    "ReservationLine",
    "ReturnIn",
    "ReturnReceipt",
    "SkuStock",
    "StockLevel",
    "Transfer",
    "TransferIn",
    "TransferReceiptIn",
    "TransitionProblem",
    "WriteOffIn",
]
