"""Request and response bodies of the HTTP API.

Requests forbid unknown fields and carry the bounds of ``earmark.limits`` in their schema,
so ``/openapi.json`` documents exactly what the engine accepts; the engine validates
again (a request that slips past here still writes nothing). Responses reuse the engine's
models, which are what the routes serialize.
"""

from __future__ import annotations

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
from earmark.models import Reservation, ReservationLine, Shortfall, StockLevel

NAME_PATTERN = limits.NAME_PATTERN.pattern
PRINTABLE_PATTERN = "^[ -~]*$"
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


__all__ = [
    "AdjustmentIn",
    "Availability",
    "ExtendIn",
    "Health",
    "InsufficientStockProblem",
    "LineIn",
    "Problem",
    "Readiness",
    "ReceiptIn",
    "Reservation",
    "ReservationIn",
    "ReservationLine",
    "StockLevel",
    "TransitionProblem",
]
