"""Transfers between two locations of a SKU (docs/design/lifecycle.md): units leave on_hand at
the source for in_transit at the destination, then arrive.

Every write needs the `stock` scope and records the API key's name as actor, and the
request's `reason`. Every POST requires an `Idempotency-Key`: a replay returns the original
status and body, the same key with another body is 422 `idempotency_conflict`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.params import SkuPath, TransferId
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import INTEGRAL, Location, Qty, Reason, Reference, Request, Transfer
from earmark.errors import (
    InsufficientStock,
    ReclaimBacklog,
    TransferAlreadyReceived,
    TransferNotFound,
)

router = APIRouter(prefix="/v1", tags=["transfers"])


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


@router.post(
    "/skus/{sku}/transfers",
    status_code=201,
    response_model=Transfer,
    responses=problem_responses(WRITES, InsufficientStock, ReclaimBacklog),
    summary="Send units to another location: on_hand at from -> in_transit at to",
)
async def send_transfer(
    sku: SkuPath, body: TransferIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """201 with the transfer (status `in_transit`); 409 `insufficient_stock` when fewer
    units are available at `from_location` (expired holds there are reclaimed first)."""
    sent = await ctx.engine.transfer(
        sku,
        body.qty,
        body.from_location,
        body.to_location,
        reference=body.reference,
        reason=body.reason,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(sent, 201, {"Location": f"{router.prefix}/transfers/{sent.id}"})


@router.get(
    "/transfers/{transfer_id}",
    response_model=Transfer,
    responses=problem_responses(TransferNotFound),
    summary="A transfer and its status",
)
async def get_transfer(transfer_id: TransferId, ctx: Reading) -> Response:
    found = await ctx.engine.get_transfer(transfer_id)
    return model_response(found)


@router.post(
    "/transfers/{transfer_id}/receipt",
    response_model=Transfer,
    responses=problem_responses(WRITES, TransferNotFound, TransferAlreadyReceived),
    summary="The transfer arrived: in_transit -> on_hand at the destination",
)
async def receive_transfer(
    transfer_id: TransferId,
    body: TransferReceiptIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Missing units are written off and surplus units land in on_hand (each recorded as
    a `transfer_discrepancy`). Receiving again with the same `qty_received` returns 200
    and changes nothing; with another, 409 `transfer_already_received` (with `transfer`)."""
    received = await ctx.engine.receive_transfer(
        transfer_id,
        body.qty_received,
        reason=body.reason,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(received)
