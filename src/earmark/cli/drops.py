"""``earmark drop create | update | show | waitlist join | waitlist show | waitlist
decline``: drops and their waitlists (docs/drops.md)."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from earmark.cli.common import NEEDS, Subparsers, add_action, add_who, who
from earmark.engine.sync_engine import Engine
from earmark.errors import InvalidRequest
from earmark.models import UNCHANGED, Drop


def add_drop(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "drop",
        help="drops: create, update (before opening), show, waitlist",
        description="Drops: SKUs of one partition sold from --opens-at (the Redis clock) "
        "under a per-customer limit, decided in the script that claims each hold. " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (add_drop_create, add_drop_update, add_drop_show, add_drop_waitlist):
        add(actions)


def when(text: str) -> datetime.datetime:
    """An RFC 3339 time with its zone (``2026-03-01T09:00:00Z``)."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from error
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone")
    return value


def whole_or_none(text: str) -> int | None:
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a whole number or 'none': {text!r}") from error


def add_rules(parser: argparse.ArgumentParser, *, create: bool) -> None:
    parser.add_argument("--opens-at", type=when, required=create, help="RFC 3339, with zone")
    parser.add_argument("--closes-at", type=when, help="RFC 3339, with zone (default: never)")
    parser.add_argument(
        "--limit",
        type=whole_or_none,
        dest="per_customer_limit",
        default=None if create else UNCHANGED,
        help="units per customer ('none': no limit)",
    )
    parser.add_argument("--hold-ttl", type=float, dest="hold_ttl_seconds", help="seconds")
    parser.add_argument("--offer-ttl", type=float, dest="offer_ttl_seconds", help="seconds")
    parser.add_argument(
        "--waitlist",
        action=argparse.BooleanOptionalAction,
        default=False if create else None,
        help="whether customers may join a waitlist when a SKU is short (default: "
        + ("no)" if create else "unchanged)"),
    )
    if not create:
        parser.add_argument("--no-close", action="store_true", help="the drop never closes")


def create_drop(engine: Engine, a: argparse.Namespace) -> Drop:
    return engine.create_drop(
        a.drop_id,
        a.skus,
        opens_at=a.opens_at,
        closes_at=a.closes_at,
        per_customer_limit=a.per_customer_limit,
        hold_ttl_seconds=a.hold_ttl_seconds,
        offer_ttl_seconds=a.offer_ttl_seconds,
        waitlist=a.waitlist,
        **who(a),
    )


def update_drop(engine: Engine, a: argparse.Namespace) -> Drop:
    changes: dict[str, Any] = {}
    for name in ("opens_at", "hold_ttl_seconds", "offer_ttl_seconds", "closes_at", "waitlist"):
        if getattr(a, name) is not None:
            changes[name] = getattr(a, name)
    if a.no_close:
        if a.closes_at is not None:
            raise InvalidRequest("--no-close and --closes-at contradict", field="closes_at")
        changes["closes_at"] = None
    changes["per_customer_limit"] = a.per_customer_limit
    return engine.update_drop(a.drop_id, **changes, **who(a))


def add_drop_create(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "drop create",
        "a drop of SKUs with an opening time and a per-customer limit",
        "Create DROP_ID over SKU... (all in one partition); prints the drop.",
        create_drop,
    )
    parser.add_argument("drop_id", metavar="DROP_ID")
    parser.add_argument("skus", metavar="SKU", nargs="+")
    add_rules(parser, create=True)
    add_who(parser)


def add_drop_update(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "drop update",
        "change a drop's times and limits before it opens",
        "Change the given rules of DROP_ID (refused once it has opened); --limit none "
        "removes the limit.",
        update_drop,
    )
    parser.add_argument("drop_id", metavar="DROP_ID")
    add_rules(parser, create=False)
    add_who(parser)


def add_drop_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "drop show",
        "a drop's rules and live figures",
        "Print DROP_ID: rules, whether it is open (Redis clock), units sold and held.",
        lambda engine, a: engine.get_drop(a.drop_id),
    )
    parser.add_argument("drop_id", metavar="DROP_ID")


def add_drop_waitlist(actions: Subparsers) -> None:
    parser = actions.add_parser(
        "waitlist",
        help="a drop's waitlist: join, show, decline",
        description="The line of customers waiting for a drop's SKU (docs/drops.md). " + NEEDS,
    )
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    join = add_action(
        steps,
        "drop waitlist join",
        "put a customer in line for a SKU of the drop",
        "Put CUSTOMER in line for --qty units of SKU of DROP_ID; prints the entry and its "
        "position (joining again returns the same entry).",
        lambda engine, a: engine.join_waitlist(a.drop_id, a.customer, a.sku, a.qty, **who(a)),
    )
    join.add_argument("drop_id", metavar="DROP_ID")
    join.add_argument("customer", metavar="CUSTOMER")
    join.add_argument("sku", metavar="SKU")
    join.add_argument("--qty", type=int, default=1, help="units wanted (default: 1)")
    add_who(join)
    show = add_action(
        steps,
        "drop waitlist show",
        "a customer's waitlist entry",
        "Print CUSTOMER's entry on DROP_ID: status, position (1: next in line), offer.",
        lambda engine, a: engine.get_waitlist_entry(a.drop_id, a.customer, a.sku),
    )
    decline = add_action(
        steps,
        "drop waitlist decline",
        "take a customer out of the line",
        "CUSTOMER leaves the line of DROP_ID (status declined); an entry holding an "
        "offer declines it, and the offer's units go to the next in line.",
        lambda engine, a: engine.decline_waitlist(a.drop_id, a.customer, a.sku, **who(a)),
    )
    for parser in (show, decline):
        parser.add_argument("drop_id", metavar="DROP_ID")
        parser.add_argument("customer", metavar="CUSTOMER")
        parser.add_argument(
            "--sku", help="the entry's SKU (needed when the customer waits for several)"
        )
    add_who(decline)
