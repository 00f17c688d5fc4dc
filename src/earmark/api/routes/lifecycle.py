"""The stock lifecycle (docs/lifecycle.md): transfers between locations, customer
returns and what becomes of them, damage, write-offs and cycle counts.

Every write needs the `stock` scope and records the API key's name as actor, and the
request's `reason`. Every POST accepts an `Idempotency-Key`: a replay returns the original
status and body, the same key with another body is 422 `idempotency_conflict`.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.params import (
    ReservationId,
    SkuPath,
    TransferId,
    known_reservation,
    known_transfer,
)
from earmark.api.responses import model_response, problem_responses
from earmark.api.schemas import (
    CountIn,
    CountResult,
    DamageIn,
    DispositionIn,
    InsufficientStockProblem,
    ReturnIn,
    ReturnReceipt,
    StockLevel,
    Transfer,
    TransferIn,
    TransferReceiptIn,
    WriteOffIn,
)

router = APIRouter(prefix="/v1")


# -- transfers ---------------------------------------------------------------------------


@router.post(
    "/skus/{sku}/transfers",
    status_code=201,
    response_model=Transfer,
    responses=problem_responses(400, 409, models={409: InsufficientStockProblem}),
    summary="Send units to another location: on_hand at from -> in_transit at to",
    tags=["transfers"],
)
async def send_transfer(
    sku: SkuPath, body: TransferIn, ctx: Stocking, idempotency_key: IdempotencyKey = None
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
    responses=problem_responses(404),
    summary="A transfer and its status",
    tags=["transfers"],
)
async def get_transfer(transfer_id: TransferId, ctx: Reading) -> Response:
    with known_transfer(transfer_id):
        found = await ctx.engine.get_transfer(transfer_id)
    return model_response(found)


@router.post(
    "/transfers/{transfer_id}/receipt",
    response_model=Transfer,
    responses=problem_responses(400, 404, 409),
    summary="The transfer arrived: in_transit -> on_hand at the destination",
    tags=["transfers"],
)
async def receive_transfer(
    transfer_id: TransferId,
    body: TransferReceiptIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Missing units are written off and surplus units land in on_hand (each recorded as
    a `transfer_discrepancy`). Receiving again with the same `qty_received` returns 200
    and changes nothing; with another, 409 `transfer_already_received` (with `transfer`)."""
    with known_transfer(transfer_id):
        received = await ctx.engine.receive_transfer(
            transfer_id,
            body.qty_received,
            reason=body.reason,
            actor=ctx.caller.name,
            idempotency_key=idempotency_key,
        )
    return model_response(received)


# -- returns -----------------------------------------------------------------------------


@router.post(
    "/reservations/{reservation_id}/returns",
    status_code=201,
    response_model=ReturnReceipt,
    responses=problem_responses(400, 404, 409, 410),
    summary="Units of a shipped line come back into quarantine (returned)",
    tags=["returns"],
)
async def receive_return(
    reservation_id: ReservationId,
    body: ReturnIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """At most what the reservation shipped of the line, minus what already came back
    (409 `return_exceeds_shipped`). 409 `invalid_transition` (or 410) unless the
    reservation shipped; 422 `invalid_request` when it has no such line."""
    with known_reservation(reservation_id):
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
    responses=problem_responses(400, 409),
    summary="Returned units leave quarantine: restocked, damaged or written off",
    tags=["returns"],
)
async def dispose_returned(
    sku: SkuPath, body: DispositionIn, ctx: Stocking, idempotency_key: IdempotencyKey = None
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


# -- damage, write-offs, counts ------------------------------------------------------------


@router.post(
    "/skus/{sku}/damage",
    response_model=StockLevel,
    responses=problem_responses(400, 409),
    summary="Units on hand are damaged: on_hand -> damaged",
    tags=["stock"],
)
async def damage(
    sku: SkuPath, body: DamageIn, ctx: Stocking, idempotency_key: IdempotencyKey = None
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
    responses=problem_responses(400, 409),
    summary="Units are written off, from on_hand or from damaged",
    tags=["stock"],
)
async def write_off(
    sku: SkuPath, body: WriteOffIn, ctx: Stocking, idempotency_key: IdempotencyKey = None
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


@router.post(
    "/skus/{sku}/counts",
    response_model=CountResult,
    responses=problem_responses(400, 409),
    summary="A cycle count: on_hand moves by counted minus on_hand at the version read",
    tags=["stock"],
)
async def count(
    sku: SkuPath, body: CountIn, ctx: Stocking, idempotency_key: IdempotencyKey = None
) -> Response:
    """Read the location's `version` (GET /v1/skus/{sku}?location=...), count the shelf,
    send both: changes since the read are kept. Never refused for overselling (it records
    an `oversell_exposure`); 409 `stale_count` when the version is older than the last 256
    changes of on_hand (or newer than the stock): read again and recount; 409
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
