"""``GET /v1/reservations``: held reservations a page at a time, to find a stuck hold
(``earmark.engine.ops.listing``). A module of its own beside ``reservations.py`` (the
write path), under the same tag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import Reading
from earmark.api.params import LocationQuery
from earmark.api.responses import model_response, problem_responses
from earmark.api.schemas import NAME_PATTERN, ReservationPage

router = APIRouter(prefix="/v1", tags=["reservations"])


@router.get(
    "/reservations",
    response_model=ReservationPage,
    responses=problem_responses(),
    summary="Held reservations, soonest expiry first, a page at a time",
)
async def list_reservations(
    ctx: Reading,
    sku: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=limits.SKU_LENGTH_MAX,
            pattern=NAME_PATTERN,
            description="only holds on this SKU (at `location`)",
        ),
    ] = None,
    location: LocationQuery = limits.DEFAULT_LOCATION,
    status: Annotated[
        str,
        Query(
            max_length=16,
            description="only `held` for now: the others are in `GET /v1/ledger` (422 "
            "`invalid_request` saying so)",
            json_schema_extra={"enum": list(limits.LISTED_RESERVATION_STATUSES)},
        ),
    ] = "held",
    customer: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=limits.CUSTOMER_LENGTH_MAX,
            pattern=r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$",  # printable, not blank
            description="only a drop's holds of this customer (trimmed and case-folded as "
            "`POST /v1/reservations` records it)",
        ),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[
        int,
        Query(ge=1, le=limits.RESERVATION_PAGE_MAX, description="reservations per page, at most"),
    ] = 50,
) -> Response:
    """Held reservations from the expiry indexes in Redis, soonest expiry first: every
    partition's (a cart held in several partitions appears once per partition), or the
    holds counted in one (sku, location)'s `reserved`. Committed, released, expired and
    shipped reservations are in the durable record: `GET /v1/ledger?type=committed`.
    A customer is recorded on the holds of a drop's SKUs only (docs/drops.md): with
    `customer`, the page lists those. Follow `next_cursor` until it is null; 422
    `invalid_request` for a cursor this route did not give."""
    page = await ctx.engine.held_reservations(
        sku=sku,
        location=location,
        status=status,
        customer=customer,
        cursor=cursor,
        limit=limit,
    )
    return model_response(page)
