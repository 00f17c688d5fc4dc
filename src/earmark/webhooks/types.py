"""The webhook event types, the ledger events they come from, and endpoint filters.

Every recorded change is announced: each ledger event with deltas yields
``stock.changed`` (plus ``stock.out`` / ``stock.back`` when available crosses zero), and
each ledger event also yields its own type from ``TYPE_OF_EVENT``. A ledger event type
not in the table yet (a later issue's) is still sent, as ``ledger.<type>``, so no
recorded change goes unannounced; it gets its proper name when it joins the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from earmark.errors import InvalidRequest

STOCK_CHANGED, STOCK_OUT, STOCK_BACK = "stock.changed", "stock.out", "stock.back"
ENDPOINT_DISABLED = "endpoint.disabled"
FALLBACK_GROUP = "ledger"

# ledger event type -> webhook type (docs/design/lifecycle.md, docs/design/reservations.md).
TYPE_OF_EVENT: dict[str, str] = {
    "reserved": "reservation.held",
    "committed": "reservation.committed",
    "released": "reservation.released",
    "expired": "reservation.expired",
    "extended": "reservation.extended",
    "shipped": "reservation.shipped",
    "transfer_out": "transfer.sent",
    "transfer_in": "transfer.in_transit",
    "transfer_received": "transfer.received",
    "transfer_discrepancy": "transfer.discrepancy",
    "returned": "return.received",
    "return_restocked": "return.restocked",
    "return_damaged": "return.damaged",
    "return_written_off": "return.written_off",
    "po_expected": "purchase_order.expected",
    "po_received": "purchase_order.received",
    "supplier_discrepancy": "purchase_order.discrepancy",
    "po_closed": "purchase_order.closed",
    "po_cancelled": "purchase_order.cancelled",
    "received": "adjustment.received",
    "adjusted": "adjustment.adjusted",
    "damaged": "adjustment.damaged",
    "written_off": "adjustment.written_off",
    "counted": "adjustment.counted",
    "oversell_exposure": "adjustment.oversell_exposure",
    "holds_lost": "adjustment.holds_lost",
    "drop_created": "drop.created",
    "drop_changed": "drop.changed",
    "waitlist_joined": "drop.waitlist_joined",
    "waitlist_declined": "drop.waitlist_declined",
    "waitlist_offered": "drop.waitlist_offered",
    "waitlist_converted": "drop.waitlist_converted",
    "waitlist_expired": "drop.waitlist_expired",
    "waitlist_skipped": "drop.waitlist_skipped",
    # seats (docs/seats.md)
    "seats_capped": "seats.capped",
    "seats_over_cap": "seats.over_cap",
    "seats_under_cap": "seats.under_cap",
    "seat_assigned": "seats.assigned",
    "seat_accepted": "seats.accepted",
    "seat_freed": "seats.freed",
    "seat_renewed": "seats.renewed",
    "seat_lease_expired": "seats.lease_expired",
    "seat_invited": "seats.invited",
    "seat_invite_revoked": "seats.invite_revoked",
    "seat_invite_expired": "seats.invite_expired",
    # reorder points, low-stock alerts and discrepancy cases (docs/reconciliation.md)
    "stock_low": "stock.low",
    "stock_rearmed": "stock.rearmed",
    "reorder_set": "stock.reorder_set",
    "discrepancy_opened": "discrepancy.opened",
    "discrepancy_resolved": "discrepancy.resolved",
    "discrepancy_overdue": "discrepancy.overdue",
}
STOCK_TYPES = (STOCK_CHANGED, STOCK_OUT, STOCK_BACK)
WEBHOOK_TYPES: tuple[str, ...] = (*STOCK_TYPES, *TYPE_OF_EVENT.values(), ENDPOINT_DISABLED)
GROUPS = tuple(sorted({t.partition(".")[0] for t in WEBHOOK_TYPES} | {FALLBACK_GROUP}))

FILTERS_MAX = 64
FILTER_LENGTH_MAX = 64
_FALLBACK_NAME = re.compile(r"^ledger\.[a-z][a-z0-9_]{0,47}$")


# The same rule as ``is_valid_filter``, as one regular expression (the API's schema).
FILTER_PATTERN = (
    r"^(\*|"
    + "|".join(re.escape(t) for t in WEBHOOK_TYPES)
    + "|"
    + "|".join(re.escape(g) + r"\.\*" for g in GROUPS)
    + r"|ledger\.[a-z][a-z0-9_]{0,47})$"
)


def type_of_event(ledger_type: str) -> str:
    return TYPE_OF_EVENT.get(ledger_type) or f"{FALLBACK_GROUP}.{ledger_type}"


def is_valid_filter(text: str) -> bool:
    """``*``, a type, ``<group>.*``, or a ``ledger.<type>`` of an event yet to be named."""
    if text == "*" or text in WEBHOOK_TYPES:
        return True
    group, dot, rest = text.partition(".")
    if dot and rest == "*":
        return group in GROUPS
    return bool(_FALLBACK_NAME.fullmatch(text))


def validate_filters(filters: Iterable[str]) -> tuple[str, ...]:
    """The filters, deduplicated in order; ``InvalidRequest`` (field ``events``) names
    the first that matches no type."""
    found = tuple(dict.fromkeys(filters))
    if not found:
        raise InvalidRequest("an endpoint needs at least one event type ('*': all)", field="events")
    if len(found) > FILTERS_MAX:
        raise InvalidRequest(f"at most {FILTERS_MAX} event types", field="events")
    for text in found:
        if len(text) > FILTER_LENGTH_MAX or not is_valid_filter(text):
            raise InvalidRequest(
                f"{text!r} is no event type: use one of docs/webhooks.md, '<group>.*' "
                f"(groups: {', '.join(GROUPS)}) or '*'",
                field="events",
            )
    return found


def matches(filters: Sequence[str], webhook_type: str) -> bool:
    group = webhook_type.partition(".")[0]
    return any(f in ("*", webhook_type, f"{group}.*") for f in filters)
