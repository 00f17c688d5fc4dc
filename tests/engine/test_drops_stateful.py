"""Random sequences over one drop (reserve with customers under several spellings,
commit, release, expiry by the clock, restock) against a plain Python model, on
fakeredis with a frozen clock: no customer ever above the limit, no oversell, and every
refusal the one the model expects (the limit is judged before stock)."""

from __future__ import annotations

from dataclasses import dataclass
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

SKU, LIMIT, HOLD_TTL_MS = "DROP", 2, 5_000
CUSTOMERS = ["ann", "bob", "cat", "dan"]


@dataclass
class DropHold:
    customer: str
    qty: int
    expires_at: int
    status: str = "held"


class DropMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        import fakeredis

        from earmark import Engine, EngineConfig

        self.clock = FrozenClock()
        config = EngineConfig(prefix="drops", partitions=2, drop_attempts_per_second=0)
        self.engine = Engine.embedded(config, fakeredis.FakeServer()).start()
        self.engine.receive(SKU, 3, idempotency_key="first")
        self.on_hand = 3
        self.holds: dict[str, DropHold] = {}
        self.keys = 0
        self.engine.create_drop(
            "d",
            [SKU],
            opens_at=START - timedelta(seconds=1),
            per_customer_limit=LIMIT,
            hold_ttl_seconds=HOLD_TTL_MS / 1000,
        )

    def teardown(self) -> None:
        self.engine.close()
        self.clock.stop()

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def live(self, hold: DropHold) -> bool:
        return hold.status == "held" and hold.expires_at > self.clock.now_ms

    def used(self, customer: str) -> int:
        return sum(
            h.qty
            for h in self.holds.values()
            if h.customer == customer and (h.status == "committed" or self.live(h))
        )

    def reserved(self) -> int:
        return sum(h.qty for h in self.holds.values() if self.live(h))

    def committed(self) -> int:
        return sum(h.qty for h in self.holds.values() if h.status == "committed")

    def available(self) -> int:
        return self.on_hand - self.reserved() - self.committed()

    @rule(qty=st.integers(1, 4))
    def restock(self, qty: int) -> None:
        self.engine.receive(SKU, qty, idempotency_key=self.key())
        self.on_hand += qty

    @rule(
        target=reservations,
        customer=st.sampled_from(CUSTOMERS),
        spelling=st.sampled_from(["plain", "padded", "upper"]),
        qty=st.integers(1, 3),
    )
    def reserve(self, customer: str, spelling: str, qty: int) -> Any:
        name = {"plain": customer, "padded": f" {customer}  ", "upper": customer.upper()}[spelling]
        over = self.used(customer) + qty > LIMIT
        short = self.available() < qty
        try:
            held = self.engine.reserve([(SKU, qty)], idempotency_key=self.key(), customer=name)
        except CustomerLimitExceeded as refused:
            assert over
            assert refused.details["used"] == self.used(customer)
            return "refused"
        except InsufficientStock:
            assert short and not over
            return "refused"
        assert not over and not short
        self.holds[held.id] = DropHold(customer, qty, self.clock.now_ms + HOLD_TTL_MS)
        return held.id

    @rule(rid=reservations)
    def commit(self, rid: str) -> None:
        if rid == "refused":
            return
        hold = self.holds[rid]
        try:
            self.engine.commit(rid)
        except ReservationExpired:
            assert hold.status in ("held", "expired") and not self.live(hold)
            hold.status = "expired"
            return
        except ReservationReleased:
            assert hold.status == "released"
            return
        assert hold.status == "committed" or self.live(hold)
        hold.status = "committed"

    @rule(rid=reservations)
    def release(self, rid: str) -> None:
        if rid == "refused":
            return
        hold = self.holds[rid]
        try:
            result = self.engine.release(rid)
        except ReservationNotHeld:
            assert hold.status == "committed"
            return
        if hold.status == "held":
            hold.status = "released" if self.live(hold) else "expired"
        assert result.status == hold.status

    @rule(ms=st.integers(100, 6_000))
    def advance(self, ms: int) -> None:
        self.clock.shift(ms)

    @rule()
    def sweep(self) -> None:
        self.engine.sweep()
        for hold in self.holds.values():
            if hold.status == "held" and not self.live(hold):
                hold.status = "expired"

    @invariant()
    def nobody_above_the_limit_and_nothing_oversold(self) -> None:
        for customer in CUSTOMERS:
            assert self.used(customer) <= LIMIT
        for stock in self.engine.stock(SKU).locations:
            assert stock.on_hand == self.on_hand
            assert stock.committed == self.committed()
            assert stock.committed + self.reserved() <= stock.on_hand
        drop = self.engine.get_drop("d")
        assert drop.sold == self.committed()


DropMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_drop_machine_keeps_the_limit = DropMachine.TestCase
