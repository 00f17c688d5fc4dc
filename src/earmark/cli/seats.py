"""``earmark seats set-cap | assign | free | invite | accept | heartbeat | show``: seats
with per-tenant limits (docs/seats.md)."""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from earmark import limits
from earmark.cli.common import NEEDS, Subparsers, add_action, add_who, who
from earmark.engine.sync_engine import Engine
from earmark.models import SeatPool, SeatUserPage


def add_seats(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "seats",
        help="seats with per-tenant limits: set-cap, assign, free, invite, accept, show",
        description="A tenant's seats: at most floor(cap x overage) held at once, assigned "
        "plus pending invites. " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (add_set_cap, add_user_actions, add_invite, add_show):
        add(actions)


def add_set_cap(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "seats set-cap",
        "create a tenant's seat pool or change its cap",
        "Set the tenant's cap and overage. A cap below use evicts nobody: the tenant is "
        "over cap until use falls to the limit.",
        lambda engine, a: engine.set_seat_cap(
            a.tenant,
            a.cap,
            overage=a.overage,
            floating=a.lease_seconds is not None,
            lease_seconds=a.lease_seconds,
            **who(a),
        ),
    )
    parser.add_argument("tenant", metavar="TENANT")
    parser.add_argument("cap", metavar="CAP", type=int)
    parser.add_argument("--overage", default="none", choices=list(limits.SEAT_OVERAGES))
    parser.add_argument(
        "--lease-seconds",
        type=int,
        help="floating seats: an assignment is a lease of this many seconds (heartbeat)",
    )
    add_who(parser)


USER_ACTIONS = {
    "assign": ("give a user a seat (idempotent)", "assign_seat"),
    "free": ("free a user's seat or revoke its invite (idempotent)", "free_seat"),
    "accept": ("turn a user's live invite into a seat", "accept_invite"),
    "heartbeat": ("renew a floating seat's lease", "renew_seat"),
}


def add_user_actions(actions: Subparsers) -> None:
    for name, (summary, method) in USER_ACTIONS.items():

        def run(engine: Engine, a: argparse.Namespace, method: str = method) -> BaseModel:
            result: BaseModel
            result = getattr(engine, method)(a.tenant, a.user, **who(a))
            return result

        parser = add_action(
            actions, f"seats {name}", summary, summary[0].upper() + summary[1:] + ".", run
        )
        parser.add_argument("tenant", metavar="TENANT")
        parser.add_argument("user", metavar="USER")
        add_who(parser)


def add_invite(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "seats invite",
        "hold a seat for a user until accepted or expired",
        "Invite USER: a seat is held for TTL seconds (the limit is checked now).",
        lambda engine, a: engine.invite_seat(a.tenant, a.user, a.ttl_seconds, **who(a)),
    )
    parser.add_argument("tenant", metavar="TENANT")
    parser.add_argument("user", metavar="USER")
    parser.add_argument("--ttl-seconds", type=int, default=7 * 24 * 3600)
    add_who(parser)


def show(engine: Engine, a: argparse.Namespace) -> SeatPool | SeatUserPage:
    if a.users:
        return engine.seat_users(a.tenant, cursor=a.cursor, limit=a.limit)
    return engine.seats(a.tenant, period=a.period)


def add_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "seats show",
        "a tenant's seats (or its assigned users)",
        "The cap, limit, assigned, invited, over_cap and the billing period's high-water "
        "mark; with --users, a page of the assigned users.",
        show,
    )
    parser.add_argument("tenant", metavar="TENANT")
    parser.add_argument("--period", metavar="YYYY-MM", help="the high-water mark of that month")
    parser.add_argument("--users", action="store_true", help="page the assigned users")
    parser.add_argument("--cursor", help="next_cursor of the previous page")
    parser.add_argument("--limit", type=int, default=limits.SEAT_USERS_PAGE_DEFAULT)
