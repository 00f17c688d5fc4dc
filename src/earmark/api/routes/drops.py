"""Drops (docs/drops.md): a set of SKUs sold from ``opens_at`` (Redis clock) under a
per-customer limit, decided in the script that claims each hold.

Creating and changing a drop needs the `stock` scope and records the API key's name as
actor. Reading one needs the `read` scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, Field, StrictBool, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import INTEGRAL, NAME_PATTERN, Request, Sku, TtlSeconds
from earmark.errors import DropAlreadyOpen, DropExists, DropNotFound, SkuInDrop
from earmark.models import Drop, DropPage

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
    opens_at: AwareDatetime
    closes_at: AwareDatetime | None = Field(None, description="after opens_at; null: never")
    per_customer_limit: Limit | None = None
    hold_ttl_seconds: TtlSeconds | None = None
    waitlist: StrictBool = False
    offer_ttl_seconds: TtlSeconds | None = None


class DropPatch(Request):
    """The rules to change (before the drop opens); fields left out keep their value,
    ``null`` for ``closes_at`` or ``per_customer_limit`` means none."""

    opens_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None
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
