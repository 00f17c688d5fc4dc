"""``earmark po create | receive | close | show``: purchase orders."""

from __future__ import annotations

import argparse

from earmark.cli.common import (
    NEEDS,
    Subparsers,
    add_action,
    add_lines,
    add_who,
    who,
)
from earmark.engine.sync_engine import Engine
from earmark.models import (
    PurchaseOrder,
)


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
    """The handler gave it a key (``idempotency_key_for``): a retry reaches the same order."""
    return engine.create_purchase_order(
        a.lines,
        supplier=a.supplier,
        expected_date=a.expected_date,
        idempotency_key=a.idempotency_key,
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
        "same --idempotency-key (derived from --reference, or generated, and printed when "
        "none is given).",
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
