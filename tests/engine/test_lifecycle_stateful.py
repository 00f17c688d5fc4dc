"""Random sequences of every lifecycle operation and the core ones (receive, adjust,
reserve, commit, release, ship, time passing, sweep) against a plain Python model of each
unit's state, on fakeredis with 2 partitions and two locations per SKU.

After every step: every bucket matches the model; no bucket is negative; reserved +
committed <= on_hand unless a forced or counted exposure happened; every unit is in exactly
one state (the states sum to the units that ever came in, minus corrections); the network
sum on_hand + in_transit + returned + damaged moved only if the step was a receipt, a PO
receipt, a ship, a write-off, a transfer discrepancy or a counted adjustment (a customer
return counts as a receipt); and the events explain the stock as the flusher applies them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
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
)
from earmark.errors import (
    InsufficientUnits,
    PurchaseOrderClosed,
    ReturnExceedsShipped,
    StaleCount,
    TransferAlreadyReceived,
)
from tests.support.model import Hold, Order, StockModel, Where, machine_engine
from tests.support.servers import RedisServer

SKUS = ["A", "B", "C"]  # crc32 spreads them over both partitions
LOCATIONS = ["default", "north"]
PLACES = [(sku, loc) for sku in SKUS for loc in LOCATIONS]
PHYSICAL = ("on_hand", "in_transit", "returned", "damaged")
# Steps that may move on_hand + in_transit + returned + damaged across the network.
MOVES_THE_NETWORK_SUM = {
    "receipt",
    "po_receipt",
    "ship",
    "write_off",
    "transfer_discrepancy",
    "counted",
}
places = st.sampled_from(PLACES)


def expect(refusal: type[Exception] | None, call: Any) -> Any:
    """Runs ``call``; it must raise ``refusal`` (exactly that class) or, if None, succeed."""
    if refusal is None:
        return call()
    try:
        call()
    except refusal as error:
        assert type(error) is refusal, error
        return None
    raise AssertionError(f"expected {refusal.__name__}")


class LifecycleMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")
    transfers = Bundle("transfers")
    orders = Bundle("orders")
    reads = Bundle("reads")

    def __init__(self, redis_url: str | None = None) -> None:
        super().__init__()
        self.engine, self.clock = machine_engine("lc", redis_url)
        self.model = StockModel(now_ms=self.clock.now_ms, places=list(PLACES))
        self.keys = 0
        self.kind = "start"
        self.network_sum = 0
        self.counted_version: dict[Where, int] = {}  # of the last applied count

    def teardown(self) -> None:
        self.engine.close()
        self.clock.stop()

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    # -- core ------------------------------------------------------------------------

    @initialize(qty=st.integers(0, 12))
    def stock_up(self, qty: int) -> None:
        """Stock at every place, so that most operations have units to act on."""
        self.kind = "receipt"
        for where in PLACES:
            if qty:
                self.receive(where, qty)

    @rule(where=places, qty=st.integers(1, 20))
    def receive(self, where: Where, qty: int) -> None:
        self.kind = "receipt"
        self.engine.receive(where[0], qty, location=where[1], idempotency_key=self.key())
        self.model.move(where, on_hand=qty)
        self.model.came_in[where[0]] += qty

    @rule(where=places, delta=st.integers(-8, 8).filter(bool), force=st.booleans())
    def adjust(self, where: Where, delta: int, force: bool) -> None:
        self.kind = "counted"
        m = self.model
        refusal: type[Exception] | None = None
        if m.stock[where]["on_hand"] + delta < 0:
            refusal = InsufficientOnHand
        elif delta < 0 and m.available(where) + delta < 0 and not force:
            refusal = WouldOversell
        sku, loc = where
        expect(
            refusal,
            lambda: self.engine.adjust(
                sku, delta, "x", location=loc, force=force, idempotency_key=self.key()
            ),
        )
        if refusal is None:
            m.exposed |= m.available(where) + delta < 0
            m.move(where, on_hand=delta)
            m.came_in[sku] += delta

    @rule(
        target=reservations,
        cart=st.dictionaries(places, st.integers(1, 5), min_size=1, max_size=3),
        ttl=st.integers(1, 10),
    )
    def reserve(self, cart: dict[Where, int], ttl: int) -> str:
        self.kind = "reserve"
        m = self.model
        short = {w for w, qty in cart.items() if m.available(w) < qty}
        lines = [(sku, qty, loc) for (sku, loc), qty in cart.items()]
        try:
            ttl += self.clock.ttl_extra_seconds
            held = self.engine.reserve(lines, idempotency_key=self.key(), ttl_seconds=ttl)
        except SkuNotFound as unknown:
            lines_named = {(x["sku"], x["location"]) for x in unknown.details["lines"]}
            assert lines_named == m.never_stocked(short) != set()
            return "refused"
        except InsufficientStock as refused:
            assert not m.never_stocked(short)
            assert {(s.sku, s.location) for s in refused.shortfalls} == short
            return "refused"
        assert not short
        m.holds[held.id] = Hold(dict(cart), m.now_ms + ttl * 1000)
        return held.id

    @rule(
        target=reservations,
        cart=st.dictionaries(places, st.integers(1, 4), min_size=1, max_size=2),
    )
    def sell(self, cart: dict[Where, int]) -> str:
        """reserve, commit and ship at once: shipped reservations for returns to act on."""
        rid = self.reserve(cart, 60)
        if rid != "refused":
            self.act(rid, "commit")
            self.ship(rid)
        self.kind = "ship"
        return rid

    def act(self, rid: str, operation: str) -> None:
        m = self.model
        hold = m.holds[rid]
        before = m.status(rid)
        allowed = {
            "commit": {"held": "committed", "committed": "committed", "shipped": "shipped"},
            "release": {"held": "released", "released": "released", "expired": "expired"},
            "ship": {"committed": "shipped", "shipped": "shipped"},
        }[operation]
        method = getattr(self.engine, operation)
        if before not in allowed:
            refusal = {"expired": ReservationExpired, "released": ReservationReleased}.get(
                before, ReservationNotHeld
            )
            expect(refusal, lambda: method(rid, idempotency_key=self.key()))
            hold.status = "expired" if before == "expired" else hold.status
            return
        assert method(rid, idempotency_key=self.key()).status == allowed[before]
        if operation == "commit" and before == "held":
            for where, qty in hold.lines.items():
                m.move(where, committed=qty)
        if operation == "ship" and before == "committed":
            for where, qty in hold.lines.items():
                m.move(where, committed=-qty, on_hand=-qty)
                m.shipped[where[0]] += qty
        hold.status = allowed[before]

    @rule(rid=reservations)
    def commit(self, rid: str) -> None:
        self.kind = "commit"
        if rid != "refused":
            self.act(rid, "commit")

    @rule(rid=reservations)
    def release(self, rid: str) -> None:
        self.kind = "release"
        if rid != "refused":
            self.act(rid, "release")

    @rule(rid=reservations)
    def ship(self, rid: str) -> None:
        self.kind = "ship"
        m = self.model
        if rid == "refused":
            return
        if m.status(rid) == "committed":
            lines = m.holds[rid].lines
            if any(m.stock[w]["on_hand"] < qty for w, qty in lines.items()):
                return  # only after an exposure; parts would ship one by one
        self.act(rid, "ship")

    @precondition(lambda self: self.clock.moves)
    @rule(ms=st.integers(1, 6000))
    def advance(self, ms: int) -> None:
        self.kind = "time"
        self.clock.shift(ms)
        self.model.now_ms += ms

    @rule()
    def sweep(self) -> None:
        self.kind = "sweep"
        self.engine.sweep()

    # -- transfers ---------------------------------------------------------------------

    @rule(target=transfers, where=places, qty=st.integers(1, 8))
    def transfer(self, where: Where, qty: int) -> str:
        self.kind = "transfer"
        m = self.model
        sku, source = where
        target = next(loc for loc in LOCATIONS if loc != source)
        if m.available(where) < qty:
            expect(
                InsufficientStock,
                lambda: self.engine.transfer(sku, qty, source, target, idempotency_key=self.key()),
            )
            return "refused"
        sent = self.engine.transfer(sku, qty, source, target, idempotency_key=self.key())
        m.move(where, on_hand=-qty)
        m.move((sku, target), in_transit=qty)
        m.transfers[sent.id] = (sku, source, target, qty, None)
        return sent.id

    @rule(tid=transfers, qty=st.integers(0, 10))
    def receive_transfer(self, tid: str, qty: int) -> None:
        self.kind = "transfer"
        m = self.model
        if tid == "refused":
            return
        sku, _, target, shipped, received = m.transfers[tid]
        if received is not None:
            refusal = None if qty == received else TransferAlreadyReceived
            expect(refusal, lambda: self.engine.receive_transfer(tid, qty))
            return
        got = self.engine.receive_transfer(tid, qty, idempotency_key=self.key())
        assert (got.status, got.qty_received) == ("received", qty)
        where = (sku, target)
        m.move(where, in_transit=-shipped, on_hand=qty)
        if qty < shipped:
            m.move(where, written_off=shipped - qty)
        m.came_in[sku] += max(qty - shipped, 0)
        m.transfers[tid] = (sku, _, target, shipped, qty)
        self.kind = "transfer_discrepancy" if qty != shipped else "transfer"

    # -- returns -----------------------------------------------------------------------

    @precondition(lambda self: self.model.holds)
    @rule(pick=st.integers(0, 11), line=st.integers(0, 2), qty=st.integers(1, 4))
    def receive_return(self, pick: int, line: int, qty: int) -> None:
        """Mostly a shipped reservation (any reservation now and then, to be refused)."""
        self.kind = "receipt"  # a customer return: units come back in
        m = self.model
        # Insertion order, not sorted: ids are random, and a draw must pick the same hold
        # on every replay of the same choices (hypothesis requires it).
        shipped = [r for r in m.holds if m.status(r) == "shipped"]
        candidates = shipped if shipped and pick % 4 else list(m.holds)
        rid = candidates[pick % len(candidates)]
        hold = m.holds[rid]
        where = sorted(hold.lines)[line % len(hold.lines)]
        sku, loc = where
        refusal: type[Exception] | None = None
        if m.status(rid) != "shipped":
            refusal = ReservationNotHeld
        elif hold.returned.get(where, 0) + qty > hold.lines[where]:
            refusal = ReturnExceedsShipped

        def call() -> Any:
            return self.engine.receive_return(
                rid, sku, qty, location=loc, idempotency_key=self.key()
            )

        if refusal is ReservationNotHeld:
            try:
                call()
            except ReservationNotHeld:
                return
            raise AssertionError("a return of an unshipped reservation was accepted")
        expect(refusal, call)
        if refusal is None:
            hold.returned[where] = hold.returned.get(where, 0) + qty
            m.move(where, returned=qty)
            m.shipped[sku] -= qty

    @precondition(lambda self: any(s["returned"] for s in self.model.stock.values()))
    @rule(
        pick=st.integers(0, 5),
        qty=st.integers(1, 4),
        disposition=st.sampled_from(["restock", "damaged", "write_off"]),
    )
    def dispose_returned(self, pick: int, qty: int, disposition: str) -> None:
        """Where returned units wait (qty may exceed them: refused)."""
        self.kind = "write_off" if disposition == "write_off" else "dispose"
        m = self.model
        waiting = [w for w in PLACES if m.stock[w]["returned"]]
        where = waiting[pick % len(waiting)]
        refusal = InsufficientUnits if m.stock[where]["returned"] < qty else None
        sku, loc = where
        expect(
            refusal,
            lambda: self.engine.dispose_returned(
                sku, qty, disposition, location=loc, idempotency_key=self.key()
            ),
        )
        if refusal is None:
            to = {"restock": "on_hand", "damaged": "damaged", "write_off": "written_off"}
            m.move(where, returned=-qty, **{to[disposition]: qty})

    @rule(where=places, qty=st.integers(1, 3))
    def dispose_nothing(self, where: Where, qty: int) -> None:
        """A disposal where fewer units were returned than asked: refused."""
        self.kind = "dispose"
        if self.model.stock[where]["returned"] < qty:
            expect(
                InsufficientUnits,
                lambda: self.engine.dispose_returned(where[0], qty, "restock", location=where[1]),
            )

    # -- damage, write-offs, counts ------------------------------------------------------

    def around_available(self, where: Where, beyond: int) -> int:
        """A quantity near what is available: beyond > 0 asks for more (refused unless
        forced; a forced one eats into promised units and records the exposure)."""
        return max(1, self.model.available(where) + beyond)

    @rule(where=places, beyond=st.integers(-3, 3), force=st.booleans())
    def damage(self, where: Where, beyond: int, force: bool) -> None:
        self.kind = "damage"
        sku, loc = where
        qty = self.around_available(where, beyond)
        refusal = self.predict_take(where, qty, force)
        expect(
            refusal,
            lambda: self.engine.damage(
                sku, qty, "x", location=loc, force=force, idempotency_key=self.key()
            ),
        )
        if refusal is None:
            self.model.take_on_hand(where, qty, "damaged")

    def predict_take(self, where: Where, qty: int, force: bool) -> type[Exception] | None:
        """The refusal a move of qty units out of on_hand gets (damage, write-off)."""
        m = self.model
        if m.stock[where]["on_hand"] < qty:
            return InsufficientOnHand
        if m.available(where) - qty < 0 and not force:
            return WouldOversell
        return None

    @rule(where=places, beyond=st.integers(-3, 3), from_damaged=st.booleans(), force=st.booleans())
    def write_off(self, where: Where, beyond: int, from_damaged: bool, force: bool) -> None:
        self.kind = "write_off"
        m = self.model
        sku, loc = where
        qty = max(1, m.stock[where]["damaged"] + beyond) if from_damaged else 0
        qty = qty or self.around_available(where, beyond)
        source = "damaged" if from_damaged else "on_hand"
        if from_damaged:
            refusal = InsufficientUnits if m.stock[where]["damaged"] < qty else None
        else:
            refusal = self.predict_take(where, qty, force)

        def call() -> Any:
            return self.engine.write_off(
                sku, qty, "x", source=source, location=loc, force=force, idempotency_key=self.key()
            )

        expect(refusal, call)
        if refusal is None and from_damaged:
            m.move(where, damaged=-qty, written_off=qty)
        elif refusal is None:
            m.take_on_hand(where, qty, "written_off")

    @rule(target=reads, where=places)
    def read(self, where: Where) -> tuple[str, str, int, int]:
        self.kind = "read"
        level = self.engine.availability([where])[0]
        assert level.on_hand == self.model.stock[where]["on_hand"]
        return (where[0], where[1], level.version, level.on_hand)

    @rule(seen=reads, counted=st.integers(0, 25))
    def count(self, seen: tuple[str, str, int, int], counted: int) -> None:
        self.kind = "counted"
        m = self.model
        sku, loc, version, on_hand_then = seen
        where = (sku, loc)
        delta = counted - on_hand_then
        refusal: type[Exception] | None = None
        if version <= self.counted_version.get(where, -1):
            refusal = StaleCount  # a later read of this shelf was counted already
        elif m.stock[where]["on_hand"] + delta < 0:
            refusal = InsufficientOnHand
        result = expect(
            refusal,
            lambda: self.engine.count(
                sku, counted, version, location=loc, idempotency_key=self.key()
            ),
        )
        if refusal is None:
            assert (result.expected, result.delta) == (on_hand_then, delta)
            exposure = max(0, -(m.available(where) + delta)) - max(0, -m.available(where))
            assert result.exposure == max(exposure, 0)
            m.exposed |= result.exposure > 0
            m.move(where, on_hand=delta)
            m.came_in[sku] += delta
            self.counted_version[where] = version

    # -- purchase orders ------------------------------------------------------------------

    @rule(target=orders, lines=st.dictionaries(places, st.integers(1, 10), min_size=1, max_size=3))
    def create_purchase_order(self, lines: dict[Where, int]) -> str:
        self.kind = "po"
        po = self.engine.create_purchase_order(
            [(sku, qty, loc) for (sku, loc), qty in lines.items()],
            supplier="S",
            expected_date="2026-02-01",
            idempotency_key=self.key(),
        )
        for where, qty in lines.items():
            self.model.move(where, inbound=qty)
        self.model.orders[po.id] = Order({w: [qty, 0] for w, qty in lines.items()})
        return po.id

    @rule(
        po_id=orders,
        picks=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 12)), min_size=1, max_size=3),
    )
    def receive_purchase_order(self, po_id: str, picks: list[tuple[int, int]]) -> None:
        self.kind = "po_receipt"
        m = self.model
        order = m.orders[po_id]
        known = sorted(order.lines)
        delivery: dict[Where, int] = {}
        for index, qty in picks:
            delivery.setdefault(known[index % len(known)], qty)
        lines = [(sku, qty, loc) for (sku, loc), qty in delivery.items()]
        if order.status != "open":
            expect(
                PurchaseOrderClosed,
                lambda: self.engine.receive_purchase_order(
                    po_id, lines, idempotency_key=self.key()
                ),
            )
            return
        got = self.engine.receive_purchase_order(po_id, lines, idempotency_key=self.key())
        for where, qty in delivery.items():
            expected, received = order.lines[where]
            taken = min(qty, max(expected - received, 0))
            m.move(where, inbound=-taken, on_hand=qty)
            m.came_in[where[0]] += qty
            order.lines[where][1] += qty
        assert {(x.sku, x.location): x.received for x in got.lines} == {
            w: r for w, (_, r) in order.lines.items()
        }

    @rule(po_id=orders, cancel=st.booleans())
    def close_purchase_order(self, po_id: str, cancel: bool) -> None:
        self.kind = "po"
        order = self.model.orders[po_id]
        target = "cancelled" if cancel else "closed"
        if order.status not in ("open", target):
            expect(
                PurchaseOrderClosed,
                lambda: self.engine.close_purchase_order(po_id, cancel=cancel),
            )
            return
        assert self.engine.close_purchase_order(po_id, cancel=cancel).status == target
        if order.status == "open":
            for where, (expected, received) in order.lines.items():
                self.model.move(where, inbound=-max(expected - received, 0))
        order.status = target

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def buckets_match_the_model(self) -> None:
        m = self.model
        for level in self.engine.availability(PLACES):
            where = (level.sku, level.location)
            expected = {**m.stock[where], "reserved": m.reserved(where)}
            assert {b: getattr(level, b) for b in expected} == expected, where
            assert min(expected.values()) >= 0, where
            if not m.exposed:
                assert level.reserved + level.committed <= level.on_hand, where

    @invariant()
    def every_unit_is_in_exactly_one_state(self) -> None:
        """free + reserved + committed + in_transit + returned + damaged + written_off
        + shipped = every unit that came in (receipts, PO receipts, surpluses) minus
        corrections (adjustments and counts)."""
        m = self.model
        for sku in SKUS:
            units = m.shipped[sku]
            for loc in LOCATIONS:
                s = m.stock[(sku, loc)]
                free = m.available((sku, loc))
                assert m.exposed or free >= 0
                units += free + m.reserved((sku, loc)) + s["committed"]
                units += s["in_transit"] + s["returned"] + s["damaged"] + s["written_off"]
            assert units == m.came_in[sku], sku
            assert m.shipped[sku] >= 0

    @invariant()
    def the_network_sum_moves_only_by_receipts_ships_write_offs_and_counts(self) -> None:
        total = sum(
            getattr(level, bucket)
            for level in self.engine.availability(PLACES)
            for bucket in PHYSICAL
        )
        if total != self.network_sum:
            assert self.kind in MOVES_THE_NETWORK_SUM | {"start"}, self.kind
        self.network_sum = total

    @invariant()
    def the_events_explain_the_stock(self) -> None:
        """What the generic flusher computes from the streams equals the stock hashes, and
        each bucket-moving event bumped the version once."""
        folded: dict[Where, dict[str, int]] = {}
        moved: dict[Where, int] = {}
        engine = self.engine
        for p in range(engine.partitions):
            for _, fields in engine.client.xrange(engine.keys.events(p)):
                where = (fields["sku"], fields["location"])
                deltas = orjson.loads(fields["deltas"]) or {}
                totals = folded.setdefault(where, {})
                for bucket, units in deltas.items():
                    totals[bucket] = totals.get(bucket, 0) + units
                moved[where] = moved.get(where, 0) + (1 if deltas else 0)
        for (sku, loc), totals in folded.items():
            p = engine.partition_of(sku)
            raw = engine.client.hgetall(engine.keys.stock(p, sku, loc))
            assert {b: int(raw.get(b, 0)) for b in totals} == totals, (sku, loc)
            assert int(raw.get("version", 0)) == moved[(sku, loc)], (sku, loc)

    @invariant()
    def statuses_match_the_model(self) -> None:
        for rid in self.model.holds:
            assert self.engine.get_reservation(rid).status == self.model.status(rid)


REAL_SERVER_SETTINGS = settings(
    max_examples=8,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LifecycleMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLifecycleMachine = LifecycleMachine.TestCase


@pytest.mark.redis_server
def test_the_lifecycle_machine_holds_on_a_real_redis(redis_server: RedisServer) -> None:
    """The same machine on a real redis-server (its clock cannot be moved: no hold expires
    here; expiry on a real server is covered by the behaviour suite)."""
    run_state_machine_as_test(
        lambda: LifecycleMachine(redis_server.url),
        settings=settings(REAL_SERVER_SETTINGS),
    )
