"""Reorder points and low-stock alerts (docs/reconciliation.md). Setting needs the
`stock` scope, listing `read`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.params import SkuPath
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import INTEGRAL, Location
from earmark.api.schemas import Request as Body
from earmark.errors import InvalidReorderPoint, SkuNotFound
from earmark.models import LowStockAlert, ReorderSetting

router = APIRouter(prefix="/v1", tags=["alerts"])

Units = Annotated[StrictInt, Field(ge=0, le=limits.REORDER_UNITS_MAX), INTEGRAL]


class ReorderIn(Body):
    location: Location = limits.DEFAULT_LOCATION
    reorder_point: Annotated[Units, Field(description="alert when available falls to this")]
    rearm_above: Annotated[
        Units, Field(description="re-arm once available is above this (> reorder_point)")
    ]
    lead_time_days: (
        Annotated[StrictInt, Field(ge=0, le=limits.LEAD_TIME_DAYS_MAX), INTEGRAL] | None
    ) = None


class AlertList(BaseModel):
    items: list[LowStockAlert]


class ReorderList(BaseModel):
    items: list[ReorderSetting]


@router.put(
    "/skus/{sku}/reorder",
    response_model=ReorderSetting,
    responses=problem_responses(WRITES, InvalidReorderPoint),
    summary="Set the reorder point of a SKU at a location, and arm its low-stock alert",
)
async def set_reorder(
    sku: SkuPath, body: ReorderIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """From now on the first write that leaves available at or below `reorder_point`
    emits one `stock.low` event (and webhook), and none again until available has risen
    above `rearm_above`. A SKU already low fires at once. 422 `invalid_reorder_point`
    unless `rearm_above` > `reorder_point`. Like every write it needs an `Idempotency-Key`
    (400 `idempotency_key_required`): a replay of the same body answers the first result
    without writing again (`Idempotent-Replayed: true`); the key with another body is 422
    `idempotency_conflict`."""
    setting = await ctx.engine.set_reorder(
        sku,
        body.reorder_point,
        body.rearm_above,
        location=body.location,
        lead_time_days=body.lead_time_days,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(setting)


@router.get(
    "/skus/{sku}/reorder",
    response_model=ReorderList,
    responses=problem_responses(SkuNotFound),
    summary="The reorder point and low-stock alert state of a SKU, per location",
)
async def get_reorder(sku: SkuPath, ctx: Reading) -> Response:
    """Every location of the SKU that has a reorder point, by location, with whether its
    alert has fired and waits to re-arm (`low`, `low_since`); `items` is empty when no
    location has one. 404 `sku_not_found` when the SKU has no stock record."""
    return model_response(ReorderList(items=await ctx.engine.reorder_settings(sku)))


@router.get(
    "/alerts",
    response_model=AlertList,
    responses=problem_responses(),
    summary="SKUs currently low, with when they crossed their reorder point",
)
async def list_alerts(ctx: Reading, status: Literal["active"] = "active") -> Response:
    return model_response(AlertList(items=await ctx.engine.alerts(status)))
