"""Seats in a rebuild (docs/seats.md): ``restore_stock`` puts back a seat pool's buckets
like any stock record; this puts back what the buckets do not say, folded from the
tenant's recorded events: its settings (the last ``seats_capped``) and who is assigned
(``seat_assigned`` / ``seat_accepted`` minus ``seat_freed`` / ``seat_lease_expired``).
Pending invites are lost with Redis, as holds are (``reserved`` was zeroed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from earmark import limits
from earmark.engine.steps import Call, Op
from earmark.keys import Keys, partition_of
from earmark.store.ledger import Event, EventKey, Ledger

USERS_PER_CALL_MAX = 500
EVENTS_PER_READ_MAX = 5_000
ASSIGNING = frozenset({"seat_assigned", "seat_accepted"})
FREEING = frozenset({"seat_freed", "seat_lease_expired"})


@dataclass(slots=True)
class TenantSeats:
    """A tenant's seats as the record knows them."""

    settings: dict[str, str] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)

    def apply(self, event: Event) -> None:
        user = event.flags.get("user", "")
        if event.type == "seats_capped":
            self.settings = {k: event.flags[k] for k in ("cap", "overage", "limit")}
            self.settings["floating"] = event.flags.get("floating", "0")
            self.settings["lease_ms"] = event.flags.get("lease_ms", "0")
        elif event.type in ASSIGNING:
            self.users.add(user)
        elif event.type in FREEING:
            self.users.discard(user)


async def recorded_seats(ledger: Ledger) -> dict[str, TenantSeats]:
    """Every tenant's seats folded from the record, in event-key order (a tenant's events
    all live in its partition, so that is the order they happened in)."""
    tenants: dict[str, TenantSeats] = {}
    after: EventKey | None = None
    while events := await ledger.events(after, EVENTS_PER_READ_MAX):
        for event in events:
            if event.location == limits.SEAT_LOCATION:
                tenants.setdefault(event.sku, TenantSeats()).apply(event)
        after = events[-1].key
    return {t: seats for t, seats in tenants.items() if seats.settings}


def restore_calls(keys: Keys, partitions: int, tenants: dict[str, TenantSeats]) -> list[Call]:
    calls = []
    for tenant in sorted(tenants):
        seats = tenants[tenant]
        p = partition_of(tenant, partitions)
        call_keys = [
            keys.seat_config(p, tenant),
            keys.seat_users(p, tenant),
            keys.seat_leases(p, tenant),
            keys.seat_invites(p, tenant),
        ]
        s = seats.settings
        over = "1" if len(seats.users) > int(s["limit"]) else "0"
        head: list[str | int] = [s["cap"], s["overage"], s["limit"], s["floating"], s["lease_ms"]]
        users = sorted(seats.users)
        for start in range(0, max(len(users), 1), USERS_PER_CALL_MAX):
            chunk = users[start : start + USERS_PER_CALL_MAX]
            calls.append(Call("restore_seats", call_keys, [*head, over, len(chunk), *chunk]))
    return calls


def run_calls(calls: list[Call]) -> Op[int]:
    restored = 0
    for call in calls:
        reply: Any = yield call
        restored += int(reply)
    return restored
