"""What each recorded event becomes: webhook types, payloads and message ids (pure).

The store calls ``plan`` inside the dispatch transaction with the ledger rows in the
order the record learned them and every (sku, location) as it stood before the batch;
``plan`` walks the batch, so each ``stock.changed`` carries the level right after its
event and ``stock.out`` / ``stock.back`` fire exactly when available crosses zero. A
replay calls the same function with the states as of its start, so a replayed message
is the message first sent: same id, same body.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from earmark.store.events import BUCKETS, Event, ledger_entry
from earmark.store.webhooks import EndpointRow, NewMessage, RecordedEvent, StockKey, StockState
from earmark.webhooks.types import (
    ENDPOINT_DISABLED,
    STOCK_BACK,
    STOCK_CHANGED,
    STOCK_OUT,
    matches,
    type_of_event,
)

# The spec's advice: keep payloads small. Ours are a few hundred bytes; an event whose
# attributes would push it past this goes without them (and says so).
PAYLOAD_BYTES_MAX = 20_000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def rfc3339(ms: int) -> str:
    at = EPOCH + datetime.timedelta(milliseconds=ms)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_id(endpoint_id: str, source: str, webhook_type: str) -> str:
    """``msg_`` + 26 base32 characters of a hash of endpoint, source event and type: the
    same message always gets the same ``webhook-id``, across retries, crashes, two
    dispatchers and replays."""
    digest = hashlib.sha256(f"{endpoint_id}|{source}|{webhook_type}".encode()).digest()
    return "msg_" + base64.b32encode(digest[:16]).decode().rstrip("=").lower()


def payload(webhook_type: str, timestamp_ms: int, data: dict[str, Any]) -> str:
    """``{"type", "timestamp", "data"}`` as compact JSON, under ``PAYLOAD_BYTES_MAX``."""
    body = orjson.dumps({"type": webhook_type, "timestamp": rfc3339(timestamp_ms), "data": data})
    if len(body) > PAYLOAD_BYTES_MAX and "attributes" in data:
        trimmed = {**data, "attributes": {}, "attributes_omitted": True}
        body = orjson.dumps(
            {"type": webhook_type, "timestamp": rfc3339(timestamp_ms), "data": trimmed}
        )
    return body.decode()


def source_of(recorded: RecordedEvent) -> dict[str, Any]:
    """What every event-born payload says about the ledger row behind it."""
    return {"event_id": recorded.event.event_id, "record_seq": recorded.record_seq}


def stock_data(event: Event, after: StockState, recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "sku": event.sku,
        "location": event.location,
        **{bucket: after.buckets[bucket] for bucket in BUCKETS},
        "available": after.available,
        "seq": after.version,
        "cause": event.type,
        **source_of(recorded),
    }


def crossing_data(event: Event, after: StockState, recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "sku": event.sku,
        "location": event.location,
        "available": after.available,
        "seq": after.version,
        "cause": event.type,
        **source_of(recorded),
    }


def event_data(recorded: RecordedEvent) -> dict[str, Any]:
    entry = ledger_entry(recorded.event).model_dump(mode="json")
    entry["occurred_at"] = rfc3339(recorded.event.occurred_at_ms)
    entry["event_id"] = entry.pop("id")
    entry["event_type"] = entry.pop("type")
    entry["record_seq"] = recorded.record_seq
    return entry


def _kinds(
    recorded: RecordedEvent, before: StockState, after: StockState
) -> list[tuple[str, dict[str, Any], StockState | None]]:
    """(webhook type, data, the stock state for coalescing) of one event."""
    event = recorded.event
    kinds: list[tuple[str, dict[str, Any], StockState | None]] = []
    if event.deltas:
        kinds.append((STOCK_CHANGED, stock_data(event, after, recorded), after))
        if before.available > 0 >= after.available:
            kinds.append((STOCK_OUT, crossing_data(event, after, recorded), None))
        elif before.available <= 0 < after.available:
            kinds.append((STOCK_BACK, crossing_data(event, after, recorded), None))
    kinds.append((type_of_event(event.type), event_data(recorded), None))
    return kinds


def plan(
    events: Sequence[RecordedEvent],
    states: dict[StockKey, StockState],
    endpoints: Sequence[EndpointRow],
    *,
    replay: bool = False,
    since_ms: int | None = None,
) -> list[NewMessage]:
    """The messages of a batch (a ``store.webhooks.Planner``). Advances ``states``.

    An endpoint hears of the events recorded after it was created (``start_seq``); a
    replay ignores that (it re-sends from the record, however old) and, with
    ``since_ms``, keeps only events that occurred at or after it."""
    messages: list[NewMessage] = []
    for recorded in events:
        event = recorded.event
        key = (event.sku, event.location)
        before = states.setdefault(key, StockState())
        after = before.copy()
        after.apply(event)
        states[key] = after
        wanted = [
            e
            for e in endpoints
            if (replay or recorded.record_seq > e.start_seq)
            and (since_ms is None or event.occurred_at_ms >= since_ms)
        ]
        if not wanted:
            continue
        for webhook_type, data, state in _kinds(recorded, before, after):
            body: str | None = None
            for endpoint in wanted:
                if not matches(endpoint.events, webhook_type):
                    continue
                body = body or payload(webhook_type, event.occurred_at_ms, data)
                messages.append(
                    NewMessage(
                        id=message_id(endpoint.id, event.event_id, webhook_type),
                        endpoint_id=endpoint.id,
                        type=webhook_type,
                        record_seq=recorded.record_seq,
                        event_id=event.event_id,
                        payload=body,
                        recorded_at_ms=recorded.recorded_at_ms,
                        coalesce_key=None if state is None else f"{event.sku} {event.location}",
                        stock_seq=None if state is None else state.version,
                    )
                )
    return messages


def disabled_messages(
    disabled: Sequence[EndpointRow], subscribers: Sequence[EndpointRow], now_ms: int
) -> list[NewMessage]:
    """``endpoint.disabled`` for each endpoint just disabled, to every enabled endpoint
    that subscribes (a ``store.webhooks.DisabledPlanner``)."""
    messages = []
    for gone in disabled:
        at_ms = gone.disabled_at_ms or now_ms
        data = {
            "endpoint_id": gone.id,
            "url": gone.url,
            "reason": gone.disabled_reason,
            "failing_since": None
            if gone.failing_since_ms is None
            else rfc3339(gone.failing_since_ms),
        }
        body = payload(ENDPOINT_DISABLED, at_ms, data)
        source = f"{gone.id}@{at_ms}"
        for endpoint in subscribers:
            if endpoint.id == gone.id or not matches(endpoint.events, ENDPOINT_DISABLED):
                continue
            messages.append(
                NewMessage(
                    id=message_id(endpoint.id, source, ENDPOINT_DISABLED),
                    endpoint_id=endpoint.id,
                    type=ENDPOINT_DISABLED,
                    record_seq=0,
                    event_id=None,
                    payload=body,
                    recorded_at_ms=at_ms,
                )
            )
    return messages
