"""What the routers share: the field types of request bodies, and the response models.

Each router declares its own request bodies beside its routes (``routes/stock.py`` has
``ReceiptIn``...), built from the field types here. Requests forbid unknown fields and
carry the bounds of ``earmark.limits`` in their schema, so ``/openapi.json`` documents
exactly what the engine accepts; the engine validates again (a request that slips past
here still writes nothing). Responses reuse the engine's models, which are what the routes
serialize.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)

from earmark import limits
from earmark.models import (
    Check,
    CountResult,
    Health,
    PurchaseOrder,
    Readiness,
    Reservation,
    ReservationLine,
    ReservationPage,
    ReturnReceipt,
    Shortfall,
    SkuStock,
    StockLevel,
    StockPage,
    Transfer,
)

NAME_PATTERN = limits.NAME_PATTERN.pattern
PRINTABLE_PATTERN = "^[ -~]*$"

# An RFC 3339 date-time with its offset, as the OpenAPI document says (format
# date-time). pydantic alone would also take a number, or a numeric string, as seconds
# since the epoch ("since=0.0"): that is not what the schema promises, so it is refused.
RFC3339_PATTERN = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339_text(value: object) -> object:
    if isinstance(value, datetime.datetime):
        return value
    if not isinstance(value, str) or not RFC3339_PATTERN.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-12-01T09:00:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
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


def printable(length_max: int, description: str, *, required: bool = False) -> Any:
    return Field(
        min_length=1 if required else 0,
        max_length=length_max,
        pattern=PRINTABLE_PATTERN,
        description=f"{description}; printable ASCII",
    )


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineIn(Request):
    sku: Sku
    qty: Qty
    location: Location = limits.DEFAULT_LOCATION


# -- stock lifecycle (docs/design/lifecycle.md) ------------------------------------------------

Reason = Annotated[str, printable(limits.REASON_LENGTH_MAX, "why (recorded on the events)")]
RequiredReason = Annotated[
    str, printable(limits.REASON_LENGTH_MAX, "why (recorded on the events)", required=True)
]
Reference = Annotated[
    str, printable(limits.REFERENCE_LENGTH_MAX, "e.g. a delivery note or purchase order number")
]
Force = Annotated[
    StrictBool,
    Field(description="record a decrease below available anyway (an oversell exposure)"),
]


Lines = Annotated[
    list[LineIn],
    Field(
        min_length=1, max_length=limits.LINES_MAX, description="each (sku, location) at most once"
    ),
]


class Availability(BaseModel):
    items: list[StockLevel]


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
    "INTEGRAL",
    "NAME_PATTERN",
    "PRINTABLE_PATTERN",
    "Availability",
    "Check",
    "CountResult",
    "Force",
    "Health",
    "InsufficientStockProblem",
    "LineIn",
    "Lines",
    "Location",
    "Problem",
    "PurchaseOrder",
    "PurchaseOrderClosedProblem",
    "Qty",
    "Readiness",
    "Reason",
    "Reference",
    "Request",
    "RequiredReason",
    "Reservation",
    "ReservationLine",
    "ReservationPage",
    "ReturnReceipt",
    "Sku",
    "SkuStock",
    "StockLevel",
    "StockPage",
    "Transfer",
    "TransitionProblem",
    "TtlSeconds",
]
