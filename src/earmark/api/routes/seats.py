"""Seats with per-tenant limits (docs/seats.md): the cap (scope `stock`), assignments,
invites and floating-seat heartbeats (scope `reserve`), and the pool with its
high-water mark (scope `read`). Every write takes an `Idempotency-Key`; an assignment is
also idempotent per (tenant, user), whatever the key.

Cap, overage and user ids are checked by the engine, not by the body's schema, so each
bad one is its own problem code (`invalid_seat_cap`, `invalid_overage`,
`invalid_user_id`) and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field, StrictBool, StrictInt
from pydantic.config import JsonDict
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Reserving, Stocking
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import INTEGRAL, NAME_PATTERN, Request
from earmark.errors import (
    InvalidOverage,
    InvalidSeatCap,
    InvalidUserId,
    InviteNotFound,
    OverCap,
    ReclaimBacklog,
    SeatAlreadyAssigned,
    SeatLimitReached,
    SeatNotFound,
    TenantNotFound,
)
from earmark.models import Seat, SeatFreed, SeatInvite, SeatPool, SeatUserPage

router = APIRouter(prefix="/v1/tenants", tags=["seats"])
Whole = Annotated[StrictInt, INTEGRAL]
LeaseSeconds = Annotated[StrictInt, Field(ge=1, le=limits.SEAT_LEASE_MS_MAX // 1000), INTEGRAL]

TenantPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=limits.TENANT_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="the tenant; letters, digits, '.', '_' and '-'",
    ),
]
# The bounds of a user id, cap and overage are documented here but checked by the engine,
# so that each is refused with its own code rather than the generic invalid_request.
USER_SCHEMA: JsonDict = {
    "minLength": 1,
    "maxLength": limits.SEAT_USER_LENGTH_MAX,
    "pattern": limits.SEAT_USER_PATTERN.pattern,
}
UserPath = Annotated[
    str,
    Path(
        description=f"the user id: 1-{limits.SEAT_USER_LENGTH_MAX} of letters, digits, "
        "'.', '_', '-', '@', '+' (422 `invalid_user_id` otherwise)",
        json_schema_extra=USER_SCHEMA,
    ),
]
USER_ERRORS = (InvalidUserId, TenantNotFound)


def also_200(
    model: type, why: str, responses: dict[int | str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    """A route that answers 201 when it creates and 200 when the user already held it."""
    return {200: {"model": model, "description": why}, **responses}


class CapIn(Request):
    """The tenant's cap and how far past it assignments may go."""

    cap: Whole = Field(
        description=f"seats, 0-{limits.SEAT_CAP_MAX} (422 `invalid_seat_cap` otherwise)",
        json_schema_extra={"minimum": 0, "maximum": limits.SEAT_CAP_MAX},
    )
    overage: str = Field(
        "none",
        description="none, 1.25x, 1.5x or 2x: the limit is floor(cap x factor) (422 "
        "`invalid_overage` otherwise)",
        json_schema_extra={"enum": list(limits.SEAT_OVERAGES)},
    )
    floating: StrictBool = Field(False, description="assignments are leases renewed by heartbeat")
    lease_seconds: LeaseSeconds | None = Field(
        None,
        description="the lease of a floating seat: required when floating, refused otherwise",
    )


class InviteIn(Request):
    """Hold a seat for a user until the invite is accepted or expires."""

    user: str = Field(
        description="the user id (422 `invalid_user_id` when bad)", json_schema_extra=USER_SCHEMA
    )
    ttl_seconds: Whole = Field(
        ge=1,
        le=limits.INVITE_TTL_MS_MAX // 1000,
        description="seconds until the invite expires and its seat is freed",
    )


@router.put(
    "/{tenant}/seats",
    response_model=SeatPool,
    responses=problem_responses(WRITES, InvalidSeatCap, InvalidOverage),
    summary="Set the tenant's seat cap and overage",
)
async def set_cap(
    tenant: TenantPath, body: CapIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """Lowering the cap below use evicts nobody: the tenant is `over_cap` until use falls
    to the limit (a `seats.over_cap` webhook says so)."""
    pool = await ctx.engine.set_seat_cap(
        tenant,
        body.cap,
        overage=body.overage,
        floating=body.floating,
        lease_seconds=body.lease_seconds,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(pool)


@router.get(
    "/{tenant}/seats",
    response_model=SeatPool | SeatUserPage,
    responses=problem_responses(TenantNotFound, InvalidUserId),
    summary="The tenant's seats, or a page of its assigned users",
)
async def get_seats(
    tenant: TenantPath,
    ctx: Reading,
    period: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
            description="YYYY-MM: the high-water mark of that month (UTC)",
        ),
    ] = None,
    users: Annotated[bool, Query(description="true: page the assigned users")] = False,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=limits.SEAT_USERS_PAGE_MAX)] = (
        limits.SEAT_USERS_PAGE_DEFAULT
    ),
) -> Response:
    """cap, factor, limit, assigned, invited, over_cap and the high-water mark of the
    billing period; with `users=true`, assigned users in user-id order."""
    if users:
        page = await ctx.engine.seat_users(tenant, cursor=cursor, limit=limit)
        return model_response(page)
    return model_response(await ctx.engine.seats(tenant, period=period))


@router.put(
    "/{tenant}/seats/{user}",
    response_model=Seat,
    status_code=201,
    responses=also_200(
        Seat,
        "the user already held the seat (or a replay)",
        problem_responses(WRITES, *USER_ERRORS, SeatLimitReached, OverCap, ReclaimBacklog),
    ),
    summary="Assign a seat: 201 the first time, 200 when the user already holds it",
)
async def assign(
    tenant: TenantPath, user: UserPath, ctx: Reserving, idempotency_key: IdempotencyKey
) -> Response:
    """409 `seat_limit_reached` (with `cap`, `used`, `limit`) when every seat is taken;
    409 `over_cap` while the tenant is over its cap."""
    seat = await ctx.engine.assign_seat(
        tenant, user, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(seat, 201 if seat.created and not seat.replayed else 200)


@router.delete(
    "/{tenant}/seats/{user}",
    response_model=SeatFreed,
    responses=problem_responses(WRITES, *USER_ERRORS),
    summary="Free a user's seat (or revoke its invite); idempotent",
)
async def free(
    tenant: TenantPath, user: UserPath, ctx: Reserving, idempotency_key: IdempotencyKey
) -> Response:
    freed = await ctx.engine.free_seat(
        tenant, user, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(freed)


@router.post(
    "/{tenant}/seats/{user}/heartbeat",
    response_model=Seat,
    responses=problem_responses(WRITES, *USER_ERRORS, SeatNotFound),
    summary="Renew a floating seat's lease",
)
async def heartbeat(
    tenant: TenantPath, user: UserPath, ctx: Reserving, idempotency_key: IdempotencyKey
) -> Response:
    """404 `seat_not_found` when the lease already ran out (the seat was freed)."""
    seat = await ctx.engine.renew_seat(
        tenant, user, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(seat)


@router.post(
    "/{tenant}/invites",
    response_model=SeatInvite,
    status_code=201,
    responses=also_200(
        SeatInvite,
        "the invite was already live (returned unchanged), or a replay",
        problem_responses(
            WRITES, *USER_ERRORS, SeatLimitReached, OverCap, SeatAlreadyAssigned, ReclaimBacklog
        ),
    ),
    summary="Hold a seat for a user until accepted or expired",
)
async def invite(
    tenant: TenantPath, body: InviteIn, ctx: Reserving, idempotency_key: IdempotencyKey
) -> Response:
    """The limit is checked now; 200 with the existing invite when one is live."""
    held = await ctx.engine.invite_seat(
        tenant,
        body.user,
        body.ttl_seconds,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(held, 201 if held.created and not held.replayed else 200)


@router.post(
    "/{tenant}/invites/{user}/accept",
    response_model=Seat,
    status_code=201,
    responses=also_200(
        Seat,
        "the user already held the seat (or a replay)",
        problem_responses(WRITES, *USER_ERRORS, InviteNotFound),
    ),
    summary="Turn a live invite into an assigned seat",
)
async def accept(
    tenant: TenantPath, user: UserPath, ctx: Reserving, idempotency_key: IdempotencyKey
) -> Response:
    """Never refused for the limit (the invite holds the seat); 404 `invite_not_found`
    when no live invite is left (it expired and its seat was freed)."""
    seat = await ctx.engine.accept_invite(
        tenant, user, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(seat, 201 if seat.created and not seat.replayed else 200)
