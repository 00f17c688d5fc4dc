"""Stock levels: read a SKU (every location, or one), read many, receive units, adjust
on_hand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field, StrictBool, StrictInt, field_validator
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.params import LocationQuery, SkuPath
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import (
    INTEGRAL,
    NAME_PATTERN,
    PRINTABLE_PATTERN,
    Availability,
    Location,
    Qty,
    Request,
    SkuStock,
    StockLevel,
    StockPage,
    printable,
)
from earmark.errors import InsufficientOnHand, ReclaimBacklog, SkuNotFound, WouldOversell

router = APIRouter(prefix="/v1", tags=["stock"])


class ReceiptIn(Request):
    """Units arrived at a location."""

    qty: Qty
    location: Location = limits.DEFAULT_LOCATION
    reference: Annotated[
        str, printable(limits.REFERENCE_LENGTH_MAX, "e.g. a purchase order number")
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
    reason: Annotated[str, printable(limits.REASON_LENGTH_MAX, "why", required=True)]
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


SkusQuery = Annotated[
    list[
        Annotated[
            str,
            Query(min_length=1, max_length=limits.SKU_LENGTH_MAX, pattern=NAME_PATTERN),
        ]
    ],
    Query(
        alias="sku",
        min_length=1,
        max_length=limits.SKUS_PER_READ_MAX,
        description="repeat for each SKU: ?sku=A&sku=B",
    ),
]


@router.get(
    "/skus/{sku}",
    response_model=SkuStock | StockLevel,
    responses=problem_responses(SkuNotFound),
    summary="Every bucket of a SKU: over the network, or at one location",
)
async def get_stock(
    sku: SkuPath,
    ctx: Reading,
    location: LocationQuery | None = None,
    channel: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=limits.CHANNEL_LENGTH_MAX,
            pattern=PRINTABLE_PATTERN,
            description="show `available` as this channel sees it (docs/channels.md)",
        ),
    ] = None,
) -> Response:
    """Without `location`: every bucket summed over the SKU's locations, with each location
    (`SkuStock`). With `location`: that location's buckets and `version` (`StockLevel`;
    a cycle count names that version). With `channel`: always a `SkuStock` (of the
    location, if one is named) whose `available` is what the channel may reserve (its
    buffer over the shared units, plus its allocation), with `unbuffered_available`,
    `allocated` and `channel_locations`. 404 `sku_not_found` when the SKU has no stock
    record (at the location)."""
    if channel is not None:
        return model_response(await ctx.engine.channel_stock(channel, sku, location))
    found = await ctx.engine.stock(sku, location)
    return model_response(found if location is None else found.locations[0])


@router.get(
    "/skus",
    response_model=StockPage,
    responses=problem_responses(),
    summary="Page through every stock record, by SKU prefix and location",
)
async def list_stock(
    ctx: Reading,
    prefix: Annotated[
        str,
        Query(
            max_length=limits.SKU_LENGTH_MAX,
            pattern=f"^$|{NAME_PATTERN}",
            description="only SKUs starting with this",
        ),
    ] = "",
    location: LocationQuery | None = None,
    cursor: Annotated[
        str | None,
        Query(max_length=64, description="`next_cursor` of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="records per page, about")] = 100,
    low_stock: Annotated[
        bool,
        Query(
            description="only records whose low-stock alert is active (as `GET /v1/alerts`): "
            "available fell to the reorder point and has not risen above `rearm_above`"
        ),
    ] = False,
) -> Response:
    """Each (sku, location) stock record's buckets, from the stock index in Redis (in
    `SSCAN` order, not sorted). Each page does bounded work: it may hold fewer than
    `limit` records (even none) while `next_cursor` is set; follow it until it is null.
    A record present throughout appears at least once. 422 `invalid_request` for a cursor
    this route did not give. With `low_stock=true` only the records that are low, as
    `GET /v1/alerts` lists them (a SKU with no reorder point is never low)."""
    page = await ctx.engine.stock_page(
        prefix=prefix, location=location, cursor=cursor, limit=limit, low_stock=low_stock
    )
    return model_response(page)


@router.get(
    "/availability",
    response_model=Availability,
    responses=problem_responses(),
    summary="Every bucket of many SKUs in one Redis round trip",
)
async def availability(
    skus: SkusQuery,
    ctx: Reading,
    location: LocationQuery = limits.DEFAULT_LOCATION,
) -> Response:
    """An unknown SKU reads as all zeros (nothing available)."""
    levels = await ctx.engine.availability([(sku, location) for sku in skus])
    return model_response(Availability(items=levels))


@router.post(
    "/skus/{sku}/receipts",
    response_model=StockLevel,
    responses=problem_responses(WRITES),
    summary="Units arrived: on_hand += qty",
)
async def receive(
    sku: SkuPath,
    body: ReceiptIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    level = await ctx.engine.receive(
        sku,
        body.qty,
        location=body.location,
        reference=body.reference,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(level)


@router.post(
    "/skus/{sku}/adjustments",
    response_model=StockLevel,
    responses=problem_responses(WRITES, WouldOversell, InsufficientOnHand, ReclaimBacklog),
    summary="Correct on_hand by delta",
)
async def adjust(
    sku: SkuPath,
    body: AdjustmentIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """409 `would_oversell` when a decrease would take available below zero (unless
    `force`), 409 `insufficient_on_hand` when on_hand would go below zero."""
    level = await ctx.engine.adjust(
        sku,
        body.delta,
        body.reason,
        location=body.location,
        force=body.force,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(level)
