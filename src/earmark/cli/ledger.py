"""``earmark ledger``: pages of the durable record's events."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import redis.exceptions

from earmark import validation
from earmark.cli.common import (
    REASON_SHOWN_MAX,
    Subparsers,
    sync_engine,
    table,
)
from earmark.durable import service as durable
from earmark.errors import InvalidRequest
from earmark.settings import Settings
from earmark.store.events import ledger_entry
from earmark.store.ledger import (
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    Event,
    PageQuery,
    decode_cursor,
    ms_since,
)
from earmark.webhooks.types import TYPE_OF_EVENT

# Every ledger event type (the webhook catalogue names each one: docs/webhooks.md).
EVENT_TYPES = tuple(sorted(TYPE_OF_EVENT))
FLUSH_HINT = "`earmark flush --once` records them (or wait for the flusher)"


def add_ledger(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "ledger",
        help="print recorded events from the durable record",
        description="Print the events the durable record (EARMARK_DATABASE_URL) holds, "
        "oldest first by event id (partition, then stream order), filtered. Events arrive "
        "there only once the write-behind flusher recorded them (`earmark status` shows "
        "the lag; `earmark flush --once` records what waits). Needs no Redis.",
    )
    parser.add_argument("--sku", help="only this SKU")
    parser.add_argument("--location", help="only this location")
    parser.add_argument(
        "--type", dest="types", action="append", default=[], metavar="TYPE",
        help="only this event type (e.g. damaged); repeat for several; an unknown "
        "type is refused (exit 2)",
    )  # fmt: skip
    parser.add_argument(
        "--since",
        type=parse_since,
        help="only events at or after this time: ISO 8601, UTC unless it has an offset "
        "(e.g. 2026-03-01 or 2026-03-01T12:00:00+01:00)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=PAGE_LIMIT_DEFAULT,
        help=f"events to print, 1 to {PAGE_LIMIT_MAX} (default %(default)s)",
    )
    parser.add_argument("--cursor", help="continue where the previous page ended")
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    parser.set_defaults(handler=run_ledger)


def parse_since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def ledger_rows(events: list[Event]) -> list[str]:
    def deltas(event: Event) -> str:
        return " ".join(f"{b}{units:+d}" for b, units in event.deltas.items()) or "-"

    def reason(event: Event) -> str:
        text = event.reason or ""
        return text if len(text) <= REASON_SHOWN_MAX else text[: REASON_SHOWN_MAX - 3] + "..."

    rows = [
        (
            e.event_id,
            datetime.fromtimestamp(e.occurred_at_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            e.type, e.sku, e.location, e.qty, deltas(e), e.actor, reason(e),
        )
        for e in events
    ]  # fmt: skip
    headers = ("ID", "OCCURRED_AT", "TYPE", "SKU", "LOCATION", "QTY", "DELTAS", "ACTOR", "REASON")
    return table(headers, rows)


def check_types(types: list[str]) -> None:
    unknown = [t for t in types if t not in TYPE_OF_EVENT]
    if unknown:
        raise InvalidRequest(
            f"unknown event type {unknown[0]!r}; the types are: {', '.join(EVENT_TYPES)}",
            field="type",
        )


def waiting_note(settings: Settings) -> str:
    """Why the record may have nothing yet: events still in Redis, not yet flushed."""
    if settings.redis_url is None:
        return (
            "events not yet flushed wait in the embedded store of the `earmark serve` "
            "process, which records them within the flusher's lag"
        )
    try:
        with sync_engine(settings, "ledger") as engine:
            engine.start(initialize=False)
            lag = engine.durable_lag()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        return (
            f"events not yet flushed may wait in Redis ({settings.redis_description()}), "
            f"which did not answer: {type(error).__name__}: {error}"
        )
    if not lag.events:
        return "no events are waiting in Redis either"
    return (
        f"{lag.events} events are still waiting in Redis, the oldest "
        f"{lag.oldest_age_seconds:.3f}s old: {FLUSH_HINT}"
    )


def run_ledger(args: argparse.Namespace, settings: Settings) -> int:
    check_types(args.types)
    if args.sku is not None:
        validation.sku(args.sku)
    if args.location is not None:
        validation.location(args.location)
    query = PageQuery(
        sku=args.sku,
        location=args.location,
        types=tuple(args.types),
        since_ms=None if args.since is None else ms_since(args.since),
        after=None if args.cursor is None else decode_cursor(args.cursor),
        limit=args.limit,
    )
    page = asyncio.run(durable.page_at(settings.database_url, query))
    if args.json:
        for event in page.events:
            print(event_json(event))
    elif page.events:
        print("\n".join(ledger_rows(page.events)))
    else:
        print(f"no events recorded in {settings.database_description()} match")
        print(waiting_note(settings))
    if page.next_cursor is not None:
        print(f"more: repeat with --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def event_json(event: Event) -> str:
    """One event as ``GET /v1/ledger`` shows it."""
    return ledger_entry(event).model_dump_json()
