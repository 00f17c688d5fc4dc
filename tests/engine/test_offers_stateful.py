"""Random sequences over one drop with its waitlist on (reserve with customers, commit,
release, expiry by the clock, join, decline, restock, commit an offer) against a plain
Python model of the line, on fakeredis with a frozen clock. Invariants: nothing
oversold, no customer above the limit (their live holds, offers included, and
purchases), FIFO kept (nobody is served while someone who joined before them still
waits), and after a sweep no unit is free while the head of the line could be served."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from earmark import (
    CustomerLimitExceeded,
    InsufficientStock,
    ReservationExpired,
    ReservationNotHeld,
    ReservationReleased,
)
from tests.support.model import START, FrozenClock

SKU, LIMIT, HOLD_TTL_MS, OFFER_TTL_MS = "DROP", 2, 5_000, 3_000
CUSTOMERS = ["ann", "bob", "cat", "dan", "eve"]


@dataclass
class Line:
    """The model of the waitlist: entries by customer, in arrival order."""

    seq: int = 0
    arrival: dict[str, int] = field(default_factory=dict)  # of the live entry
    served: list[int] = field(default_factory=list)  # arrivals that left 'waiting'


class OfferMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        import fakeredis

        from earmark import Engine, EngineConfig

        self.clock = FrozenClock()
        config = EngineConfig(prefix="offers", partitions=2, drop_attempts_per_second=0)
        self.engine = Engine.embedded(config, fakeredis.FakeServer()).start()
        self.engine.receive(SKU, 3, idempotency_key="first")
        self.on_hand = 3
        self.rids: set[str] = set()
        self.line = Line()
        self.keys = 0
        self.engine.create_drop(
            "d",
            [SKU],
            opens_at=START - timedelta(seconds=1),
            per_customer_limit=LIMIT,
            hold_ttl_seconds=HOLD_TTL_MS / 1000,
            waitlist=True,
            offer_ttl_seconds=OFFER_TTL_MS / 1000,
        )

    def teardown(self) -> None:
        self.engine.close()
        self.clock.stop()

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def entries(self) -> dict[str, Any]:
        """customer -> its entry, for the customers who ever joined."""
        return {c: self.engine.get_waitlist_entry("d", c) for c in self.line.arrival}

    def observe(self) -> None:
        """Learns the offers made and the entries that left the line since the last step."""
        for customer, entry in self.entries().items():
            if entry.offer is not None:
                self.rids.add(entry.offer.reservation_id)
            arrival = self.line.arrival[customer]
            if entry.status in ("offered", "skipped") and arrival not in self.line.served:
                self.line.served.append(arrival)

    def live_units(self) -> dict[str, int]:
        """customer -> units of its live holds and purchases of the drop (offers too)."""
        used: dict[str, int] = dict.fromkeys(CUSTOMERS, 0)
        for rid in self.rids:
            rsv = self.engine.get_reservation(rid)
            live = rsv.status == "held" and rsv.expires_at.timestamp() * 1000 > self.clock.now_ms
            if live or rsv.status == "committed":
                owner = self.customer_of[rid]
                used[owner] += sum(line.qty for line in rsv.lines)
        return used

    @property
    def customer_of(self) -> dict[str, str]:
        p = self.engine.partition_of(SKU)
        found = {}
        for rid in self.rids:
            found[rid] = self.engine.client.hget(self.engine.keys.reservation(p, rid), "customer")
        return found

    @rule(qty=st.integers(1, 3))
    def restock(self, qty: int) -> None:
        self.engine.receive(SKU, qty, idempotency_key=self.key())
        self.on_hand += qty
        self.observe()

    @rule(qty=st.integers(1, 3))
    def receive_purchase_order(self, qty: int) -> None:
        po = self.engine.create_purchase_order(
            [(SKU, qty)], supplier="S", expected_date="2026-03-01", idempotency_key=self.key()
        )
        self.engine.receive_purchase_order(po.id, [(SKU, qty)], idempotency_key=self.key())
        self.on_hand += qty
        self.observe()

    @rule(qty=st.integers(1, 2))
    def adjust_up(self, qty: int) -> None:
        self.engine.adjust(SKU, qty, "found", idempotency_key=self.key())
        self.on_hand += qty
        self.observe()

    @rule(more=st.integers(0, 2))
    def count(self, more: int) -> None:
        level = self.engine.stock(SKU).locations[0]
        self.engine.count(SKU, level.on_hand + more, level.version, idempotency_key=self.key())
        self.on_hand += more
        self.observe()

    @rule(target=reservations, customer=st.sampled_from(CUSTOMERS), qty=st.integers(1, 2))
    def reserve(self, customer: str, qty: int) -> Any:
        used = self.live_units()[customer]
        try:
            held = self.engine.reserve([(SKU, qty)], idempotency_key=self.key(), customer=customer)
        except CustomerLimitExceeded:
            assert used + qty > LIMIT
            return "refused"
        except InsufficientStock:
            return "refused"
        assert used + qty <= LIMIT
        self.rids.add(held.id)
        self.observe()
        return held.id

    @rule(rid=reservations)
    def commit(self, rid: str) -> None:
        if rid == "refused":
            return
        with contextlib.suppress(ReservationExpired, ReservationReleased):
            self.engine.commit(rid)  # a hold that ended is refused: the model learns it
        self.observe()

    @rule(rid=reservations)
    def release(self, rid: str) -> None:
        if rid == "refused":
            return
        try:
            self.engine.release(rid)
        except ReservationNotHeld:
            assert self.engine.get_reservation(rid).status == "committed"
        self.observe()

    @rule(customer=st.sampled_from(CUSTOMERS), qty=st.integers(1, 2))
    def join(self, customer: str, qty: int) -> None:
        before = self.engine.get_drop("d").waiting
        entry = self.engine.join_waitlist("d", customer, SKU, qty, idempotency_key=self.key())
        if entry.status == "waiting" and entry.position == before + 1:
            self.line.seq += 1
            self.line.arrival[customer] = self.line.seq
        self.observe()

    @rule(customer=st.sampled_from(CUSTOMERS))
    def decline(self, customer: str) -> None:
        if customer not in self.line.arrival:
            return
        self.engine.decline_waitlist("d", customer, idempotency_key=self.key())
        self.observe()

    @rule(customer=st.sampled_from(CUSTOMERS))
    def commit_offer(self, customer: str) -> None:
        if customer not in self.line.arrival:
            return
        offer = self.engine.get_waitlist_entry("d", customer).offer
        if offer is None:
            return
        with contextlib.suppress(ReservationExpired):
            self.engine.commit(offer.reservation_id)  # an offer past its TTL is refused
        self.observe()

    @rule(ms=st.integers(100, 6_000))
    def advance(self, ms: int) -> None:
        self.clock.shift(ms)

    @rule()
    def sweep(self) -> None:
        self.engine.sweep()
        self.observe()
        # No unit is free while the head of the line could be served.
        level = self.engine.stock(SKU).locations[0]
        waiting = sorted(
            (self.line.arrival[c], e.qty)
            for c, e in self.entries().items()
            if e.status == "waiting"
        )
        if waiting:
            assert level.available < waiting[0][1]

    @invariant()
    def nothing_oversold_nobody_above_the_limit_fifo_kept(self) -> None:
        for customer, units in self.live_units().items():
            assert units <= LIMIT, customer
        for stock in self.engine.stock(SKU).locations:
            assert stock.on_hand == self.on_hand
            assert stock.committed + stock.reserved <= stock.on_hand
        entries = self.entries()
        waiting = [self.line.arrival[c] for c, e in entries.items() if e.status == "waiting"]
        if waiting and self.line.served:
            # Served in order: nobody left the line by an offer or a skip while someone
            # who joined before them was still waiting.
            assert max(self.line.served) < min(waiting)
        drop = self.engine.get_drop("d")
        assert drop.waiting == len(waiting)
        assert drop.offered == sum(1 for e in entries.values() if e.status == "offered")
        # Offers that bring a customer to the limit count as holds do.
        at_limit = sum(1 for units in self.live_units().values() if units == LIMIT)
        assert drop.customers_at_limit == at_limit


OfferMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_offer_machine_keeps_the_line = OfferMachine.TestCase
