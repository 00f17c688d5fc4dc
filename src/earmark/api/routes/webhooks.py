"""Outbound webhooks (docs/webhooks.md): endpoints, secret rotation, replay, deliveries.

Writes need the `stock` scope, reads the `read` scope. Endpoints live in the durable
record (503 `ledger_unavailable` while it cannot be reached). The secret is shown once,
when the endpoint is created (and when it is rotated). Every POST accepts an
`Idempotency-Key`: a replay returns the original status and body, the same key with
another body is 422 `idempotency_conflict`.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, StrictBool, StrictInt
from starlette.responses import Response

from earmark.api.deps import Context, IdempotencyKey, Reading, Stocking
from earmark.api.responses import JSON, WRITES, model_response, problem_responses
from earmark.api.routes.ledger import ledger_of
from earmark.api.schemas import INTEGRAL, Rfc3339
from earmark.api.schemas import Request as Body
from earmark.errors import (
    IdempotencyConflict,
    InvalidWebhookUrl,
    LedgerUnavailable,
    WebhookEndpointNotFound,
    WebhookEndpointsFull,
)
from earmark.keys import idempotency_digest
from earmark.models import (
    CreatedWebhookEndpoint,
    DeliveryAttempt,
    DeliveryAttempts,
    RotatedSecret,
    WebhookEndpoint,
    WebhookEndpoints,
    WebhookReplay,
)
from earmark.settings import Settings
from earmark.store.ledger import ms_since, time_of_ms
from earmark.store.webhooks import (
    AttemptRow,
    EndpointChanges,
    EndpointRow,
    ReplayRow,
    StoredResponse,
    WebhookStore,
    webhook_store,
)
from earmark.webhooks import endpoints
from earmark.webhooks.config import WebhookConfig, from_settings
from earmark.webhooks.delivery import wall_clock_ms
from earmark.webhooks.endpoints import DESCRIPTION_LENGTH_MAX, GRACE_SECONDS_MAX
from earmark.webhooks.types import FILTER_LENGTH_MAX, FILTER_PATTERN, FILTERS_MAX
from earmark.webhooks.urls import URL_LENGTH_MAX, URL_PATTERN

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

ATTEMPTS_PAGE_DEFAULT = 100
ATTEMPTS_PAGE_MAX = 1_000
SEQ_MAX = 2**53 - 1  # the largest integer every JSON parser reads exactly

Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=URL_LENGTH_MAX,
        pattern=URL_PATTERN,
        description="http:// or https:// with a host name or IPv4 address; private, loopback "
        "and link-local addresses are refused unless the server sets "
        "EARMARK_WEBHOOKS_ALLOW_PRIVATE",
    ),
]
Filter = Annotated[
    str,
    Field(
        min_length=1,
        max_length=FILTER_LENGTH_MAX,
        pattern=FILTER_PATTERN,
        description="a type (`stock.changed`), a group (`reservation.*`) or `*`",
    ),
]
Filters = Annotated[list[Filter], Field(min_length=1, max_length=FILTERS_MAX)]
Description = Annotated[
    str, Field(max_length=DESCRIPTION_LENGTH_MAX, pattern="^[ -~]*$", description="for people")
]
EndpointId = Annotated[str, Path(description="the id returned when the endpoint was created")]
Seq = Annotated[StrictInt, Field(ge=0, le=SEQ_MAX), INTEGRAL]


class EndpointIn(Body):
    url: Url
    events: Filters = Field(default_factory=lambda: ["*"])
    description: Description = ""


class EndpointPatch(Body):
    """Only the fields given change. `disabled: false` re-enables an endpoint (its
    failure streak and slow-down are cleared; pending messages resume)."""

    url: Url | None = None
    events: Filters | None = None
    description: Description | None = None
    disabled: StrictBool | None = None


class RotateIn(Body):
    grace_seconds: float | None = Field(
        None,
        ge=0,
        le=GRACE_SECONDS_MAX,
        allow_inf_nan=False,
        description="how long the old secret keeps signing beside the new one (default: "
        "EARMARK_WEBHOOKS_SECRET_GRACE_SECONDS; 0: stop it now, e.g. after a leak)",
    )


class ReplayAfterSeq(Body):
    after_seq: Seq = Field(description="re-send the events with a record_seq above this")


class ReplaySince(Body):
    since: Rfc3339 = Field(
        description="re-send the events that occurred at or after this (RFC 3339)"
    )


ReplayIn = ReplayAfterSeq | ReplaySince


def _time(ms: int | None) -> datetime.datetime | None:
    return None if ms is None else time_of_ms(ms)


def endpoint_of(row: EndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        disabled=row.disabled,
        disabled_reason=row.disabled_reason,
        disabled_at=_time(row.disabled_at_ms),
        failing_since=_time(row.failing_since_ms),
        previous_secret_expires_at=_time(row.previous_secret_expires_at_ms),
        created_at=time_of_ms(row.created_at_ms),
        updated_at=time_of_ms(row.updated_at_ms),
    )


def replay_of(row: ReplayRow) -> WebhookReplay:
    return WebhookReplay(
        id=row.id,
        endpoint_id=row.endpoint_id,
        after_seq=row.after_seq,
        until_seq=row.until_seq,
        since=_time(row.since_ms),
        status="running" if row.finished_at_ms is None else "done",
        messages=row.messages,
        created_at=time_of_ms(row.created_at_ms),
    )


def attempt_of(row: AttemptRow) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=row.id,
        message_id=row.message_id,
        type=row.type,
        record_seq=row.record_seq,
        attempt=row.attempt,
        attempted_at=time_of_ms(row.attempted_at_ms),
        status_code=row.status_code,
        latency_ms=row.latency_ms,
        outcome=row.outcome,
        error=row.error,
        next_attempt_at=_time(row.next_attempt_at_ms),
    )


async def store_of(request: Request) -> WebhookStore:
    return webhook_store(await ledger_of(request))


def config_of(request: Request) -> WebhookConfig:
    settings: Settings = request.app.state.settings
    return from_settings(settings)


async def idempotent(
    request: Request,
    ctx: Context,
    key: str | None,
    store: WebhookStore,
    respond: Callable[[], Awaitable[tuple[int, BaseModel]]],
    location: Callable[[str], str] | None = None,
) -> Response:
    """The first response to (caller, route, key) is stored in the record and replayed
    for the same request; another request with the key is refused. ``location`` gives
    the Location header from the body's ``id``."""

    def headers(body: str) -> dict[str, str] | None:
        return None if location is None else {"Location": location(orjson.loads(body)["id"])}

    if key is None:
        status, model = await respond()
        answer = model.model_dump_json()
        return Response(answer, status, headers=headers(answer), media_type=JSON)
    sent = await request.body()
    fingerprint = hashlib.sha256(request.url.path.encode() + b"\n" + sent).hexdigest()
    stored_key = f"{request.url.path} {idempotency_digest(ctx.caller.name, key)}"
    stored = await store.stored_response(stored_key)
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise IdempotencyConflict("this idempotency key was already used for another request")
        return Response(stored.body, stored.status, headers=headers(stored.body), media_type=JSON)
    status, model = await respond()
    response = StoredResponse(fingerprint, status, model.model_dump_json())
    await store.store_response(stored_key, response, wall_clock_ms())
    return Response(response.body, status, headers=headers(response.body), media_type=JSON)


READS = (LedgerUnavailable,)
FOUND = (LedgerUnavailable, WebhookEndpointNotFound)


@router.post(
    "/endpoints",
    status_code=201,
    response_model=CreatedWebhookEndpoint,
    responses=problem_responses(WRITES, LedgerUnavailable, InvalidWebhookUrl, WebhookEndpointsFull),
    summary="Subscribe a URL to webhook events; the secret is shown once",
)
async def create_endpoint(
    request: Request, body: EndpointIn, ctx: Stocking, idempotency_key: IdempotencyKey
) -> Response:
    """201 with the endpoint and its `secret` (`whsec_...`), which is never shown
    again. The endpoint hears of every event recorded from now on that `events` matches
    (`["*"]` by default); older ones can be replayed. 422 `invalid_webhook_url` for a URL
    that is not http(s) or names a private, loopback or link-local address."""
    store = await store_of(request)

    async def respond() -> tuple[int, BaseModel]:
        row = await endpoints.create(
            store, config_of(request), body.url, body.events, body.description
        )
        return 201, CreatedWebhookEndpoint(**endpoint_of(row).model_dump(), secret=row.secret)

    def location(endpoint_id: str) -> str:
        return f"{router.prefix}/endpoints/{endpoint_id}"

    return await idempotent(request, ctx, idempotency_key, store, respond, location)


@router.get(
    "/endpoints",
    response_model=WebhookEndpoints,
    responses=problem_responses(READS),
    summary="Every webhook endpoint (without secrets)",
)
async def list_endpoints(request: Request, ctx: Reading) -> Response:
    rows = await (await store_of(request)).endpoints()
    return model_response(WebhookEndpoints(items=[endpoint_of(row) for row in rows]))


@router.get(
    "/endpoints/{endpoint_id}",
    response_model=WebhookEndpoint,
    responses=problem_responses(FOUND),
    summary="One webhook endpoint (without its secret)",
)
async def get_endpoint(request: Request, endpoint_id: EndpointId, ctx: Reading) -> Response:
    row = await endpoints.find(await store_of(request), endpoint_id)
    return model_response(endpoint_of(row))


@router.patch(
    "/endpoints/{endpoint_id}",
    response_model=WebhookEndpoint,
    responses=problem_responses(WRITES, FOUND, InvalidWebhookUrl),
    summary="Change an endpoint's url, events or description, or disable / enable it",
)
async def patch_endpoint(
    request: Request, endpoint_id: EndpointId, body: EndpointPatch, ctx: Stocking
) -> Response:
    """Disabling stops deliveries (pending messages wait; `endpoint.disabled` is sent to
    the endpoints that subscribe); `disabled: false` resumes them."""
    changes = EndpointChanges(
        url=body.url,
        events=None if body.events is None else tuple(body.events),
        description=body.description,
        disabled=body.disabled,
    )
    row = await endpoints.update(await store_of(request), config_of(request), endpoint_id, changes)
    return model_response(endpoint_of(row))


@router.delete(
    "/endpoints/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(FOUND),
    summary="Delete an endpoint with its messages and attempts",
)
async def delete_endpoint(request: Request, endpoint_id: EndpointId, ctx: Stocking) -> Response:
    await endpoints.delete(await store_of(request), endpoint_id)
    return Response(status_code=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    response_model=RotatedSecret,
    responses=problem_responses(WRITES, FOUND),
    summary="A new secret; the old one keeps signing beside it for a grace period",
)
async def rotate_secret(
    request: Request,
    endpoint_id: EndpointId,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
    body: RotateIn | None = None,
) -> Response:
    """While the grace period lasts every message carries two signatures in
    `webhook-signature` (new and old), so receivers can switch secrets at their pace."""
    store = await store_of(request)
    grace = None if body is None else body.grace_seconds

    async def respond() -> tuple[int, BaseModel]:
        row = await endpoints.rotate_secret(store, config_of(request), endpoint_id, grace)
        expires = row.previous_secret_expires_at_ms or row.updated_at_ms
        return 200, RotatedSecret(
            id=row.id, secret=row.secret, previous_secret_expires_at=time_of_ms(expires)
        )

    return await idempotent(request, ctx, idempotency_key, store, respond)


@router.post(
    "/endpoints/{endpoint_id}/replay",
    status_code=202,
    response_model=WebhookReplay,
    responses=problem_responses(WRITES, FOUND),
    summary="Re-send recorded events after a record_seq or since a time, however old",
)
async def replay(
    request: Request,
    endpoint_id: EndpointId,
    body: ReplayIn,
    ctx: Stocking,
    idempotency_key: IdempotencyKey,
) -> Response:
    """202: the dispatcher re-sends, in the background and in record order, every
    recorded event the endpoint's filters match with a `record_seq` above `after_seq`
    (or that occurred at or after `since`), up to the newest recorded now. A message sent
    before goes again with the same `webhook-id` and body (receivers that deduplicate on
    it skip what they have). The body is `{"after_seq": N}` or `{"since": "<RFC 3339>"}`."""
    store = await store_of(request)
    after_seq = body.after_seq if isinstance(body, ReplayAfterSeq) else None
    since_ms = ms_since(body.since) if isinstance(body, ReplaySince) else None

    async def respond() -> tuple[int, BaseModel]:
        row = await endpoints.replay(store, endpoint_id, after_seq=after_seq, since_ms=since_ms)
        return 202, replay_of(row)

    return await idempotent(request, ctx, idempotency_key, store, respond)


Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=24,
        pattern="^[0-9]+$",
        description="`next_cursor` of the previous page",
    ),
]
Limit = Annotated[int, Query(ge=1, le=ATTEMPTS_PAGE_MAX, description="attempts per page")]


@router.get(
    "/endpoints/{endpoint_id}/deliveries",
    response_model=DeliveryAttempts,
    responses=problem_responses(FOUND),
    summary="Delivery attempts of an endpoint, newest first, page by page",
)
async def deliveries(
    request: Request,
    endpoint_id: EndpointId,
    ctx: Reading,
    cursor: Cursor = None,
    limit: Limit = ATTEMPTS_PAGE_DEFAULT,
) -> Response:
    """Every attempt the worker made (time, status, latency, error, the retry it
    scheduled). Pass `next_cursor` as `cursor` until it is null."""
    store = await store_of(request)
    await endpoints.find(store, endpoint_id)
    before = None if cursor is None else min(int(cursor), SEQ_MAX)
    rows = await store.attempts(endpoint_id, before, limit + 1)
    shown = rows[:limit]
    more = len(rows) > limit
    page = DeliveryAttempts(
        items=[attempt_of(row) for row in shown],
        next_cursor=str(shown[-1].id) if more and shown else None,
    )
    return model_response(page)
