"""``earmark stock``, ``earmark po`` and ``earmark ledger``: the stock lifecycle
(docs/lifecycle.md) from the command line, for operators.

Every write records ``--actor`` (default: the OS user) and ``--reason`` on its events,
and takes ``--idempotency-key``: the same command repeated with the same key returns the
first result instead of doing it twice. ``stock`` and ``po`` need EARMARK_REDIS_URL;
``ledger`` reads only the durable record (EARMARK_DATABASE_URL).

Exit codes as for every command: 0 done; 1 refused by the state of the stock (e.g.
would_oversell, stale_count, an idempotency conflict; nothing was written); 2 it could
not run (configuration, connection, bad input).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from earmark import limits, validation
from earmark.cli.common import Handler, NeedsRedis, Subparsers, sync_engine, table
from earmark.durable import service as durable
from earmark.engine.sync_engine import Engine
from earmark.errors import EarmarkError, InvalidRequest, StoreNotReady
from earmark.models import (
    CountResult,
    Line,
    PurchaseOrder,
    ReturnReceipt,
    SkuStock,
    StockLevel,
    Transfer,
)
from earmark.settings import Settings
from earmark.store.events import LedgerEntry
from earmark.store.ledger import (
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    Event,
    PageQuery,
    decode_cursor,
    ms_since,
)

Operation = Callable[[Engine, argparse.Namespace], BaseModel]
# Errors that mean the command could not run (exit 2, from ``cli.main``), not a refusal.
NOT_REFUSALS = (InvalidRequest, StoreNotReady, NeedsRedis)
LEVEL_COLUMNS = (
    *("on_hand", "reserved", "committed", "available", "in_transit", "returned"),
    *("damaged", "written_off", "inbound"),
)
REASON_SHOWN_MAX = 40
NEEDS = "Needs EARMARK_REDIS_URL."


def default_actor() -> str:
    """The OS user (``cli`` when there is none): the actor recorded on the events."""
    try:
        return getpass.getuser() or "cli"
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "cli"


# -- running an operation --------------------------------------------------------------


def on_engine(command: str, run: Operation) -> Handler:
    """A handler: ``run`` on the configured Redis, then its result printed. A refusal by
    the stock's state is exit 1; bad input and an unready store go on to ``main`` (2)."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        with sync_engine(settings, command) as engine:
            engine.start(initialize=False)
            try:
                result = run(engine, args)
            except EarmarkError as error:
                if isinstance(error, NOT_REFUSALS):
                    raise
                print(f"earmark {command}: {error.code}: {error}", file=sys.stderr)
                return 1
        if args.json:
            print(result.model_dump_json(indent=2))
        else:
            print("\n".join(describe(result)))
        return 0

    return handler


def who(args: argparse.Namespace) -> dict[str, Any]:
    return {"actor": args.actor, "idempotency_key": args.idempotency_key}


# -- printing results ----------------------------------------------------------------------


def levels_table(levels: list[StockLevel], total: SkuStock | None = None) -> list[str]:
    headers = ("SKU", "LOCATION", *(c.upper() for c in LEVEL_COLUMNS), "VERSION")
    rows: list[tuple[object, ...]] = [
        (x.sku, x.location, *(getattr(x, c) for c in LEVEL_COLUMNS), x.version) for x in levels
    ]
    if total is not None:
        rows.append((total.sku, "(all)", *(getattr(total, c) for c in LEVEL_COLUMNS), ""))
    return table(headers, rows)


def describe_transfer(t: Transfer) -> list[str]:
    line = f"transfer {t.id}: {t.qty_shipped} {t.sku} from {t.from_location} to {t.to_location}"
    if t.status == "received":
        return [f"{line}, received {t.qty_received} (discrepancy {t.discrepancy:+d})"]
    return [f"{line}, in transit"]


def describe_count(c: CountResult) -> list[str]:
    lines = [f"counted {c.counted}, expected {c.expected}: on_hand {c.delta:+d}"]
    if c.exposure:
        lines.append(f"OVERSELL EXPOSURE: {c.exposure} units promised beyond on hand")
    return lines + levels_table([c.stock])


def describe_return(r: ReturnReceipt) -> list[str]:
    head = f"{r.qty} {r.sku} back from {r.reservation_id} into returned at {r.location}"
    return [f"{head} ({r.returned} of {r.shipped} shipped have come back)"]


def describe_po(po: PurchaseOrder) -> list[str]:
    head = [
        f"purchase order {po.id}: {po.status}",
        f"supplier {po.supplier}, expected {po.expected_date}"
        + (f", reference {po.reference}" if po.reference else ""),
    ]
    rows = [(x.sku, x.location, x.expected, x.received, x.outstanding) for x in po.lines]
    return head + table(("SKU", "LOCATION", "EXPECTED", "RECEIVED", "OUTSTANDING"), rows)


def describe(result: BaseModel) -> list[str]:
    if isinstance(result, StockLevel):
        return levels_table([result])
    if isinstance(result, SkuStock):
        return levels_table(result.locations, result)
    if isinstance(result, Transfer):
        return describe_transfer(result)
    if isinstance(result, CountResult):
        return describe_count(result)
    if isinstance(result, ReturnReceipt):
        return describe_return(result) + levels_table([result.stock])
    if isinstance(result, PurchaseOrder):
        return describe_po(result)
    return [result.model_dump_json()]


# -- common arguments ------------------------------------------------------------------


def add_action(
    actions: Subparsers, command: str, summary: str, description: str, run: Operation
) -> argparse.ArgumentParser:
    """``command`` is ``<group> <action>`` (``stock damage``)."""
    name = command.split()[-1]
    parser = actions.add_parser(name, help=summary, description=f"{description} {NEEDS}")
    parser.set_defaults(handler=on_engine(command, run))
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def add_who(parser: argparse.ArgumentParser, *, reason: str = "", required: bool = False) -> None:
    parser.add_argument(
        "--actor",
        default=default_actor(),
        help="who does it, recorded on the events (default: the OS user, %(default)s)",
    )
    if reason:
        parser.add_argument("--reason", required=required, default="", help=reason)
    parser.add_argument(
        "--idempotency-key",
        help="repeating the command with the same key returns the first result instead of "
        "doing it twice",
    )


def add_location(parser: argparse.ArgumentParser, what: str = "the stock location") -> None:
    parser.add_argument(
        "--location", default=limits.DEFAULT_LOCATION, help=f"{what} (default: %(default)s)"
    )


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="record a decrease below available anyway (an oversell exposure; every "
        "reserve is refused until receipts cover it)",
    )


def parse_line(text: str) -> Line:
    """``SKU:QTY`` or ``SKU:QTY@LOCATION`` (SKUs and locations hold neither ':' nor '@')."""
    item, _, location = text.partition("@")
    sku, _, qty = item.partition(":")
    try:
        return Line(sku=sku, qty=int(qty), location=location or limits.DEFAULT_LOCATION)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SKU:QTY or SKU:QTY@LOCATION (e.g. TEE-M:10@berlin)"
        ) from None


def add_lines(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--line",
        dest="lines",
        action="append",
        required=True,
        type=parse_line,
        metavar="SKU:QTY[@LOCATION]",
        help=f"{what}; repeat for each line (at most {limits.LINES_MAX}; location default: "
        f"{limits.DEFAULT_LOCATION})",
    )


# -- earmark stock ---------------------------------------------------------------------


def add_stock(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "stock",
        help="read stock and change it: receive, adjust, damage, write off, count, transfer, "
        "returns",
        description="Read a SKU's stock and run the stock lifecycle operations on it (see "
        "docs/lifecycle.md). Each write prints the buckets it left; a refusal by the state "
        "of the stock (e.g. would_oversell) exits 1 and writes nothing. " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in STOCK_ACTIONS:
        add(actions)


def add_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock show",
        "every bucket of a SKU, per location and in total",
        "Print every bucket of SKU at each of its locations and summed over them, or at "
        "--location only. VERSION is what `earmark stock count` needs.",
        lambda engine, a: (
            engine.stock(a.sku, a.location) if a.location else engine.sku_stock(a.sku)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("--location", help="only this location")


def add_receive(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock receive",
        "units arrived: on_hand += QTY",
        "Units of SKU arrived at --location: on_hand += QTY (a receipt outside any "
        "purchase order; `earmark po receive` books a delivery against one).",
        lambda engine, a: engine.receive(
            a.sku, a.qty, location=a.location, reference=a.reference, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    add_location(parser)
    parser.add_argument(
        "--reference",
        "--reason",
        dest="reference",
        default="",
        help="e.g. a delivery note; recorded as the event's reason",
    )
    add_who(parser)


def add_adjust(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock adjust",
        "correct on_hand by DELTA (negative to remove)",
        "Correct on_hand at --location by DELTA units (e.g. -3 or 2). A decrease below "
        "available is refused (would_oversell) unless --force.",
        lambda engine, a: engine.adjust(
            a.sku, a.delta, a.reason, location=a.location, force=a.force, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("delta", metavar="DELTA", type=int)
    add_location(parser)
    add_force(parser)
    add_who(parser, reason="why (required)", required=True)


def add_damage(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock damage",
        "units on hand are damaged: on_hand -> damaged",
        "Move QTY units of SKU at --location from on_hand to damaged. Refused below "
        "available (would_oversell) unless --force, and beyond on_hand (insufficient_on_hand) "
        "even with it.",
        lambda engine, a: engine.damage(
            a.sku, a.qty, a.reason, location=a.location, force=a.force, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    add_location(parser)
    add_force(parser)
    add_who(parser, reason="what happened (required)", required=True)


def add_write_off(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock write-off",
        "units are written off, from on_hand or from damaged",
        "Write QTY units of SKU at --location off, from on_hand (refused below available "
        "unless --force) or, with --source damaged, from the damaged bucket.",
        lambda engine, a: engine.write_off(
            a.sku, a.qty, a.reason, source=a.source, location=a.location, force=a.force, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    parser.add_argument(
        "--source",
        choices=limits.WRITE_OFF_SOURCES,
        default="on_hand",
        help="the bucket the units leave (default: %(default)s)",
    )
    add_location(parser)
    add_force(parser)
    add_who(parser, reason="why (required)", required=True)


def add_count(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock count",
        "a cycle count: on_hand moves by COUNTED minus on_hand at --version",
        "Record a cycle count: read the location's VERSION first (`earmark stock show SKU "
        "--location L`), count the shelf, then run this. Sales and receipts since the read "
        "are kept. Refused (stale_count) when the version is older than the last "
        f"{limits.ONHAND_LOG_MAX} changes of on_hand: read again and recount.",
        lambda engine, a: engine.count(
            a.sku, a.counted, a.version, location=a.location, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("counted", metavar="COUNTED", type=int, help="units on the shelf")
    parser.add_argument(
        "--version", type=int, required=True, help="the stock's VERSION when you read it"
    )
    add_location(parser)
    add_who(parser, reason="e.g. the aisle (default: cycle count)")
    parser.set_defaults(reason="cycle count")


def add_transfer(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock transfer",
        "send units to another location: on_hand at --from -> in_transit at --to",
        "Send QTY units of SKU from one location to another: they leave on_hand at --from "
        "at once and wait in in_transit at --to until `earmark stock receive-transfer`. "
        "Refused (insufficient_stock) beyond what is available at --from. Prints the "
        "transfer id.",
        lambda engine, a: engine.transfer(
            a.sku, a.qty, a.source, a.target, reference=a.reference, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    parser.add_argument("--from", dest="source", required=True, metavar="LOCATION")
    parser.add_argument("--to", dest="target", required=True, metavar="LOCATION")
    parser.add_argument("--reference", default="", help="e.g. a delivery note")
    add_who(parser, reason="why")


def add_receive_transfer(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock receive-transfer",
        "a transfer arrived with QTY_RECEIVED units",
        "Book the transfer TRANSFER_ID in at its destination with the units counted on "
        "arrival: missing units are written off, surplus lands in on_hand. Receiving again "
        "with the same quantity changes nothing; with another, it is refused.",
        lambda engine, a: engine.receive_transfer(
            a.transfer_id, a.qty_received, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("transfer_id", metavar="TRANSFER_ID")
    parser.add_argument("qty_received", metavar="QTY_RECEIVED", type=int)
    add_who(parser, reason="e.g. what was missing")


def add_show_transfer(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock show-transfer",
        "a transfer and its status",
        "Print the transfer TRANSFER_ID.",
        lambda engine, a: engine.get_transfer(a.transfer_id),
    )
    parser.add_argument("transfer_id", metavar="TRANSFER_ID")


def add_receive_return(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock receive-return",
        "units of a shipped sale came back: returned += QTY",
        "Take QTY units of SKU back from the shipped reservation RESERVATION_ID into "
        "quarantine (returned), at most what it shipped of the line. Then dispose of them "
        "with `earmark stock dispose-returned`.",
        lambda engine, a: engine.receive_return(
            a.reservation_id, a.sku, a.qty, location=a.location, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("reservation_id", metavar="RESERVATION_ID")
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    parser.add_argument("--location", help="the line's location, when the sale has several")
    add_who(parser, reason="e.g. the customer's return reason")


def add_dispose_returned(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock dispose-returned",
        "returned units leave quarantine: restock, damaged or write_off",
        "Move QTY returned units of SKU at --location back to on_hand (restock), to "
        "damaged, or write them off.",
        lambda engine, a: engine.dispose_returned(
            a.sku, a.qty, a.disposition, location=a.location, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    parser.add_argument("disposition", choices=limits.DISPOSITIONS, metavar="DISPOSITION",
                        help=f"one of {', '.join(limits.DISPOSITIONS)}")  # fmt: skip
    add_location(parser)
    add_who(parser, reason="e.g. the inspection's finding")


STOCK_ACTIONS: list[Callable[[Subparsers], None]] = [
    add_show,
    add_receive,
    add_adjust,
    add_damage,
    add_write_off,
    add_count,
    add_transfer,
    add_receive_transfer,
    add_show_transfer,
    add_receive_return,
    add_dispose_returned,
]


# -- earmark po --------------------------------------------------------------------------


def add_po(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "po",
        help="purchase orders: create, receive, close, show",
        description="Purchase orders: units a supplier promised (counted in inbound), "
        "received in one or more deliveries, then closed (the shortfall recorded as a "
        "supplier discrepancy) or cancelled. " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (add_po_create, add_po_receive, add_po_close, add_po_show):
        add(actions)


def create_po(engine: Engine, a: argparse.Namespace) -> PurchaseOrder:
    key = a.idempotency_key or f"cli-{uuid.uuid4().hex}"
    if a.idempotency_key is None:
        print(f"idempotency key {key}: if this fails half way, repeat the command with "
              f"--idempotency-key {key}", file=sys.stderr)  # fmt: skip
    return engine.create_purchase_order(
        a.lines,
        supplier=a.supplier,
        expected_date=a.expected_date,
        idempotency_key=key,
        reference=a.reference,
        reason=a.reason,
        actor=a.actor,
    )


def add_po_create(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "po create",
        "expect units from a supplier: inbound += QTY per line",
        "Create a purchase order; prints its id. An order spanning partitions is created "
        "part by part: a command that failed half way is finished by repeating it with the "
        "same --idempotency-key (one is made up and printed when none is given).",
        create_po,
    )
    add_lines(parser, "units expected")
    parser.add_argument("--supplier", required=True, help="who delivers")
    parser.add_argument(
        "--expected-date", required=True, metavar="YYYY-MM-DD", help="the promised delivery date"
    )
    parser.add_argument("--reference", default="", help="e.g. your purchase order number")
    add_who(parser, reason="why")


def add_po_receive(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "po receive",
        "a delivery against a purchase order",
        "Book a delivery against PO_ID: per line, inbound -> on_hand; over-delivery lands "
        "in on_hand too (a supplier discrepancy). Refused once the order is closed.",
        lambda engine, a: engine.receive_purchase_order(
            a.po_id, a.lines, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("po_id", metavar="PO_ID")
    add_lines(parser, "units delivered")
    add_who(parser, reason="e.g. the delivery note")


def add_po_close(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "po close",
        "no more units expected: close (or --cancel) a purchase order",
        "Close PO_ID: inbound loses what is outstanding, recorded as the supplier's "
        "shortfall; with --cancel the supplier is not blamed. Twice is a no-op.",
        lambda engine, a: engine.close_purchase_order(
            a.po_id, cancel=a.cancel, reason=a.reason, **who(a)
        ),
    )
    parser.add_argument("po_id", metavar="PO_ID")
    parser.add_argument("--cancel", action="store_true", help="cancel instead of close")
    add_who(parser, reason="why")


def add_po_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "po show",
        "a purchase order: expected, received, outstanding per line",
        "Print PO_ID and its lines.",
        lambda engine, a: engine.get_purchase_order(a.po_id),
    )
    parser.add_argument("po_id", metavar="PO_ID")


# -- earmark ledger ------------------------------------------------------------------------


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
        help="only this event type (e.g. damaged); repeat for several",
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


def run_ledger(args: argparse.Namespace, settings: Settings) -> int:
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
    if page.next_cursor is not None:
        print(f"more: repeat with --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def event_json(event: Event) -> str:
    """One event as ``GET /v1/ledger`` shows it."""
    return LedgerEntry.of(event).model_dump_json()
