"""Random sequences of every operation, with the clock moving past TTLs, against the
engine (fakeredis, 2 partitions so carts span partitions) and a plain Python model.
After every step each bucket must match the model and the invariants must hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fakeredis
import time_machine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
)

from earmark import (
    Engine,
    EngineConfig,
    InsufficientOnHand,
    InsufficientStock,
    ReservationExpired,
    ReservationNotHeld,
    ReservationReleased,
    WouldOversell,
)

SKUS = ["A", "B", "C", "D"]  # crc32 spreads them over both partitions
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Hold:
    lines: dict[str, int]
    expires_at_ms: int
    status: str = "held"


@dataclass
class Model:
    """Stock as a spreadsheet would keep it, with holds that stop counting at expiry."""

    now_ms: int
    on_hand: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKUS, 0))
    committed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKUS, 0))
    holds: dict[str, Hold] = field(default_factory=dict)
    exposed: bool = False  # a forced decrease may leave available below zero

    def status(self, rid: str) -> str:
        hold = self.holds[rid]
        if hold.status == "held" and self.now_ms >= hold.expires_at_ms:
            return "expired"
        return hold.status

    def reserved(self, sku: str) -> int:
        return sum(
            h.lines.get(sku, 0) for rid, h in self.holds.items() if self.status(rid) == "held"
        )

    def available(self, sku: str) -> int:
        return self.on_hand[sku] - self.reserved(sku) - self.committed[sku]


class EngineMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.travel = time_machine.travel(START, tick=False)
        self.clock = self.travel.start()
        config = EngineConfig(prefix="st", partitions=2)
        self.engine = Engine.embedded(config, server=fakeredis.FakeServer()).start()
        self.model = Model(now_ms=int(START.timestamp() * 1000))
        self.keys = 0

    def teardown(self) -> None:
        self.engine.close()
        self.travel.stop()

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    @rule(sku=st.sampled_from(SKUS), qty=st.integers(1, 20))
    def receive(self, sku: str, qty: int) -> None:
        self.engine.receive(sku, qty, idempotency_key=self.key())
        self.model.on_hand[sku] += qty

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-10, 10).filter(bool), force=st.booleans())
    def adjust(self, sku: str, delta: int, force: bool) -> None:
        m = self.model
        try:
            self.engine.adjust(sku, delta, "count", force=force, idempotency_key=self.key())
        except InsufficientOnHand:
            assert m.on_hand[sku] + delta < 0
            return
        except WouldOversell:
            assert delta < 0 and m.available(sku) + delta < 0 and not force
            return
        assert m.on_hand[sku] + delta >= 0
        assert force or delta > 0 or m.available(sku) + delta >= 0
        m.exposed |= m.available(sku) + delta < 0
        m.on_hand[sku] += delta

    @rule(
        target=reservations,
        cart=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 5), min_size=1, max_size=3),
        ttl=st.integers(1, 10),
    )
    def reserve(self, cart: dict[str, int], ttl: int) -> Any:
        m = self.model
        short = {sku for sku, qty in cart.items() if m.available(sku) < qty}
        try:
            held = self.engine.reserve(
                list(cart.items()), idempotency_key=self.key(), ttl_seconds=ttl
            )
        except InsufficientStock as refused:
            assert {s.sku for s in refused.shortfalls} == short
            for s in refused.shortfalls:
                assert s.available == max(m.available(s.sku), 0)
            return "refused"
        assert not short
        assert held.expires_at is not None
        m.holds[held.id] = Hold(dict(cart), m.now_ms + ttl * 1000)
        assert int(held.expires_at.timestamp() * 1000) == m.now_ms + ttl * 1000
        return held.id

    def act(self, rid: str, operation: str, **options: Any) -> None:
        if rid == "refused":
            return
        m = self.model
        before = m.status(rid)
        hold = m.holds[rid]
        allowed = {
            "commit": {"held": "committed", "committed": "committed", "shipped": "shipped"},
            "release": {"held": "released", "released": "released", "expired": "expired"},
            "extend": {"held": "held"},
            "ship": {"committed": "shipped", "shipped": "shipped"},
        }[operation]
        method = getattr(self.engine, operation)
        if before not in allowed:
            expected: type[Exception] = {
                "expired": ReservationExpired,
                "released": ReservationReleased,
            }.get(before, ReservationNotHeld)
            try:
                method(rid, **options, idempotency_key=self.key())
            except expected:
                pass
            else:
                raise AssertionError(f"{operation} of a {before} reservation was allowed")
            if before == "expired":
                hold.status = "expired"
            return
        result = method(rid, **options, idempotency_key=self.key())
        after = allowed[before]
        assert result.status == after
        if operation == "commit" and before == "held":
            for sku, qty in hold.lines.items():
                m.committed[sku] += qty
        if operation == "ship" and before == "committed":
            for sku, qty in hold.lines.items():
                m.committed[sku] -= qty
                m.on_hand[sku] -= qty
        if operation == "extend":
            hold.expires_at_ms = m.now_ms + options["ttl_seconds"] * 1000
        hold.status = after

    @rule(rid=reservations)
    def commit(self, rid: str) -> None:
        self.act(rid, "commit")

    @rule(rid=reservations)
    def release(self, rid: str) -> None:
        self.act(rid, "release")

    @rule(rid=reservations, ttl=st.integers(1, 10))
    def extend(self, rid: str, ttl: int) -> None:
        self.act(rid, "extend", ttl_seconds=ttl)

    @rule(rid=reservations)
    def ship(self, rid: str) -> None:
        m = self.model
        if rid != "refused" and m.status(rid) == "committed":
            lines = m.holds[rid].lines
            if any(m.on_hand[sku] < qty for sku, qty in lines.items()):
                return  # only after a forced decrease; covered by the behaviour suite
        self.act(rid, "ship")

    @rule(ms=st.integers(1, 6000))
    def advance(self, ms: int) -> None:
        self.clock.shift(ms / 1000)
        self.model.now_ms += ms

    @rule()
    def sweep(self) -> None:
        self.engine.sweep()

    @invariant()
    def buckets_match_the_model(self) -> None:
        m = self.model
        for level in self.engine.availability(SKUS):
            sku = level.sku
            assert (level.on_hand, level.reserved, level.committed) == (
                m.on_hand[sku],
                m.reserved(sku),
                m.committed[sku],
            )
            assert min(level.on_hand, level.reserved, level.committed) >= 0
            if not m.exposed:
                assert level.available >= 0
                assert level.reserved + level.committed <= level.on_hand

    @invariant()
    def statuses_match_the_model(self) -> None:
        for rid in self.model.holds:
            assert self.engine.get_reservation(rid).status == self.model.status(rid)


EngineMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineMachine = EngineMachine.TestCase
