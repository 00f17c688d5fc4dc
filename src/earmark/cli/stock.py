"""``earmark stock ...``: receive, adjust, damage, write off, count, transfer and return
stock, through the engine on EARMARK_REDIS_URL."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pydantic import BaseModel

from earmark import limits
from earmark.cli.common import (
    NEEDS,
    Subparsers,
    add_action,
    add_force,
    add_location,
    add_who,
    who,
)
from earmark.engine.sync_engine import Engine


def add_stock(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "stock",
        help="read stock and change it: receive, adjust, damage, write off, count, transfer, "
        "returns",
        description="Read a SKU's stock and run the stock lifecycle operations on it (see "
        "docs/design/lifecycle.md). Each write prints the buckets it left; a refusal by the state "
        "of the stock (e.g. would_oversell) exits 1 and writes nothing. " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in STOCK_ACTIONS:
        add(actions)


def show_stock(engine: Engine, a: argparse.Namespace) -> BaseModel:
    """As ``GET /v1/skus/{sku}``: the network and each location, or one location's
    buckets with its version."""
    found = engine.stock(a.sku, a.location)
    return found.locations[0] if a.location else found


def add_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "stock show",
        "every bucket of a SKU, per location and in total",
        "Print every bucket of SKU at each of its locations and summed over them, or at "
        "--location only. VERSION is what `earmark stock count` needs.",
        show_stock,
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
        "are kept. Refused (stale_count) when the version is not newer than the last "
        "applied count's, or older than the last "
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
