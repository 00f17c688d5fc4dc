"""Reservations: hold a cart, then commit, release, extend or ship it.

A reservation belongs to the API key that created it: commit, release, extend and ship
by another key are refused with 403 `not_owner`, unless that key has the `stock` scope
(an operator's). See docs/design/reservations.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import (
    Context,
    IdempotencyKey,
    Reading,
    Reserving,
    Stocking,
)
from earmark.api.params import ReservationId
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import (
    PRINTABLE_PATTERN,
    LineIn,
    Request,
    Reservation,
    TtlSeconds,
    printable,
)
from earmark.errors import (  # drops (docs/drops.md)
    CartSpansDrops,
    CommitInProgress,
    CustomerLimitExceeded,
    CustomerRequired,
    DropNotOpen,
    EarmarkError,
    InsufficientOnHand,
    InsufficientStock,
    NotOwner,
    RateLimited,
    ReclaimBacklog,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationReleased,
    SkuNotFound,
)

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])
STOCK_SCOPE = "stock"

DROP_REFUSALS = (CustomerRequired, DropNotOpen, CustomerLimitExceeded, RateLimited, CartSpansDrops)

# What a transition of an existing reservation can answer besides the usual.
TRANSITION_ERRORS: tuple[type[EarmarkError], ...] = (
    *WRITES,
    NotOwner,
    ReservationNotFound,
    ReservationNotHeld,
    CommitInProgress,
    ReservationExpired,
    ReservationReleased,
    SkuNotFound,
)


class ReservationIn(Request):
    """A cart to hold: every line or none."""

    lines: list[LineIn] = Field(
        min_length=1,
        max_length=limits.LINES_MAX,
        description="each (sku, location) at most once",
    )
    ttl_seconds: TtlSeconds | None = Field(None, description="default: the server's default TTL")
    channel: Annotated[
        str, printable(limits.CHANNEL_LENGTH_MAX, "where the order comes from, e.g. web")
    ] = ""
    customer: Annotated[
        str | None,
        Field(
            None,
            max_length=limits.CUSTOMER_LENGTH_MAX,
            pattern=PRINTABLE_PATTERN,
            description="the shopper as the checkout trusts it (account id, hashed email); "
            "trimmed and case-folded; required for a drop's SKU (docs/drops.md)",
        ),
    ] = None


class ExtendIn(Request):
    ttl_seconds: TtlSeconds


def owner_only(ctx: Context) -> bool:
    """A key acts only on the reservations it created, unless it is an operator's (the
    `stock` scope): a checkout service cannot commit or release another one's carts."""
    return STOCK_SCOPE not in ctx.caller.scopes


async def hold(ctx: Context, body: ReservationIn, idempotency_key: str) -> Response:
    """The reserve route's answer (shared with the one-pass route, earmark.api.hot)."""
    lines = [(line.sku, line.qty, line.location) for line in body.lines]
    with ctx.metrics.reservation("reserve"):
        held = await ctx.engine.reserve(
            lines,
            idempotency_key=idempotency_key,
            ttl_seconds=body.ttl_seconds,
            channel=body.channel,
            actor=ctx.caller.name,
            customer=body.customer,
        )
    return model_response(held, 201, {"Location": f"{router.prefix}/{held.id}"})


async def act(
    ctx: Context,
    operation: str,
    reservation_id: str,
    idempotency_key: str,
    ttl_seconds: float | None = None,
) -> Response:
    """The answer of a transition route (commit, release, extend or ship; shared with
    earmark.api.hot): a key acts only on its own reservations unless it has the stock scope."""
    call = getattr(ctx.engine, operation)  # commit, release, extend or ship
    args = (reservation_id,) if ttl_seconds is None else (reservation_id, ttl_seconds)
    with ctx.metrics.reservation(operation):
        reservation: Reservation = await call(
            *args,
            actor=ctx.caller.name,
            idempotency_key=idempotency_key,
            owner_only=owner_only(ctx),
        )
    return model_response(reservation)


@router.post(
    "",
    status_code=201,
    response_model=Reservation,
    responses=problem_responses(
        WRITES, InsufficientStock, SkuNotFound, ReclaimBacklog, *DROP_REFUSALS
    ),
    summary="Hold every line of a cart, or none",
)
async def create_reservation(
    body: ReservationIn,
    idempotency_key: IdempotencyKey,
    ctx: Reserving,
) -> Response:
    """201 with the hold; 409 `insufficient_stock` naming every short line; 404
    `sku_not_found` naming each line whose SKU has no stock at any location (a typo is
    not a sell-out)."""
    return await hold(ctx, body, idempotency_key)


@router.get(
    "/{reservation_id}",
    response_model=Reservation,
    responses=problem_responses(ReservationNotFound),
    summary="A reservation and its status",
)
async def get_reservation(reservation_id: ReservationId, ctx: Reading) -> Response:
    """`status` is one of held, committed, released, expired, shipped."""
    reservation = await ctx.engine.get_reservation(reservation_id)
    return model_response(reservation)


@router.post(
    "/{reservation_id}/commit",
    response_model=Reservation,
    responses=problem_responses(TRANSITION_ERRORS),
    summary="Held -> committed",
)
async def commit(
    reservation_id: ReservationId,
    ctx: Reserving,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Committing twice returns 200 again. 410 `reservation_expired` or
    `reservation_released` when the hold is gone; 409 `commit_in_progress` while another
    request commits the same reservation; 403 `not_owner` when another API key created
    it (unless this key has the `stock` scope)."""
    return await act(ctx, "commit", reservation_id, idempotency_key)


@router.post(
    "/{reservation_id}/release",
    response_model=Reservation,
    responses=problem_responses(TRANSITION_ERRORS),
    summary="Held -> released: the units are available again",
)
async def release(
    reservation_id: ReservationId,
    ctx: Reserving,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Releasing twice returns 200 again; 409 `invalid_transition` once committed; 403
    `not_owner` when another API key created it (unless this key has the `stock` scope)."""
    return await act(ctx, "release", reservation_id, idempotency_key)


@router.post(
    "/{reservation_id}/extend",
    response_model=Reservation,
    responses=problem_responses(TRANSITION_ERRORS),
    summary="A live hold now expires ttl_seconds from now",
)
async def extend(
    reservation_id: ReservationId,
    body: ExtendIn,
    ctx: Reserving,
    idempotency_key: IdempotencyKey,
) -> Response:
    return await act(ctx, "extend", reservation_id, idempotency_key, body.ttl_seconds)


@router.post(
    "/{reservation_id}/ship",
    response_model=Reservation,
    responses=problem_responses(TRANSITION_ERRORS, InsufficientOnHand),
    summary="Committed -> shipped: the units leave on_hand",
)
async def ship(
    reservation_id: ReservationId,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Shipping twice returns 200 again; 409 `invalid_transition` unless committed."""
    return await act(ctx, "ship", reservation_id, idempotency_key)
