"""Drops (docs/drops.md): a set of SKUs sold from ``opens_at`` (Redis clock) under a
per-customer limit, decided in the script that claims each hold.

Creating and changing a drop needs the `stock` scope and records the API key's name as
actor. Reading one needs the `read` scope. Joining and leaving its waitlist need the
`reserve` scope (the checkout service acts for its shopper); reading an entry `read`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field, StrictBool, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Reserving, Stocking
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import (
    INTEGRAL,
    NAME_PATTERN,
    PRINTABLE_PATTERN,
    Request,
    Rfc3339,
    Sku,
    TtlSeconds,
)
from earmark.errors import (
    CustomerLimitExceeded,
    DropAlreadyOpen,
    DropExists,
    DropNotFound,
    InvalidRequest,
    SkuInDrop,
    SkuNotInDrop,
    WaitlistDisabled,
    WaitlistEntryNotFound,
)
from earmark.models import Drop, DropPage, WaitlistEntry

router = APIRouter(prefix="/v1/drops", tags=["drops"])

DropId = Annotated[str, Path(description="the drop's id, as created")]
Limit = Annotated[
    StrictInt,
    Field(ge=1, le=limits.DROP_CUSTOMER_LIMIT_MAX, description="units per customer"),
    INTEGRAL,
]


class DropIn(Request):
    """A drop: its SKUs (all in one partition) and its rules."""

    id: Annotated[
        str,
        Field(min_length=1, max_length=limits.DROP_ID_LENGTH_MAX, pattern=NAME_PATTERN),
    ]
    skus: list[Sku] = Field(
        min_length=1,
        max_length=limits.DROP_SKUS_MAX,
        json_schema_extra={"uniqueItems": True},
        description="distinct SKUs, all in one partition (docs/drops.md)",
    )
    opens_at: Rfc3339
    closes_at: Rfc3339 | None = Field(None, description="after opens_at; null: never")
    per_customer_limit: Limit | None = None
    hold_ttl_seconds: TtlSeconds | None = None
    waitlist: StrictBool = False
    offer_ttl_seconds: TtlSeconds | None = None


class DropPatch(Request):
    """The rules to change (before the drop opens); fields left out keep their value,
    ``null`` for ``closes_at`` or ``per_customer_limit`` means none."""

    opens_at: Rfc3339 | None = None
    closes_at: Rfc3339 | None = None
    per_customer_limit: Limit | None = None
    hold_ttl_seconds: TtlSeconds | None = None
    waitlist: StrictBool | None = None
    offer_ttl_seconds: TtlSeconds | None = None


@router.post(
    "",
    status_code=201,
    response_model=Drop,
    responses=problem_responses(WRITES, DropExists, SkuInDrop),
    summary="Create a drop",
)
async def create_drop(body: DropIn, ctx: Stocking, idempotency_key: IdempotencyKey) -> Response:
    """201 with the drop; 409 `drop_exists` for a taken id, `sku_in_drop` for a SKU of
    another drop; 422 `invalid_request` for times in the wrong order or SKUs of several
    partitions."""
    drop = await ctx.engine.create_drop(
        body.id,
        body.skus,
        opens_at=body.opens_at,
        closes_at=body.closes_at,
        per_customer_limit=body.per_customer_limit,
        hold_ttl_seconds=body.hold_ttl_seconds,
        waitlist=body.waitlist,
        offer_ttl_seconds=body.offer_ttl_seconds,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(drop, 201, {"Location": f"{router.prefix}/{drop.id}"})


@router.get(
    "",
    response_model=DropPage,
    responses=problem_responses(),
    summary="Every drop, by id, page by page, with its live figures",
)
async def list_drops(
    ctx: Reading,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=limits.DROP_ID_LENGTH_MAX,
            pattern=NAME_PATTERN,
            description="`next_cursor` of the previous page",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=limits.DROP_PAGE_LIMIT_MAX, description="drops per page")
    ] = 50,
) -> Response:
    """Each drop as `GET /v1/drops/{id}` answers it (rules, `open`, `sold`, `held`), in id
    order. Pass `next_cursor` as `cursor` until it is null."""
    return model_response(await ctx.engine.list_drops(cursor=cursor, limit=limit))


@router.get(
    "/{drop_id}",
    response_model=Drop,
    responses=problem_responses(DropNotFound),
    summary="A drop's rules and live figures",
)
async def get_drop(drop_id: DropId, ctx: Reading) -> Response:
    return model_response(await ctx.engine.get_drop(drop_id))


@router.patch(
    "/{drop_id}",
    response_model=Drop,
    responses=problem_responses(WRITES, DropNotFound, DropAlreadyOpen),
    summary="Change a drop's times and limits before it opens",
)
async def update_drop(
    drop_id: DropId, body: DropPatch, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """409 `drop_already_open` once the drop has opened (Redis clock)."""
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("opens_at", "hold_ttl_seconds", "waitlist", "offer_ttl_seconds"):
        if name in changes and changes[name] is None:
            del changes[name]  # null for a field that cannot be none: unchanged
    drop = await ctx.engine.update_drop(
        drop_id, **changes, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(drop)


# -- the waitlist (docs/drops.md, "Waitlist") ----------------------------------------------

CustomerId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=limits.CUSTOMER_LENGTH_MAX,
        pattern=PRINTABLE_PATTERN,
        description="the customer, as sent when joining (trimmed and case-folded)",
    ),
]
EntrySku = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=limits.SKU_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="the SKU of the entry; may be left out while the customer waits for "
        "one SKU of the drop only",
    ),
]


class WaitlistJoin(Request):
    """A customer asking to be next in line for units of one of the drop's SKUs."""

    customer: Annotated[
        str,
        Field(
            max_length=limits.CUSTOMER_LENGTH_MAX,
            pattern=PRINTABLE_PATTERN,
            description="the shopper as the checkout trusts it; trimmed and case-folded",
        ),
    ]
    sku: Sku
    qty: Annotated[
        StrictInt,
        Field(ge=1, le=limits.DROP_CUSTOMER_LIMIT_MAX, description="units wanted"),
        INTEGRAL,
    ] = 1


@router.post(
    "/{drop_id}/waitlist",
    status_code=201,
    response_model=WaitlistEntry,
    responses=problem_responses(
        WRITES, DropNotFound, WaitlistDisabled, SkuNotInDrop, CustomerLimitExceeded
    ),
    summary="Join a drop's waitlist for one SKU",
)
async def join_waitlist(
    drop_id: DropId, body: WaitlistJoin, ctx: Reserving, idempotency_key: IdempotencyKey
) -> Response:
    """201 with the entry and its `position` (1: next in line). Joining again while the
    entry waits or holds an offer answers 201 with that same entry (its `joined_at` is
    the first join's); 409 `waitlist_disabled` when the drop has no waitlist,
    `sku_not_in_drop`, `customer_limit_exceeded` for more units than the drop's limit."""
    entry = await ctx.engine.join_waitlist(
        drop_id,
        body.customer,
        body.sku,
        body.qty,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
    )
    return model_response(entry, 201)


@router.get(
    "/{drop_id}/waitlist/{customer:path}",
    response_model=WaitlistEntry,
    responses=problem_responses(DropNotFound, WaitlistEntryNotFound, SkuNotInDrop, InvalidRequest),
    summary="A customer's waitlist entry: status, position, offer",
)
async def get_waitlist_entry(
    drop_id: DropId, customer: CustomerId, ctx: Reading, sku: EntrySku = None
) -> Response:
    """422 `invalid_request` (field `sku`) when the customer waits for several SKUs of the
    drop and `sku` is left out."""
    return model_response(await ctx.engine.get_waitlist_entry(drop_id, customer, sku))


@router.post(
    "/{drop_id}/waitlist/{customer:path}/decline",
    response_model=WaitlistEntry,
    responses=problem_responses(
        WRITES, DropNotFound, WaitlistEntryNotFound, SkuNotInDrop, InvalidRequest
    ),
    summary="Leave a drop's waitlist",
)
async def decline_waitlist(
    drop_id: DropId,
    customer: CustomerId,
    ctx: Reserving,
    idempotency_key: IdempotencyKey,
    sku: EntrySku = None,
) -> Response:
    """The entry, `declined`; declining a finished entry changes nothing."""
    entry = await ctx.engine.decline_waitlist(
        drop_id, customer, sku, actor=ctx.caller.name, idempotency_key=idempotency_key
    )
    return model_response(entry)
