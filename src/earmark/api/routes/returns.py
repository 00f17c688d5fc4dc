"""Customer returns (docs/design/lifecycle.md): units of a shipped reservation come back into
``returned`` (quarantine), then are restocked, found damaged or written off.

Every write needs the `stock` scope and records the API key's name as actor.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import Field
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Stocking
from earmark.api.params import ReservationId, SkuPath
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import Location, Qty, Reason, Request, ReturnReceipt, Sku, StockLevel
from earmark.errors import (
    InsufficientUnits,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationReleased,
    ReturnExceedsShipped,
)

router = APIRouter(prefix="/v1", tags=["returns"])


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


@router.post(
    "/reservations/{reservation_id}/returns",
    status_code=201,
    response_model=ReturnReceipt,
    responses=problem_responses(
        WRITES,
        ReservationNotFound,
        ReservationNotHeld,
        ReservationExpired,
        ReservationReleased,
        ReturnExceedsShipped,
    ),
    summary="Units of a shipped line come back into quarantine (returned)",
)
async def receive_return(
    reservation_id: ReservationId,
    body: ReturnIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """At most what the reservation shipped of the line, minus what already came back
    (409 `return_exceeds_shipped`). 409 `invalid_transition` (or 410) unless the
    reservation shipped; 422 `invalid_request` when it has no such line."""
    receipt = await ctx.engine.receive_return(
        reservation_id,
        body.sku,
        body.qty,
        location=body.location,
        reason=body.reason,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(receipt, 201)


@router.post(
    "/skus/{sku}/returned/dispositions",
    response_model=StockLevel,
    responses=problem_responses(WRITES, InsufficientUnits),
    summary="Returned units leave quarantine: restocked, damaged or written off",
)
async def dispose_returned(
    sku: SkuPath, body: DispositionIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """409 `insufficient_units` (bucket `returned`) when fewer units are in quarantine."""
    level = await ctx.engine.dispose_returned(
        sku,
        body.qty,
        body.disposition,
        location=body.location,
        reason=body.reason,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(level)
