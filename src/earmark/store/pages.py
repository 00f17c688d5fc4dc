"""Pages of the ledger (``Ledger.page``: ``GET /v1/ledger``, ``earmark ledger``) and
their opaque cursors."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from earmark.errors import InvalidRequest
from earmark.store.events import Event, EventKey

# Pages of ``Ledger.page`` (GET /v1/ledger, ``earmark ledger``): rows per page, and event
# types one query may filter on.
PAGE_LIMIT_DEFAULT = 100
PAGE_LIMIT_MAX = 1_000
PAGE_TYPES_MAX = 32
CURSOR_LENGTH_MAX = 128
CURSOR_PATTERN = re.compile(r"^([0-9]{1,9})-([0-9]{1,18})-([0-9]{1,18})$")


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page of the ledger in event-id order (partition, stream ms, stream seq): the
    rows after ``after`` that pass every filter given (None: no filter)."""

    sku: str | None = None
    location: str | None = None
    types: tuple[str, ...] = ()  # any of these event types
    since_ms: int | None = None  # occurred_at >= since (ms since the epoch)
    after: EventKey | None = None
    limit: int = PAGE_LIMIT_DEFAULT

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= PAGE_LIMIT_MAX:
            raise InvalidRequest(f"limit must be between 1 and {PAGE_LIMIT_MAX}", field="limit")
        if len(self.types) > PAGE_TYPES_MAX:
            raise InvalidRequest(f"at most {PAGE_TYPES_MAX} event types", field="type")


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    next_after: EventKey | None  # where the next page starts; None: this was the last

    @property
    def next_cursor(self) -> str | None:
        return None if self.next_after is None else encode_cursor(self.next_after)


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def ms_since(at: datetime.datetime) -> int:
    """The first whole millisecond at or after ``at`` (an aware datetime), since the
    epoch: the ``since_ms`` of a page that starts at ``at``."""
    delta = at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return -(-micros // 1_000)


def time_of_ms(ms: int) -> datetime.datetime:
    """An aware UTC datetime (exact over datetime's whole range, unlike fromtimestamp)."""
    return EPOCH + datetime.timedelta(milliseconds=ms)


def encode_cursor(key: EventKey) -> str:
    """An opaque cursor for the position after the event ``key``."""
    raw = "-".join(str(part) for part in key).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> EventKey:
    """The event key of a cursor from ``encode_cursor``; ``InvalidRequest`` otherwise."""
    refused = InvalidRequest(
        "not a cursor of this ledger: pass next_cursor as given", field="cursor"
    )
    if len(cursor) > CURSOR_LENGTH_MAX:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise refused from None
    found = CURSOR_PATTERN.fullmatch(raw)
    if found is None:
        raise refused
    partition, ms, seq = (int(part) for part in found.groups())
    return partition, ms, seq


def page_filter(
    query: PageQuery, mark: Callable[[int], str], since: tuple[str, Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause of a page and its parameters, for either dialect: ``mark(n)`` is
    the placeholder of the n-th parameter (1-based), ``since`` the occurred-at column and
    the value to compare it with."""
    params: list[Any] = list(query.after or (-1, -1, -1))
    clauses = [f"(partition, stream_ms, stream_seq) > ({mark(1)}, {mark(2)}, {mark(3)})"]

    def add(template: str, value: Any) -> str:
        params.append(value)
        return template.format(mark(len(params)))

    if query.sku is not None:
        clauses.append(add("sku = {}", query.sku))
    if query.location is not None:
        clauses.append(add("location = {}", query.location))
    if query.types:
        clauses.append(f"type IN ({', '.join(add('{}', t) for t in query.types)})")
    if query.since_ms is not None:
        clauses.append(add(f"{since[0]} >= {{}}", since[1]))
    return " AND ".join(clauses), params


def page_of(events: list[Event], limit: int) -> Page:
    """A page from up to ``limit + 1`` rows: the extra row only says there is more."""
    shown = events[:limit]
    more = len(events) > limit and bool(shown)
    return Page(shown, shown[-1].key if more else None)
