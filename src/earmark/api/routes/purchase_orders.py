"""Purchase orders (docs/design/lifecycle.md): units a supplier promised (inbound), received in
one or more deliveries, then closed (shortfall blamed on the supplier) or cancelled.

An order whose lines live in several partitions is changed part by part: a call that
failed half way is finished by repeating it with the same `Idempotency-Key`.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import Field, StrictBool, field_validator
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.params import PurchaseOrderId
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import Lines, PurchaseOrder, Reason, Reference, Request, printable
from earmark.errors import PurchaseOrderClosed, PurchaseOrderNotFound

router = APIRouter(prefix="/v1/purchase-orders", tags=["purchase orders"])
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class PurchaseOrderIn(Request):
    """Units a supplier promised: inbound += qty per line."""

    lines: Lines
    supplier: Annotated[str, printable(limits.SUPPLIER_LENGTH_MAX, "who delivers", required=True)]
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


@router.post(
    "",
    status_code=201,
    response_model=PurchaseOrder,
    responses=problem_responses(WRITES),
    summary="Expect units from a supplier: inbound += qty per line",
)
async def create_purchase_order(
    body: PurchaseOrderIn, idempotency_key: IdempotencyKey, ctx: Stocking
) -> Response:
    """The `Idempotency-Key` (required on every POST) matters most here: a retry after a
    failure half way must reach the same order, or its inbound would never clear."""
    created = await ctx.engine.create_purchase_order(
        [(line.sku, line.qty, line.location) for line in body.lines],
        supplier=body.supplier,
        expected_date=body.expected_date,
        idempotency_key=idempotency_key,
        reference=body.reference,
        reason=body.reason,
        actor=ctx.caller.name,
    )
    return model_response(created, 201, {"Location": f"{router.prefix}/{created.id}"})


@router.get(
    "/{po_id}",
    response_model=PurchaseOrder,
    responses=problem_responses(PurchaseOrderNotFound),
    summary="A purchase order: expected, received and outstanding per line",
)
async def get_purchase_order(po_id: PurchaseOrderId, ctx: Reading) -> Response:
    """`status` is open, closed or cancelled."""
    found = await ctx.engine.get_purchase_order(po_id)
    return model_response(found)


@router.post(
    "/{po_id}/receipts",
    response_model=PurchaseOrder,
    responses=problem_responses(WRITES, PurchaseOrderNotFound, PurchaseOrderClosed),
    summary="A delivery: inbound -> on_hand per line (over-delivery lands in on_hand too)",
)
async def receive_purchase_order(
    po_id: PurchaseOrderId,
    body: PurchaseOrderReceiptIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """422 `invalid_request` for a line the order does not have; 409
    `purchase_order_closed` once it is closed or cancelled (parts received before it
    stay received: `received_before` names them)."""
    lines = [(line.sku, line.qty, line.location) for line in body.lines]
    received = await ctx.engine.receive_purchase_order(
        po_id, lines, reason=body.reason, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(received)


@router.post(
    "/{po_id}/close",
    response_model=PurchaseOrder,
    responses=problem_responses(WRITES, PurchaseOrderNotFound, PurchaseOrderClosed),
    summary="No more units expected: inbound loses what is outstanding",
)
async def close_purchase_order(
    po_id: PurchaseOrderId,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
    body: Annotated[PurchaseOrderCloseIn | None, Body()] = None,
) -> Response:
    """Without a body: close (the undelivered units are a `supplier_discrepancy`). With
    `cancel`: cancel (the supplier is not blamed). Closing or cancelling twice returns 200
    again; 409 `purchase_order_closed` to cancel a closed order or close a cancelled one."""
    body = body or PurchaseOrderCloseIn()
    closed = await ctx.engine.close_purchase_order(
        po_id,
        cancel=body.cancel,
        reason=body.reason,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(closed)
