"""The durable ledger: every recorded event, page by page (scope `read`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import Reading
from earmark.api.hooks import DurableRecord
from earmark.api.responses import model_response, problem_responses
from earmark.api.schemas import NAME_PATTERN, Rfc3339
from earmark.errors import LedgerUnavailable
from earmark.models import LedgerPage
from earmark.store import ledger
from earmark.store.events import ledger_entry

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


EVENT_TYPE_PATTERN = "^[a-z][a-z_]*$"
EVENT_TYPE_LENGTH_MAX = 32


def _name(description: str, length_max: int) -> object:
    return Query(min_length=1, max_length=length_max, pattern=NAME_PATTERN, description=description)


SkuFilter = Annotated[str | None, _name("only this SKU", limits.SKU_LENGTH_MAX)]
LocationFilter = Annotated[str | None, _name("only this location", limits.LOCATION_LENGTH_MAX)]
TypesFilter = Annotated[
    list[
        Annotated[
            str,
            Query(min_length=1, max_length=EVENT_TYPE_LENGTH_MAX, pattern=EVENT_TYPE_PATTERN),
        ]
    ],
    Query(
        alias="type",
        max_length=ledger.PAGE_TYPES_MAX,
        description="only these event types; repeat for several: ?type=damaged&type=written_off",
    ),
]
SinceFilter = Annotated[
    Rfc3339 | None,
    Query(description="only events that occurred at or after this time (RFC 3339, with offset)"),
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=ledger.CURSOR_LENGTH_MAX,
        pattern="^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page (with the same filters)",
    ),
]
Limit = Annotated[
    int,
    Query(ge=1, le=ledger.PAGE_LIMIT_MAX, description="events per page"),
]


async def ledger_of(request: Request) -> ledger.Ledger:
    durable: DurableRecord | None = getattr(request.app.state, "durable", None)
    found = None if durable is None else await durable.ledger_for_reads()
    if found is None:
        raise LedgerUnavailable("this service keeps no durable record to read the ledger from")
    return found


@router.get(
    "",
    response_model=LedgerPage,
    responses=problem_responses(),
    summary="Recorded events, oldest first, page by page",
)
async def read_ledger(
    request: Request,
    ctx: Reading,
    sku: SkuFilter = None,
    location: LocationFilter = None,
    types: TypesFilter = [],  # noqa: B006 (FastAPI copies the default)
    since: SinceFilter = None,
    cursor: Cursor = None,
    limit: Limit = ledger.PAGE_LIMIT_DEFAULT,
) -> Response:
    """Events reach the ledger only once the write-behind flusher has recorded them
    (normally within a second; `/readyz` reports the lag): the newest writes may not be
    here yet. Events are ordered by id (`<partition>/<stream id>`: by partition, then in
    the order they happened), so a page walk that starts before a flush does not see
    events recorded behind its cursor; start again to see them. Pass `next_cursor` as
    `cursor` (with the same filters) until it is null. 503 `ledger_unavailable` when the
    durable record cannot be reached, or this service keeps none."""
    query = ledger.PageQuery(
        sku=sku,
        location=location,
        types=tuple(types),
        since_ms=None if since is None else ledger.ms_since(since),
        after=None if cursor is None else ledger.decode_cursor(cursor),
        limit=limit,
    )
    page = await (await ledger_of(request)).page(query)
    items = [ledger_entry(event) for event in page.events]
    return model_response(LedgerPage(items=items, next_cursor=page.next_cursor))
