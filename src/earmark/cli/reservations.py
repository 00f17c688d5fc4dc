"""``earmark reservations list | show | release``: find a stuck hold and free it.

``list`` pages the held reservations (``Engine.held_reservations``, as
``GET /v1/reservations``); the other statuses are in the durable record
(``earmark ledger --type committed``). ``release`` is the operator's release: any
reservation, whoever created it, recorded with ``--actor``.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from pydantic import BaseModel

from earmark import limits
from earmark.cli.common import NEEDS, Subparsers, add_action, add_location, add_who, table, who
from earmark.engine.sync_engine import Engine
from earmark.models import Reservation, ReservationPage


class Released(BaseModel):
    """What ``release`` did: the reservation after the call, its status before, and
    whether the call was a replay of an earlier one with the same idempotency key."""

    before: str
    reservation: Reservation
    repeated: bool = False


def add_reservations(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "reservations",
        help="held reservations: list, show, release (find and free a stuck hold)",
        description="Find a stuck hold and free it: list the held reservations (soonest "
        "expiry first), show one, release one. Committed, released, expired and shipped "
        "reservations are in the durable record: `earmark ledger --type committed`. " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (add_list, add_show, add_release):
        add(actions)


def when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def lines_of(r: Reservation) -> str:
    return " ".join(f"{x.sku}:{x.qty}@{x.location}" for x in r.lines)


def describe_page(page: ReservationPage) -> list[str]:
    rows = [(r.id, r.status, when(r.expires_at), r.channel or "-", lines_of(r)) for r in page.items]
    out = table(("ID", "STATUS", "EXPIRES", "CHANNEL", "LINES"), rows) if rows else []
    if not rows:
        out.append("no held reservations on this page")
    if page.next_cursor is not None:
        out.append(f"more: --cursor {page.next_cursor}")
    return out


def describe_reservation(r: Reservation) -> list[str]:
    out = [f"reservation {r.id}: {r.status}"]
    if r.channel:
        out.append(f"channel {r.channel}")
    stamps = ("created_at", "expires_at", "committed_at", "released_at", "expired_at")
    out += [f"{name} {when(getattr(r, name))}" for name in (*stamps, "shipped_at")
            if getattr(r, name) is not None]  # fmt: skip
    return out + table(("SKU", "LOCATION", "QTY"), [(x.sku, x.location, x.qty) for x in r.lines])


def describe_released(done: Released) -> list[str]:
    r = done.reservation
    units = sum(x.qty for x in r.lines)
    if done.repeated:
        head = f"reservation {r.id}: this release was already done (same idempotency key)"
    elif done.before == "held":
        head = f"released {r.id}: {units} units of {len(r.lines)} lines available again"
    else:
        head = f"reservation {r.id} was already {done.before}: nothing changed"
    return [head, *describe_reservation(r)[1:]]


def list_held(engine: Engine, a: argparse.Namespace) -> ReservationPage:
    return engine.held_reservations(
        sku=a.sku,
        location=a.location,
        customer=a.customer,
        cursor=a.cursor,
        limit=a.limit,
    )


def release(engine: Engine, a: argparse.Namespace) -> Released:
    before = engine.get_reservation(a.reservation_id).status
    after = engine.release(a.reservation_id, **who(a))
    return Released(before=before, reservation=after, repeated=after.replayed)


def add_list(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "reservations list",
        "held reservations, soonest expiry first, a page at a time",
        "A page of held reservations (of SKU at --location with --sku; of a drop's "
        "customer with --customer); pass the printed --cursor for the next page.",
        list_held,
    )
    parser.add_argument("--sku", help="only holds on this SKU (at --location)")
    add_location(parser, "the location of --sku")
    parser.add_argument("--customer", help="only a drop's holds of this customer")
    parser.add_argument("--cursor", help="the cursor the previous page printed")
    parser.add_argument(
        "--limit",
        type=int,
        default=50,
        help=f"reservations per page, 1 to {limits.RESERVATION_PAGE_MAX} (default: %(default)s)",
    )
    parser.set_defaults(describe_result=describe_page)


def add_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "reservations show",
        "one reservation: status, times, lines",
        "Print RESERVATION_ID: its status (held, committed, released, expired, shipped), "
        "times and lines.",
        lambda engine, a: engine.get_reservation(a.reservation_id),
    )
    parser.add_argument("reservation_id", metavar="RESERVATION_ID")
    parser.set_defaults(describe_result=describe_reservation)


def add_release(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "reservations release",
        "free a held reservation (its units are available again)",
        "Release RESERVATION_ID whoever created it, recorded with --actor; a reservation "
        "already released is left as it is, a committed or shipped one is refused (exit 1).",
        release,
    )
    parser.add_argument("reservation_id", metavar="RESERVATION_ID")
    add_who(parser)
    parser.set_defaults(describe_result=describe_released)
