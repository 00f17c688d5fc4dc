"""Losses (docs/design/lifecycle.md): units found damaged, and units written off (from on_hand
or from damaged). Every write needs the `stock` scope and records the API key's name as
actor and the request's `reason`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import Field
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Stocking
from earmark.api.params import SkuPath
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import Force, Location, Qty, Request, RequiredReason, StockLevel
from earmark.errors import InsufficientOnHand, InsufficientUnits, ReclaimBacklog, WouldOversell

router = APIRouter(prefix="/v1", tags=["stock"])


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


@router.post(
    "/skus/{sku}/damage",
    response_model=StockLevel,
    responses=problem_responses(WRITES, WouldOversell, InsufficientOnHand, ReclaimBacklog),
    summary="Units on hand are damaged: on_hand -> damaged",
)
async def damage(
    sku: SkuPath, body: DamageIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """409 `would_oversell` below available unless `force` (a forced one records an
    `oversell_exposure`); 409 `insufficient_on_hand` beyond on_hand, forced or not."""
    level = await ctx.engine.damage(
        sku,
        body.qty,
        body.reason,
        location=body.location,
        force=body.force,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(level)


@router.post(
    "/skus/{sku}/write-offs",
    response_model=StockLevel,
    responses=problem_responses(
        WRITES, WouldOversell, InsufficientOnHand, InsufficientUnits, ReclaimBacklog
    ),
    summary="Units are written off, from on_hand or from damaged",
)
async def write_off(
    sku: SkuPath, body: WriteOffIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """From on_hand as `damage` (409 `would_oversell`, `insufficient_on_hand`); from
    damaged, 409 `insufficient_units` (bucket `damaged`)."""
    level = await ctx.engine.write_off(
        sku,
        body.qty,
        body.reason,
        source=body.source,
        location=body.location,
        force=body.force,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(level)
