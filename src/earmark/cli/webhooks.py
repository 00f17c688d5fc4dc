"""``earmark webhooks ...``: endpoints, rotation, replay, attempts, and the worker.

Everything here needs only the durable record (EARMARK_DATABASE_URL): endpoints, their
messages and attempts live there, and ``deliver`` reads the ledger rows the flusher
wrote. ``serve`` already runs the dispatcher and worker in-process unless
EARMARK_WEBHOOKS_IN_PROCESS=false.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from earmark.cli.common import Subparsers, table
from earmark.cli.ledger import parse_since
from earmark.durable import service as durable
from earmark.errors import WebhookEndpointNotFound
from earmark.settings import Settings
from earmark.store.ledger import ms_since
from earmark.store.webhooks import AttemptRow, EndpointChanges, EndpointRow, WebhookStore
from earmark.webhooks import endpoints
from earmark.webhooks.config import from_settings
from earmark.webhooks.types import GROUPS

NEEDS = "Needs only EARMARK_DATABASE_URL."
ATTEMPTS_SHOWN_DEFAULT = 50


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def endpoint_json(row: EndpointRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "description": row.description,
        "disabled": row.disabled,
        "disabled_reason": row.disabled_reason,
        "failing_since": None if row.failing_since_ms is None else _time(row.failing_since_ms),
        "created_at": _time(row.created_at_ms),
    }


def _print(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def endpoints_table(rows: list[EndpointRow]) -> list[str]:
    def state(row: EndpointRow) -> str:
        if row.disabled:
            return f"disabled ({row.disabled_reason})"
        return "failing" if row.failing_since_ms is not None else "enabled"

    return table(
        ("ID", "URL", "EVENTS", "STATE", "CREATED"),
        [(r.id, r.url, ",".join(r.events), state(r), _time(r.created_at_ms)) for r in rows],
    )


def attempts_table(rows: list[AttemptRow]) -> list[str]:
    return table(
        ("ATTEMPTED_AT", "MESSAGE", "TYPE", "SEQ", "N", "STATUS", "MS", "OUTCOME", "NEXT", "ERROR"),
        [
            (_time(r.attempted_at_ms), r.message_id, r.type, r.record_seq, r.attempt,
             "-" if r.status_code is None else str(r.status_code), r.latency_ms, r.outcome,
             _time(r.next_attempt_at_ms), r.error or "")
            for r in rows
        ],
    )  # fmt: skip


def on_store(work: Callable[[WebhookStore], Awaitable[int]]) -> Callable[[Settings], int]:
    """Runs ``work`` on the record's webhook tables; an unknown endpoint is exit 1."""

    def run(settings: Settings) -> int:
        try:
            return int(asyncio.run(durable.with_webhook_store(settings.database_url, work)))
        except WebhookEndpointNotFound as error:
            print(f"earmark webhooks: {error}", file=sys.stderr)
            return 1

    return run


def add_webhooks(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "webhooks",
        help="manage webhook endpoints and run the delivery worker",
        description="Signed outbound webhooks (Standard Webhooks) from the durable record: "
        "subscribe URLs to event types, rotate their secrets, replay recorded events, "
        f"read delivery attempts, and run the worker that sends them. {NEEDS}",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_create(actions)
    _add_list(actions)
    _add_show(actions)
    _add_update(actions)
    _add_delete(actions)
    _add_rotate(actions)
    _add_replay(actions)
    _add_deliveries(actions)
    _add_deliver(actions)


def _add_events(parser: argparse.ArgumentParser, default: list[str] | None) -> None:
    parser.add_argument(
        "--event",
        dest="events",
        action="append",
        default=default,
        metavar="TYPE",
        help="an event type (stock.changed), a group (reservation.*) or * (every type); "
        f"repeat for several (groups: {', '.join(GROUPS)})",
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_create(actions: Subparsers) -> None:
    create = actions.add_parser(
        "create",
        help="subscribe a URL and print its secret once",
        description="Create an endpoint for URL and print its signing secret (whsec_...). "
        "The secret is shown only this once. The endpoint hears of every event recorded "
        "from now on that its types match. URLs naming private, loopback or link-local "
        f"addresses are refused unless EARMARK_WEBHOOKS_ALLOW_PRIVATE=true. {NEEDS}",
    )
    create.add_argument("url", metavar="URL")
    _add_events(create, None)
    create.add_argument("--description", default="", help="for people reading the list")
    _add_json(create)
    create.set_defaults(handler=run_create)


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    config = from_settings(settings)

    async def work(store: WebhookStore) -> int:
        row = await endpoints.create(
            store, config, args.url, args.events or ["*"], args.description
        )
        if args.json:
            _print({**endpoint_json(row), "secret": row.secret})
        else:
            print(row.secret)
            print(
                f"created webhook endpoint {row.id} for {row.url} ({', '.join(row.events)}). "
                "The secret above is shown once: give it to the receiver now.",
                file=sys.stderr,
            )
        return 0

    return on_store(work)(settings)


def _add_list(actions: Subparsers) -> None:
    listing = actions.add_parser(
        "list", help="list endpoints", description=f"List every webhook endpoint. {NEEDS}"
    )
    _add_json(listing)
    listing.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: WebhookStore) -> int:
        rows = await store.endpoints()
        if args.json:
            _print([endpoint_json(r) for r in rows])
        elif rows:
            print("\n".join(endpoints_table(rows)))
        else:
            print("no webhook endpoints")
        return 0

    return on_store(work)(settings)


def _add_show(actions: Subparsers) -> None:
    show = actions.add_parser(
        "show", help="show one endpoint", description=f"Show the endpoint ID. {NEEDS}"
    )
    show.add_argument("endpoint_id", metavar="ID")
    _add_json(show)
    show.set_defaults(handler=run_show)


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: WebhookStore) -> int:
        row = await endpoints.find(store, args.endpoint_id)
        if args.json:
            _print(endpoint_json(row))
        else:
            print("\n".join(endpoints_table([row])))
        return 0

    return on_store(work)(settings)


def _add_update(actions: Subparsers) -> None:
    update = actions.add_parser(
        "update",
        help="change an endpoint, or disable / enable it",
        description="Change the endpoint ID's URL, event types or description, or "
        "disable it (deliveries stop; endpoint.disabled is sent to subscribers) or "
        f"enable it again (its failure streak is forgotten). {NEEDS}",
    )
    update.add_argument("endpoint_id", metavar="ID")
    update.add_argument("--url", help="the new URL")
    _add_events(update, None)
    update.add_argument("--description", help="the new description")
    state = update.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="stop delivering to it")
    state.add_argument("--enable", action="store_true", help="deliver to it again")
    _add_json(update)
    update.set_defaults(handler=run_update)


def run_update(args: argparse.Namespace, settings: Settings) -> int:
    config = from_settings(settings)
    disabled = True if args.disable else False if args.enable else None
    changes = EndpointChanges(
        url=args.url,
        events=None if args.events is None else tuple(args.events),
        description=args.description,
        disabled=disabled,
    )

    async def work(store: WebhookStore) -> int:
        row = await endpoints.update(store, config, args.endpoint_id, changes)
        if args.json:
            _print(endpoint_json(row))
        else:
            print("\n".join(endpoints_table([row])))
        return 0

    return on_store(work)(settings)


def _add_delete(actions: Subparsers) -> None:
    delete = actions.add_parser(
        "delete",
        help="delete an endpoint",
        description=f"Delete the endpoint ID with its messages and attempts. {NEEDS}",
    )
    delete.add_argument("endpoint_id", metavar="ID")
    delete.set_defaults(handler=run_delete)


def run_delete(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: WebhookStore) -> int:
        await endpoints.delete(store, args.endpoint_id)
        print(f"deleted webhook endpoint {args.endpoint_id}")
        return 0

    return on_store(work)(settings)


def _add_rotate(actions: Subparsers) -> None:
    rotate = actions.add_parser(
        "rotate-secret",
        help="give an endpoint a new secret (printed once)",
        description="Give the endpoint ID a new secret and print it. The old secret keeps "
        "signing beside the new one (two signatures in webhook-signature) for the grace "
        f"period, so the receiver can switch at its pace. {NEEDS}",
    )
    rotate.add_argument("endpoint_id", metavar="ID")
    rotate.add_argument(
        "--grace-seconds",
        type=float,
        help="how long the old secret still signs (default: "
        "EARMARK_WEBHOOKS_SECRET_GRACE_SECONDS; 0: not at all, e.g. after a leak)",
    )
    rotate.set_defaults(handler=run_rotate)


def run_rotate(args: argparse.Namespace, settings: Settings) -> int:
    config = from_settings(settings)

    async def work(store: WebhookStore) -> int:
        row = await endpoints.rotate_secret(store, config, args.endpoint_id, args.grace_seconds)
        print(row.secret)
        print(
            f"rotated the secret of {row.id}: the old one signs too until "
            f"{_time(row.previous_secret_expires_at_ms)}. The new secret is shown once.",
            file=sys.stderr,
        )
        return 0

    return on_store(work)(settings)


def _add_replay(actions: Subparsers) -> None:
    replay = actions.add_parser(
        "replay",
        help="re-send recorded events to an endpoint",
        description="Re-send to the endpoint ID every recorded event its types match, "
        "after a record_seq or since a time, up to the newest recorded now, however old. "
        "Messages sent before go again with the same webhook-id and body. The worker "
        f"(`serve`, or `earmark webhooks deliver`) sends them. {NEEDS}",
    )
    replay.add_argument("endpoint_id", metavar="ID")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--after-seq", type=int, help="events with a record_seq above this")
    start.add_argument(
        "--since",
        type=parse_since,
        help="events that occurred at or after this time (ISO 8601, UTC unless it has an offset)",
    )
    replay.set_defaults(handler=run_replay)


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    since_ms = None if args.since is None else ms_since(args.since)

    async def work(store: WebhookStore) -> int:
        row = await endpoints.replay(
            store, args.endpoint_id, after_seq=args.after_seq, since_ms=since_ms
        )
        print(
            f"replay {row.id}: record_seq {row.after_seq} to {row.until_seq}"
            + ("" if row.since_ms is None else f", events since {_time(row.since_ms)}")
            + " queued for the worker"
        )
        return 0

    return on_store(work)(settings)


def _add_deliveries(actions: Subparsers) -> None:
    deliveries = actions.add_parser(
        "deliveries",
        help="print an endpoint's delivery attempts",
        description=f"Print the endpoint ID's delivery attempts, newest first. {NEEDS}",
    )
    deliveries.add_argument("endpoint_id", metavar="ID")
    deliveries.add_argument(
        "--limit", type=int, default=ATTEMPTS_SHOWN_DEFAULT, help="attempts to print"
    )
    deliveries.add_argument("--cursor", type=int, help="continue where the previous page ended")
    _add_json(deliveries)
    deliveries.set_defaults(handler=run_deliveries)


def run_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: WebhookStore) -> int:
        await endpoints.find(store, args.endpoint_id)
        rows = await store.attempts(args.endpoint_id, args.cursor, max(1, args.limit) + 1)
        shown = rows[: max(1, args.limit)]
        if args.json:
            for r in shown:
                print(orjson.dumps(dataclasses.asdict(r)).decode())
        elif shown:
            print("\n".join(attempts_table(shown)))
        else:
            print(f"no delivery attempts for {args.endpoint_id}")
        if len(rows) > len(shown):
            print(f"more: repeat with --cursor {shown[-1].id}", file=sys.stderr)
        return 0

    return on_store(work)(settings)


def _add_deliver(actions: Subparsers) -> None:
    deliver = actions.add_parser(
        "deliver",
        help="run the webhook dispatcher and delivery worker",
        description="Turn ledger rows into webhook messages and send them, until "
        "interrupted (SIGINT or SIGTERM): retries follow EARMARK_WEBHOOKS_SCHEDULE_SECONDS, "
        "and a message whose worker died is sent again, with the same webhook-id, once its "
        "lease (EARMARK_WEBHOOKS_LEASE_SECONDS) runs out. Several may run at once. `serve` "
        f"runs one in-process unless EARMARK_WEBHOOKS_IN_PROCESS=false. {NEEDS}",
    )
    deliver.add_argument(
        "--once",
        action="store_true",
        help="dispatch what is recorded, send what is due now, then exit (retries "
        "scheduled later wait for the next run)",
    )
    deliver.set_defaults(handler=run_deliver)


async def _deliver(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print("delivering webhooks until interrupted", file=sys.stderr, flush=True)
    try:
        await durable.webhooks_until(settings.database_url, from_settings(settings), stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_deliver(args: argparse.Namespace, settings: Settings) -> int:
    if not args.once:
        asyncio.run(_deliver(settings))
        return 0
    report = asyncio.run(durable.webhooks_once(settings.database_url, from_settings(settings)))
    failed = len(report.attempts) - report.delivered
    print(
        f"dispatched {report.dispatched} ledger rows; {len(report.attempts)} attempts, "
        f"{report.delivered} delivered, {failed} to retry or given up"
    )
    return 0
