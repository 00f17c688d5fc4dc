"""Channels (docs/channels.md): safety buffers per sales channel (a default and SKU
overrides) and allocations, units ring-fenced for one channel. The reserve script decides
with them (`POST /v1/reservations` with a `channel`); `GET /v1/skus/{sku}?channel=` shows
a channel's view.

Every change needs the `stock` scope, an `Idempotency-Key`, and records the API key's
name as actor; reading a channel needs `read`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import Field, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.params import LocationQuery, SkuPath
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import INTEGRAL, NAME_PATTERN, Location, Request, Sku
from earmark.errors import (
    AllocationShort,
    ChannelRulesFull,
    InsufficientStock,
    InvalidChannelRule,
    SkuNotFound,
)
from earmark.models import Allocation, ChannelSettings, ChannelSkuRule

router = APIRouter(prefix="/v1/channels", tags=["channels"])

ChannelPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=limits.CHANNEL_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="the channel, as reservations name it (e.g. marketplace)",
    ),
]
Units = Annotated[StrictInt, Field(ge=0, le=limits.CHANNEL_BUFFER_UNITS_MAX), INTEGRAL]
Percent = Annotated[StrictInt, Field(ge=0, le=limits.CHANNEL_BUFFER_PERCENT_MAX), INTEGRAL]
Move = Annotated[
    StrictInt,
    Field(
        ge=-limits.QTY_MAX,
        le=limits.QTY_MAX,
        description="units to fence (> 0) or give back to the shared pool (< 0); not 0",
        json_schema_extra={"not": {"const": 0}},
    ),
    INTEGRAL,
]
RULE_ERRORS = (InvalidChannelRule, ChannelRulesFull)


class RuleIn(Request):
    """The channel sees 0 when available <= `floor`, else
    max(0, available - max(`buffer_units`, ceil(available * `buffer_percent` / 100)))."""

    buffer_units: Annotated[Units, Field(description="units kept back")] = 0
    buffer_percent: Annotated[Percent, Field(description="percent of available kept back")] = 0
    floor: Annotated[Units, Field(description="at or below this, the channel sees 0")] = 0


class AllocationIn(Request):
    sku: Sku
    location: Location = limits.DEFAULT_LOCATION
    qty: Move


@router.put(
    "/{channel}",
    response_model=ChannelSettings,
    responses=problem_responses(WRITES, *RULE_ERRORS),
    summary="Set a channel's default buffer",
)
async def set_channel(
    channel: ChannelPath, body: RuleIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """Applies to every SKU the channel has no override for, in every partition. Returns
    the channel's settings."""
    found = await ctx.engine.set_channel(
        channel,
        buffer_units=body.buffer_units,
        buffer_percent=body.buffer_percent,
        floor=body.floor,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(found)


@router.get(
    "/{channel}",
    response_model=ChannelSettings,
    responses=problem_responses(),
    summary="A channel's default buffer and SKU overrides",
)
async def get_channel(channel: ChannelPath, ctx: Reading) -> Response:
    """A channel never set has no default and no overrides: it sees plain availability."""
    return model_response(await ctx.engine.channel(channel))


@router.put(
    "/{channel}/skus/{sku}",
    response_model=ChannelSkuRule,
    responses=problem_responses(WRITES, *RULE_ERRORS, SkuNotFound),
    summary="Set a channel's buffer for one SKU (overrides the default)",
)
async def set_channel_sku(
    channel: ChannelPath,
    sku: SkuPath,
    body: RuleIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """404 `sku_not_found` for a SKU with no stock record at any location."""
    found = await ctx.engine.set_channel_sku(
        channel,
        sku,
        buffer_units=body.buffer_units,
        buffer_percent=body.buffer_percent,
        floor=body.floor,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(found)


@router.delete(
    "/{channel}/skus/{sku}",
    response_model=ChannelSkuRule,
    responses=problem_responses(WRITES),
    summary="Remove a channel's override of one SKU (the default applies again)",
)
async def remove_channel_sku(
    channel: ChannelPath, sku: SkuPath, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """`removed` says whether there was an override; removing none changes nothing."""
    found = await ctx.engine.remove_channel_sku(
        channel, sku, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(found)


@router.post(
    "/{channel}/allocations",
    response_model=Allocation,
    responses=problem_responses(
        WRITES, InvalidChannelRule, InsufficientStock, AllocationShort, SkuNotFound
    ),
    summary="Fence units of a SKU for one channel, or give them back (negative qty)",
)
async def allocate(
    channel: ChannelPath, body: AllocationIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """Fenced units are counted in `reserved`: only this channel may reserve them, and
    its reserves draw them down first. 409 `insufficient_stock` when fewer are available
    to fence, `allocation_short` when fewer are allocated to give back; 404
    `sku_not_found` without a stock record at the location."""
    found = await ctx.engine.allocate(
        channel,
        body.sku,
        body.location,
        qty=body.qty,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(found)


@router.delete(
    "/{channel}/allocations/{sku}",
    response_model=Allocation,
    responses=problem_responses(WRITES, SkuNotFound),
    summary="Give a channel's whole allocation of a SKU at a location back",
)
async def deallocate(
    channel: ChannelPath,
    sku: SkuPath,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
    location: LocationQuery = limits.DEFAULT_LOCATION,
) -> Response:
    found = await ctx.engine.deallocate(
        channel, sku, location, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(found)
