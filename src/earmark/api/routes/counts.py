"""Cycle counts (docs/design/lifecycle.md): on_hand corrected to what a counter found, against
the stock version the counter read. Needs the `stock` scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Stocking
from earmark.api.params import SkuPath
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import INTEGRAL, CountResult, Location, Reason, Request
from earmark.errors import InsufficientOnHand, ReclaimBacklog, StaleCount

router = APIRouter(prefix="/v1", tags=["stock"])


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


@router.post(
    "/skus/{sku}/counts",
    response_model=CountResult,
    responses=problem_responses(WRITES, StaleCount, InsufficientOnHand, ReclaimBacklog),
    summary="A cycle count: on_hand moves by counted minus on_hand at the version read",
)
async def count(
    sku: SkuPath, body: CountIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """Read the location's `version` (GET /v1/skus/{sku}?location=...), count the shelf,
    send both: changes since the read are kept. Never refused for overselling (it records
    an `oversell_exposure`); 409 `stale_count` when the version is not newer than the last
    applied count's (that shelf was counted since), older than the last 256 changes of
    on_hand, or newer than the stock: read again and recount; 409
    `insufficient_on_hand` when the count contradicts what happened since the read."""
    result = await ctx.engine.count(
        sku,
        body.counted,
        body.version,
        location=body.location,
        reason=body.reason,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(result)
