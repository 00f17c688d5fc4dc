"""Managing endpoints, the same for the HTTP API and the CLI: validation, secrets,
rotation and replays. Every function raises ``WebhookEndpointNotFound`` for an unknown
id, ``InvalidWebhookUrl`` / ``InvalidRequest`` for bad input (and writes nothing)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from earmark.errors import InvalidRequest, WebhookEndpointNotFound, WebhookEndpointsFull
from earmark.store.webhooks import (
    EndpointChanges,
    EndpointRow,
    NewEndpoint,
    ReplayRow,
    WebhookStore,
)
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.delivery import Clock, wall_clock_ms
from earmark.webhooks.signing import generate_secret
from earmark.webhooks.types import validate_filters
from earmark.webhooks.urls import check_destination

ENDPOINT_ID_PATTERN = re.compile(r"^ep_[0-9a-f]{24}$")
REPLAY_ID_PATTERN = re.compile(r"^rpl_[0-9a-f]{24}$")
DESCRIPTION_LENGTH_MAX = 256
GRACE_SECONDS_MAX = 30 * 24 * 60 * 60


def new_endpoint_id() -> str:
    return f"ep_{secrets.token_hex(12)}"


def new_replay_id() -> str:
    return f"rpl_{secrets.token_hex(12)}"


def check_description(description: str) -> str:
    if len(description) > DESCRIPTION_LENGTH_MAX or not description.isprintable():
        raise InvalidRequest(
            f"a description is at most {DESCRIPTION_LENGTH_MAX} printable characters",
            field="description",
        )
    return description


async def find(store: WebhookStore, endpoint_id: str) -> EndpointRow:
    found = None
    if ENDPOINT_ID_PATTERN.fullmatch(endpoint_id):
        found = await store.endpoint(endpoint_id)
    if found is None:
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}", id=endpoint_id)
    return found


async def create(
    store: WebhookStore,
    config: WebhookConfig,
    url: str,
    events: Sequence[str] = ("*",),
    description: str = "",
    *,
    clock: Clock = wall_clock_ms,
) -> EndpointRow:
    """A new endpoint with a new secret (``row.secret``: show it once). It hears of every
    event recorded from now on that its ``events`` filters match."""
    filters = validate_filters(events)
    check_description(description)
    await check_destination(url, allow_private=config.allow_private, require_resolved=False)
    if await store.endpoint_count() >= config.endpoints_max:
        raise WebhookEndpointsFull(
            f"at most {config.endpoints_max} webhook endpoints; delete one first"
        )
    new = NewEndpoint(new_endpoint_id(), url, filters, description, generate_secret())
    return await store.create_endpoint(new, clock())


async def update(
    store: WebhookStore,
    config: WebhookConfig,
    endpoint_id: str,
    changes: EndpointChanges,
    *,
    clock: Clock = wall_clock_ms,
) -> EndpointRow:
    await find(store, endpoint_id)
    if changes.events is not None:
        changes = EndpointChanges(
            changes.url, validate_filters(changes.events), changes.description, changes.disabled
        )
    if changes.description is not None:
        check_description(changes.description)
    if changes.url is not None:
        await check_destination(
            changes.url, allow_private=config.allow_private, require_resolved=False
        )
    updated = await store.update_endpoint(endpoint_id, changes, clock())
    if updated is None:  # deleted meanwhile
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}", id=endpoint_id)
    return updated


async def delete(store: WebhookStore, endpoint_id: str) -> None:
    await find(store, endpoint_id)
    if not await store.delete_endpoint(endpoint_id):
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}", id=endpoint_id)


async def rotate_secret(
    store: WebhookStore,
    config: WebhookConfig,
    endpoint_id: str,
    grace_seconds: float | None = None,
    *,
    clock: Clock = wall_clock_ms,
) -> EndpointRow:
    """A new secret; the old one keeps signing beside it for ``grace_seconds`` (default
    ``config.secret_grace_seconds``; 0 stops it at once, e.g. after a leak)."""
    grace = config.secret_grace_seconds if grace_seconds is None else grace_seconds
    if not 0 <= grace <= GRACE_SECONDS_MAX:
        raise InvalidRequest(
            f"grace_seconds is between 0 and {GRACE_SECONDS_MAX}", field="grace_seconds"
        )
    await find(store, endpoint_id)
    now = clock()
    rotated = await store.rotate_secret(
        endpoint_id, generate_secret(), now + round(grace * 1000), now
    )
    if rotated is None:
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}", id=endpoint_id)
    return rotated


async def replay(
    store: WebhookStore,
    endpoint_id: str,
    *,
    after_seq: int | None = None,
    since_ms: int | None = None,
    clock: Clock = wall_clock_ms,
) -> ReplayRow:
    """Re-sends what the record holds for this endpoint's filters: every event with a
    record_seq above ``after_seq``, or that occurred at or after ``since_ms`` (exactly
    one of the two), up to the newest recorded now. Messages sent before keep their id
    and body; the dispatcher works through the replay in chunks."""
    if (after_seq is None) == (since_ms is None):
        raise InvalidRequest("give exactly one of after_seq and since", field="after_seq")
    if after_seq is not None and after_seq < 0:
        raise InvalidRequest("after_seq is 0 or more", field="after_seq")
    await find(store, endpoint_id)
    row = await store.create_replay(new_replay_id(), endpoint_id, after_seq or 0, since_ms, clock())
    if row is None:
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}", id=endpoint_id)
    return row
