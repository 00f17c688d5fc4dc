"""Reconciliation against external counts and discrepancy cases
(docs/reconciliation.md). Writes need the `stock` scope, reads `read`; the resolver's API
key name is the actor of the correcting adjustment or write-off."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import Field, StrictInt
from starlette.responses import Response

from earmark import limits
from earmark.api.deps import IdempotencyKey, Reading, Stocking
from earmark.api.responses import WRITES, model_response, problem_responses
from earmark.api.schemas import (
    INTEGRAL,
    NAME_PATTERN,
    PRINTABLE_PATTERN,
    Location,
    Rfc3339,
    Sku,
    printable,
)
from earmark.api.schemas import Request as Body
from earmark.durable.reconciliation import CountLine, ReconciliationService
from earmark.errors import (
    DiscrepancyNotFound,
    DiscrepancyResolved,
    InvalidReconciliation,
    LedgerUnavailable,
    ReconciliationNotFound,
    ReconciliationTooLarge,
    WouldOversell,
)
from earmark.models import DiscrepancyCase, DiscrepancyPage, ReconciliationReport
from earmark.store.pages import ms_since
from earmark.store.reconciliation import CaseQuery

router = APIRouter(prefix="/v1", tags=["reconciliation"])


class CountIn(Body):
    sku: Sku
    location: Location = limits.DEFAULT_LOCATION
    qty: Annotated[
        StrictInt,
        Field(ge=0, le=limits.RECONCILIATION_QTY_MAX, description="units the source counted"),
        INTEGRAL,
    ]


class ReconciliationIn(Body):
    source: Annotated[
        str,
        Field(
            min_length=1,
            max_length=limits.SOURCE_LENGTH_MAX,
            pattern=NAME_PATTERN,
            description="who counted, e.g. `3pl-east`",
        ),
    ]
    counted_at: Rfc3339 = Field(description="when the source counted (RFC 3339)")
    counts: list[CountIn] = Field(
        description=f"at most {limits.RECONCILIATION_LINES_MAX:,} lines (413 "
        "`reconciliation_too_large` beyond: stream larger files with `earmark reconcile`); "
        "each (sku, location) once"
    )
    threshold_units: Annotated[
        StrictInt | None,
        Field(ge=0, le=limits.RECONCILIATION_QTY_MAX, description="a case above this many units"),
        INTEGRAL,
    ] = None
    threshold_percent: Annotated[
        float | None,
        Field(ge=0, le=1_000, allow_inf_nan=False, description="or above this % of expected"),
    ] = None


class AssignIn(Body):
    assignee: Annotated[
        str, printable(limits.ASSIGNEE_LENGTH_MAX, "who investigates", required=True)
    ]
    notes: Annotated[str, printable(limits.CASE_TEXT_LENGTH_MAX, "notes on the case")] | None = None


class ResolveIn(Body):
    action: Literal["adjust", "write_off", "dismiss"]
    reason: Annotated[str, printable(limits.CASE_TEXT_LENGTH_MAX, "why", required=True)]
    root_cause: Annotated[str, printable(limits.CASE_TEXT_LENGTH_MAX, "what caused it")] | None = (
        None
    )


IdPath = Annotated[str, Path(min_length=1, max_length=96, pattern=PRINTABLE_PATTERN)]


def service_of(request: Request) -> ReconciliationService:
    durable = getattr(request.app.state, "durable", None)
    found = None if durable is None else getattr(durable, "reconciliations", None)
    if found is None:
        raise LedgerUnavailable("this service keeps no durable record to reconcile against")
    service: ReconciliationService = found
    return service


@router.post(
    "/reconciliations",
    response_model=ReconciliationReport,
    status_code=201,
    responses=problem_responses(WRITES, InvalidReconciliation, ReconciliationTooLarge),
    summary="Compare external counts with the durable record as of counted_at",
)
async def reconcile(
    request: Request, body: ReconciliationIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """Each line's expected count is on_hand as the durable record had it at
    `counted_at` (sales and holds since then are not discrepancies). A line over
    `threshold_units` **or** `threshold_percent` of expected (a zero expected count with a
    non-zero one always) opens a case, due `EARMARK_DISCREPANCY_SLA_HOURS` later."""
    if len(body.counts) > limits.RECONCILIATION_LINES_MAX:
        raise ReconciliationTooLarge(
            f"{len(body.counts)} count lines; at most {limits.RECONCILIATION_LINES_MAX} per "
            "request: use `earmark reconcile FILE.csv` for larger files",
            lines=len(body.counts),
            limit=limits.RECONCILIATION_LINES_MAX,
        )
    service = service_of(request)
    fingerprint = hashlib.sha256(orjson.dumps(body.model_dump(mode="json"))).hexdigest()[:32]
    report = await service.reconcile(
        body.source,
        ms_since(body.counted_at) - (1 if body.counted_at.microsecond % 1000 else 0),
        [CountLine(c.sku, c.location, c.qty) for c in body.counts],
        threshold_units=body.threshold_units,
        threshold_percent=body.threshold_percent,
        actor=ctx.caller.name,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )
    return model_response(report, 201, {"Location": f"{router.prefix}/reconciliations/{report.id}"})


@router.get(
    "/reconciliations/{reconciliation_id}",
    response_model=ReconciliationReport,
    responses=problem_responses(ReconciliationNotFound),
    summary="A reconciliation's report",
)
async def read_reconciliation(
    request: Request, reconciliation_id: IdPath, ctx: Reading
) -> Response:
    return model_response(await service_of(request).report(reconciliation_id))


@router.get(
    "/discrepancies",
    response_model=DiscrepancyPage,
    responses=problem_responses(),
    summary="Discrepancy cases, by id, page by page",
)
async def list_discrepancies(
    request: Request,
    ctx: Reading,
    status: Literal["open", "investigating", "resolved"] | None = None,
    source: Annotated[
        str | None, Query(min_length=1, max_length=limits.SOURCE_LENGTH_MAX, pattern=NAME_PATTERN)
    ] = None,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=96, pattern=PRINTABLE_PATTERN)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=limits.CASES_PAGE_MAX)] = 100,
) -> Response:
    """`overdue` is true for a case past `due_at` and not resolved. Pass `next_cursor` as
    `cursor` (with the same filters) until it is null."""
    items, next_cursor = await service_of(request).cases(
        CaseQuery(status=status, source=source, after=cursor, limit=limit)
    )
    return model_response(DiscrepancyPage(items=items, next_cursor=next_cursor))


@router.get(
    "/discrepancies/{case_id}",
    response_model=DiscrepancyCase,
    responses=problem_responses(DiscrepancyNotFound),
    summary="One discrepancy case",
)
async def read_discrepancy(request: Request, case_id: IdPath, ctx: Reading) -> Response:
    return model_response(await service_of(request).case(case_id))


@router.post(
    "/discrepancies/{case_id}/assign",
    response_model=DiscrepancyCase,
    responses=problem_responses(WRITES, DiscrepancyNotFound, DiscrepancyResolved),
    summary="Assign a case: open/investigating -> investigating",
)
async def assign_discrepancy(
    request: Request,
    case_id: IdPath,
    body: AssignIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Assigning again (the same or another assignee) is allowed until resolved."""
    return model_response(await service_of(request).assign(case_id, body.assignee, body.notes))


@router.post(
    "/discrepancies/{case_id}/resolve",
    response_model=DiscrepancyCase,
    responses=problem_responses(WRITES, DiscrepancyNotFound, DiscrepancyResolved, WouldOversell),
    summary="Resolve a case: adjust to the count, write the shortfall off, or dismiss",
)
async def resolve_discrepancy(
    request: Request,
    case_id: IdPath,
    body: ResolveIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """`adjust` moves on_hand by counted - expected: the count as of `counted_at`,
    applied over the sales since (as a cycle count does); `write_off` writes the shortfall
    off (422 when the source counted more); `dismiss` moves nothing and keeps the reason.
    The engine write's idempotency key is made of the case, so a retry never applies
    twice; 409 `discrepancy_resolved` once resolved."""
    case = await service_of(request).resolve(
        case_id, body.action, body.reason, root_cause=body.root_cause, actor=ctx.caller.name
    )
    return model_response(case)
