"""Random sequences of every operation, with the clock moving past TTLs, against the
engine (fakeredis, 2 partitions so carts span partitions) and the plain Python model of
tests/support/model.py. After every step each bucket must match the model and the
invariants must hold. The same machine runs once on a real redis-server too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from earmark import (
    InsufficientOnHand,
    InsufficientStock,
    ReservationExpired,
    ReservationNotHeld,
    ReservationReleased,
    SkuNotFound,
    WouldOversell,
    limits,
)
from tests.support.model import Hold, StockModel, Where, machine_engine
from tests.support.servers import RedisServer

SKUS = ["A", "B", "C", "D"]  # crc32 spreads them over both partitions
START = datetime(2026, 1, 1, tzinfo=UTC)


def at(sku: str) -> Where:
    """This machine's carts use the default location only."""
    return (sku, limits.DEFAULT_LOCATION)


class EngineMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self, redis_url: str | None = None) -> None:
        super().__init__()
        self.engine, self.clock = machine_engine("st", redis_url)
        self.model = StockModel(now_ms=self.clock.now_ms, places=[at(sku) for sku in SKUS])
        self.keys = 0

    def teardown(self) -> None:
        self.engine.close()
        self.clock.stop()

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    @rule(sku=st.sampled_from(SKUS), qty=st.integers(1, 20))
    def receive(self, sku: str, qty: int) -> None:
        self.engine.receive(sku, qty, idempotency_key=self.key())
        self.model.move(at(sku), on_hand=qty)

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-10, 10).filter(bool), force=st.booleans())
    def adjust(self, sku: str, delta: int, force: bool) -> None:
        m = self.model
        try:
            self.engine.adjust(sku, delta, "count", force=force, idempotency_key=self.key())
        except InsufficientOnHand:
            assert m.stock[at(sku)]["on_hand"] + delta < 0
            return
        except WouldOversell:
            assert delta < 0 and m.available(at(sku)) + delta < 0 and not force
            return
        assert m.stock[at(sku)]["on_hand"] + delta >= 0
        assert force or delta > 0 or m.available(at(sku)) + delta >= 0
        m.exposed |= m.available(at(sku)) + delta < 0
        m.move(at(sku), on_hand=delta)

    @rule(
        target=reservations,
        cart=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 5), min_size=1, max_size=3),
        ttl=st.integers(1, 10),
    )
    def reserve(self, cart: dict[str, int], ttl: int) -> Any:
        m = self.model
        short = {sku for sku, qty in cart.items() if m.available(at(sku)) < qty}
        ttl += self.clock.ttl_extra_seconds
        try:
            held = self.engine.reserve(
                list(cart.items()), idempotency_key=self.key(), ttl_seconds=ttl
            )
        except SkuNotFound as unknown:
            named = {(x["sku"], x["location"]) for x in unknown.details["lines"]}
            assert named == m.never_stocked({at(sku) for sku in short}) != set()
            return "refused"
        except InsufficientStock as refused:
            assert not m.never_stocked({at(sku) for sku in short})
            assert {s.sku for s in refused.shortfalls} == short
            for s in refused.shortfalls:
                assert s.available == max(m.available(at(s.sku)), 0)
            return "refused"
        assert not short
        assert held.expires_at is not None
        m.holds[held.id] = Hold({at(s): q for s, q in cart.items()}, m.now_ms + ttl * 1000)
        if self.clock.moves:  # a real server's clock moved on since the model read it
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
            for where, qty in hold.lines.items():
                m.move(where, committed=qty)
        if operation == "ship" and before == "committed":
            for where, qty in hold.lines.items():
                m.move(where, committed=-qty, on_hand=-qty)
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
        self.act(rid, "extend", ttl_seconds=ttl + self.clock.ttl_extra_seconds)

    @rule(rid=reservations)
    def ship(self, rid: str) -> None:
        m = self.model
        if rid != "refused" and m.status(rid) == "committed":
            lines = m.holds[rid].lines
            if any(m.stock[where]["on_hand"] < qty for where, qty in lines.items()):
                return  # only after a forced decrease; covered by the behaviour suite
        self.act(rid, "ship")

    @precondition(lambda self: self.clock.moves)
    @rule(ms=st.integers(1, 6000))
    def advance(self, ms: int) -> None:
        self.clock.shift(ms)
        self.model.now_ms += ms

    @rule()
    def sweep(self) -> None:
        self.engine.sweep()

    @invariant()
    def buckets_match_the_model(self) -> None:
        m = self.model
        for level in self.engine.availability(SKUS):
            where = at(level.sku)
            assert (level.on_hand, level.reserved, level.committed) == (
                m.stock[where]["on_hand"],
                m.reserved(where),
                m.stock[where]["committed"],
            )
            assert min(level.on_hand, level.reserved, level.committed) >= 0
            if not m.exposed:
                assert level.available >= 0
                assert level.reserved + level.committed <= level.on_hand

    @invariant()
    def statuses_match_the_model(self) -> None:
        for rid in self.model.holds:
            assert self.engine.get_reservation(rid).status == self.model.status(rid)


REAL_SERVER_SETTINGS = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EngineMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineMachine = EngineMachine.TestCase


@pytest.mark.redis_server
def test_the_engine_machine_holds_on_a_real_redis(redis_server: RedisServer) -> None:
    """The same machine on a real redis-server (its clock cannot be moved: no hold expires
    here; expiry on a real server is covered by the behaviour suite)."""
    run_state_machine_as_test(
        lambda: EngineMachine(redis_server.url), settings=settings(REAL_SERVER_SETTINGS)
    )
