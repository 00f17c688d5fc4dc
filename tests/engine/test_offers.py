"""Waitlist offers (docs/drops.md, "Offers"): units a release, an expiry or a commit
that finds its hold expired frees are offered, in that same script, to the next in line;
an offer is an ordinary reservation counted against the customer's limit; committing it
converts the entry, letting it expire or declining it passes its units on; a customer
whose limit leaves no room is skipped; the sweeper's offer pass serves what a freeing
script could not. On fakeredis, a real redis-server and a real Redis Cluster."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import pytest

from earmark import (
    CustomerLimitExceeded,
    Engine,
    InsufficientStock,
    ReservationExpired,
    WouldOversell,
    limits,
)
from earmark.engine.ops.drops import opening_rank
from tests.engine.test_drops import open_drop, server_now
from tests.engine.test_waitlist import waitlist_events
from tests.support.backends import Backend, level_of


def reserved_events(engine: Engine, sku: str = "TEE") -> list[dict[str, str]]:
    p = engine.partition_of(sku)
    return [f for _, f in engine.client.xrange(engine.keys.events(p)) if f["type"] == "reserved"]


def test_a_release_offers_its_units_to_the_next_in_line(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True, offer_ttl_seconds=120)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", actor="checkout")
    engine.join_waitlist("drop-TEE", "cy", "TEE")
    engine.release(held.id, actor="shop")
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert (bob.status, bob.position) == ("offered", 0)
    assert bob.offer is not None
    offer = engine.get_reservation(bob.offer.reservation_id)
    assert offer.status == "held" and offer.lines[0].qty == 1
    assert abs((offer.expires_at - offer.created_at).total_seconds() - 120) < 0.002
    assert bob.offer.expires_at == offer.expires_at
    assert engine.get_waitlist_entry("drop-TEE", "cy").position == 1
    level = level_of(engine, "TEE")
    assert (level.reserved, level.available) == (1, 0)
    drop = engine.get_drop("drop-TEE")
    assert (drop.waiting, drop.offered, drop.held) == (1, 1, 1)
    assert ("waitlist_offered", "bob", "shop", "1") in waitlist_events(engine)
    offered = [f for f in reserved_events(engine) if f.get("reason") == "offer"]
    assert [(f["reservation"], f["customer"], f["actor"]) for f in offered] == [
        (bob.offer.reservation_id, "bob", "shop")
    ]


def test_committing_an_offer_converts_the_entry(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", actor="checkout")
    engine.release(held.id)
    offer = engine.get_waitlist_entry("drop-TEE", "bob").offer
    assert offer is not None
    # The offer belongs to the actor that put bob in line: an owner-only commit works.
    committed = engine.commit(offer.reservation_id, actor="checkout", owner_only=True)
    assert committed.status == "committed"
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert (bob.status, bob.offer) == ("converted", None)
    assert engine.get_drop("drop-TEE").offered == 0
    assert ("waitlist_converted", "bob", "checkout", "") in waitlist_events(engine)


def test_an_offer_counts_against_the_limit(engine: Engine) -> None:
    open_drop(engine, units=3, waitlist=True, per_customer_limit=1)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.release(held.id)
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered"
    with pytest.raises(CustomerLimitExceeded):
        engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")


def test_an_expired_offer_passes_to_the_next_in_line(backend: Backend, clock: object) -> None:
    engine = backend.engine()
    open_drop(engine, units=1, waitlist=True, offer_ttl_seconds=1)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.join_waitlist("drop-TEE", "cy", "TEE")
    engine.release(held.id)
    first = engine.get_waitlist_entry("drop-TEE", "bob").offer
    assert first is not None
    backend.advance(1.1)
    report = engine.sweep()
    assert report.expired == 1
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "expired"
    cy = engine.get_waitlist_entry("drop-TEE", "cy")
    assert cy.status == "offered" and cy.offer is not None
    assert engine.get_reservation(first.reservation_id).status == "expired"
    assert level_of(engine, "TEE").reserved == 1
    types = [t for t, *_ in waitlist_events(engine)]
    assert types.count("waitlist_expired") == 1 and types.count("waitlist_offered") == 2


def test_declining_an_offer_passes_it_on(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.join_waitlist("drop-TEE", "cy", "TEE")
    engine.release(held.id)
    offer = engine.get_waitlist_entry("drop-TEE", "bob").offer
    assert offer is not None
    declined = engine.decline_waitlist("drop-TEE", "bob", idempotency_key="d-1")
    assert (declined.status, declined.offer) == ("declined", None)
    assert engine.get_reservation(offer.reservation_id).status == "released"
    assert engine.get_waitlist_entry("drop-TEE", "cy").status == "offered"
    again = engine.decline_waitlist("drop-TEE", "bob", idempotency_key="d-1")
    assert again.status == "declined" and again.replayed
    assert level_of(engine, "TEE").reserved == 1


def test_declining_an_entry_that_already_ended_answers_it_as_it_was(engine: Engine) -> None:
    """A decline that comes after the customer took the offer changes nothing: the entry
    stays converted, the sale stands, no event is written."""
    open_drop(engine, units=1, waitlist=True)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.release(held.id)
    offer = engine.get_waitlist_entry("drop-TEE", "bob").offer
    assert offer is not None
    engine.commit(offer.reservation_id)
    before = len(waitlist_events(engine))
    late = engine.decline_waitlist("drop-TEE", "bob", idempotency_key="late")
    assert late.status == "converted"
    assert engine.get_reservation(offer.reservation_id).status == "committed"
    assert len(waitlist_events(engine)) == before
    assert level_of(engine, "TEE").committed == 1


def test_a_customer_whose_limit_is_full_is_skipped(engine: Engine) -> None:
    open_drop(engine, units=2, waitlist=True, per_customer_limit=1)
    ann = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    bob = engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")
    engine.join_waitlist("drop-TEE", "bob", "TEE")  # bob already holds his one unit
    engine.join_waitlist("drop-TEE", "cy", "TEE")
    engine.release(ann.id)
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "skipped"
    assert engine.get_waitlist_entry("drop-TEE", "cy").status == "offered"
    assert engine.get_reservation(bob.id).status == "held"
    assert "waitlist_skipped" in [t for t, *_ in waitlist_events(engine)]


def test_the_sweeper_offers_what_one_call_could_not(engine: Engine) -> None:
    n = limits.OFFERS_PER_CALL_MAX + 3
    open_drop(engine, units=n, waitlist=True, per_customer_limit=n)
    held = engine.reserve([("TEE", n)], idempotency_key="a", customer="ann")
    for i in range(n):
        engine.join_waitlist("drop-TEE", f"c{i:02}", "TEE")
    engine.release(held.id)
    statuses = [engine.get_waitlist_entry("drop-TEE", f"c{i:02}").status for i in range(n)]
    assert statuses.count("offered") == limits.OFFERS_PER_CALL_MAX
    assert statuses[: limits.OFFERS_PER_CALL_MAX] == ["offered"] * limits.OFFERS_PER_CALL_MAX
    assert engine.sweep().offered == 3
    statuses = [engine.get_waitlist_entry("drop-TEE", f"c{i:02}").status for i in range(n)]
    assert statuses == ["offered"] * n
    assert level_of(engine, "TEE").available == 0
    with pytest.raises(InsufficientStock):
        engine.reserve([("TEE", 1)], idempotency_key="z", customer="zed")


def test_while_customers_wait_a_reserve_sees_only_what_the_line_does_not_need(
    engine: Engine,
) -> None:
    open_drop(engine, units=3, waitlist=True, per_customer_limit=3)
    held = engine.reserve([("TEE", 3)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", 2)
    engine.release(held.id)  # 3 free: bob is offered 2, one is left beyond the line
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "offered"
    engine.join_waitlist("drop-TEE", "cy", "TEE", 1)
    # The one free unit is what cy waits for: a reserve by someone not in line is short.
    with pytest.raises(InsufficientStock) as refused:
        engine.reserve([("TEE", 1)], idempotency_key="z", customer="zed")
    assert refused.value.shortfalls[0].available == 0
    assert level_of(engine, "TEE").available == 1
    # The sweeper's pass offers it to cy; once nobody waits, units sell as usual.
    assert engine.sweep().offered == 1
    engine.decline_waitlist("drop-TEE", "cy")
    assert level_of(engine, "TEE").available == 1
    engine.reserve([("TEE", 1)], idempotency_key="z2", customer="zed")


def test_a_receipt_offers_its_units_in_the_same_call(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", 2)
    engine.join_waitlist("drop-TEE", "cy", "TEE")
    level = engine.receive("TEE", 2, actor="warehouse")
    # bob, first in line, waits for 2: both go to him; cy still waits.
    assert (level.on_hand, level.reserved, level.available) == (3, 3, 0)
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered" and bob.offer is not None
    assert engine.get_reservation(bob.offer.reservation_id).lines[0].qty == 2
    assert engine.get_waitlist_entry("drop-TEE", "cy").position == 1
    assert ("waitlist_offered", "bob", "warehouse", "2") in waitlist_events(engine)
    # A SKU in no drop takes one call as before and offers nothing.
    engine.receive("PLAIN", 3)
    assert level_of(engine, "PLAIN").available == 3


def test_a_restocked_return_goes_to_the_line(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    sold = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.commit(sold.id)
    engine.ship(sold.id)
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.receive_return(sold.id, "TEE", 1)
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "waiting"
    level = engine.dispose_returned("TEE", 1, "restock")
    assert (level.on_hand, level.reserved, level.available) == (1, 1, 0)
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "offered"


def test_the_fair_opening_serves_early_customers_in_the_seeds_order(
    backend: Backend, clock: object
) -> None:
    engine = backend.engine()
    engine.receive("TEE", 1)
    opens = server_now(engine) + timedelta(seconds=1)
    created = engine.create_drop(
        "drop-TEE", ["TEE"], opens_at=opens, per_customer_limit=1, waitlist=True
    )
    assert created.opening_seed is None and created.opening_seed_sha256 is not None
    early = [f"c{i:02}" for i in range(20)]
    for who in early:
        engine.join_waitlist("drop-TEE", who, "TEE")
    assert engine.get_drop("drop-TEE").opening_seed is None  # secret until it opens
    assert engine.sweep().offered == 0  # no offer before the drop opens
    backend.advance(1.1)
    late = engine.join_waitlist("drop-TEE", "late", "TEE")
    drop = engine.get_drop("drop-TEE")
    seed = drop.opening_seed
    assert seed is not None and drop.open
    assert hashlib.sha256(seed.encode()).hexdigest() == created.opening_seed_sha256
    # Anyone re-derives the order from the seed and the customers who joined early.
    expected = sorted(early, key=lambda c: (opening_rank(seed, "TEE", c), c))
    assert expected != early  # shuffled, not arrival order
    positions = {c: engine.get_waitlist_entry("drop-TEE", c).position for c in early}
    assert sorted(early, key=positions.__getitem__) == expected
    assert late.position == len(early) + 1  # later arrivals queue behind them
    # The one free unit goes to the first of that order once the sweeper sees it open.
    assert engine.sweep().offered == 1
    assert engine.get_waitlist_entry("drop-TEE", expected[0]).status == "offered"


def test_a_full_head_is_skipped_even_when_it_waits_for_more_than_is_free(
    engine: Engine,
) -> None:
    open_drop(engine, units=3, waitlist=True, per_customer_limit=2)
    engine.reserve([("TEE", 2)], idempotency_key="b", customer="bob")  # bob's limit is full
    ann = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", 2)
    engine.join_waitlist("drop-TEE", "cy", "TEE", 1)
    engine.release(ann.id)  # one unit free: bob could never take it, cy is served
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "skipped"
    assert engine.get_waitlist_entry("drop-TEE", "cy").status == "offered"


def test_the_head_waits_for_its_whole_quantity(engine: Engine) -> None:
    open_drop(engine, units=2, waitlist=True, per_customer_limit=2)
    engine.join_waitlist("drop-TEE", "bob", "TEE", 2)
    assert engine.sweep().offered == 1  # both units to bob
    engine.join_waitlist("drop-TEE", "cy", "TEE", 2)
    engine.join_waitlist("drop-TEE", "dee", "TEE", 1)
    engine.receive("TEE", 1)  # one unit: cy waits for two, and dee is behind cy
    assert engine.get_waitlist_entry("drop-TEE", "cy").status == "waiting"
    assert engine.get_waitlist_entry("drop-TEE", "dee").status == "waiting"
    level = level_of(engine, "TEE")
    assert (level.reserved, level.available) == (2, 1)
    engine.receive("TEE", 1)
    assert engine.get_waitlist_entry("drop-TEE", "cy").status == "offered"
    assert level_of(engine, "TEE").available == 0


def test_a_purchase_order_receipt_offers_its_units_in_the_same_call(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True, per_customer_limit=1)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")  # sold out
    po = engine.create_purchase_order(
        [("PLAIN", 4), ("TEE", 2)],
        supplier="ACME",
        expected_date="2026-03-01",
        idempotency_key="po",
    )
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.receive_purchase_order(po.id, [("PLAIN", 4), ("TEE", 2)], actor="warehouse")
    # No sweep: the receipt itself offered the first drop line's units to bob.
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered" and bob.offer is not None
    offer = engine.get_reservation(bob.offer.reservation_id)
    assert (offer.status, offer.lines[0].sku, offer.lines[0].qty) == ("held", "TEE", 1)
    level = level_of(engine, "TEE")
    assert (level.on_hand, level.reserved, level.inbound, level.available) == (3, 2, 0, 1)
    assert level_of(engine, "PLAIN").available == 4
    assert ("waitlist_offered", "bob", "warehouse", "1") in waitlist_events(engine)
    # The offer counts against bob's limit, and in the drop's figures.
    with pytest.raises(CustomerLimitExceeded):
        engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")
    drop = engine.get_drop("drop-TEE")
    assert (drop.offered, drop.customers_at_limit) == (1, 2)


def test_a_purchase_order_receipt_of_a_sku_in_no_drop_offers_nothing(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    po = engine.create_purchase_order(
        [("PLAIN", 3)], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    received = engine.receive_purchase_order(po.id, [("PLAIN", 3)])
    assert received.lines[0].received == 3
    assert level_of(engine, "PLAIN").available == 3
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "waiting"


def test_a_transfer_arrival_offers_its_units_at_the_destination(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True, per_customer_limit=1)
    engine.receive("TEE", 2, location="far")
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")  # default sold out
    sent = engine.transfer("TEE", 2, "far", "default")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.join_waitlist("drop-TEE", "cy", "TEE")
    engine.join_waitlist("drop-TEE", "dee", "TEE")
    engine.receive_transfer(sent.id, 2, actor="dock")
    # bob and cy, in line order, hold the two arrived units; dee still waits.
    for customer in ("bob", "cy"):
        entry = engine.get_waitlist_entry("drop-TEE", customer)
        assert entry.status == "offered" and entry.offer is not None
        offer = engine.get_reservation(entry.offer.reservation_id)
        assert (offer.lines[0].location, offer.lines[0].qty) == ("default", 1)
        assert ("waitlist_offered", customer, "dock", "1") in waitlist_events(engine)
    assert engine.get_waitlist_entry("drop-TEE", "dee").position == 1
    level = level_of(engine, "TEE")
    assert (level.on_hand, level.reserved, level.in_transit, level.available) == (3, 3, 0, 0)
    with pytest.raises(CustomerLimitExceeded):
        engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")
    assert engine.get_drop("drop-TEE").customers_at_limit == 3
    # Receiving again with the same qty is the same record and offers nothing more.
    assert engine.receive_transfer(sent.id, 2).status == "received"
    assert engine.get_waitlist_entry("drop-TEE", "dee").status == "waiting"


def test_an_offer_that_reaches_the_limit_counts_in_customers_at_limit(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True, per_customer_limit=1)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    assert engine.get_drop("drop-TEE").customers_at_limit == 1  # ann
    engine.release(held.id)  # bob's offer takes ann's unit
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "offered"
    assert engine.get_drop("drop-TEE").customers_at_limit == 1  # bob now


def test_a_positive_adjustment_offers_its_units_in_the_same_call(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True, per_customer_limit=1)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    level = engine.adjust("TEE", 1, "found behind the shelf", actor="stocker")
    assert (level.on_hand, level.reserved, level.available) == (2, 2, 0)
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered" and bob.offer is not None
    assert ("waitlist_offered", "bob", "stocker", "1") in waitlist_events(engine)
    with pytest.raises(CustomerLimitExceeded):
        engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")
    # A decrease offers nothing and is refused as before when it would oversell.
    with pytest.raises(WouldOversell):
        engine.adjust("TEE", -1, "miscount")
    assert engine.get_drop("drop-TEE").offered == 1


def test_a_count_that_finds_more_units_offers_them_in_the_same_call(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", 2)
    read = level_of(engine, "TEE")
    counted = engine.count("TEE", 3, read.version, actor="counter")
    assert (counted.delta, counted.exposure) == (2, 0)
    assert (counted.stock.on_hand, counted.stock.reserved, counted.stock.available) == (3, 3, 0)
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered" and bob.offer is not None
    assert engine.get_reservation(bob.offer.reservation_id).lines[0].qty == 2
    assert ("waitlist_offered", "bob", "counter", "2") in waitlist_events(engine)


def test_a_decrease_reclaims_in_rounds_and_offers_what_is_left(backend: Backend) -> None:
    """adjust's reclaim_more rounds keep the offer part: with 5 expired holds and 2
    reclaimed per call, a decrease of 3 is answered (not refused) and the unit left free
    goes to the customer in line in that same call."""
    engine = backend.engine(reclaim_per_line_max=2)
    backend.freeze()
    open_drop(engine, units=5, waitlist=True, hold_ttl_seconds=1)
    for i in range(5):
        engine.reserve([("TEE", 1)], idempotency_key=f"h{i}", customer=f"c{i}")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    backend.advance(1.2)
    level = engine.adjust("TEE", -3, "recount", actor="stocker")
    assert level.on_hand == 2
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered" and bob.offer is not None
    assert ("waitlist_offered", "bob", "stocker", "1") in waitlist_events(engine)
    assert [e for e in reserved_events(engine) if e.get("reason") == "offer"]


def test_a_delivery_of_two_drops_skus_offers_the_first_and_leaves_the_other_to_the_sweeper(
    engine: Engine,
) -> None:
    open_drop(engine, units=1, waitlist=True)
    open_drop(engine, sku="HAT", units=1, waitlist=True)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.reserve([("HAT", 1)], idempotency_key="b", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE")
    engine.join_waitlist("drop-HAT", "cy", "HAT")
    po = engine.create_purchase_order(
        [("TEE", 1), ("HAT", 1)], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    engine.receive_purchase_order(po.id, [("TEE", 1), ("HAT", 1)])
    assert engine.get_waitlist_entry("drop-TEE", "bob").status == "offered"
    # HAT's line is the part's first drop line only when it lives in another partition.
    hat_first = engine.partition_of("HAT") != engine.partition_of("TEE")
    expected = "offered" if hat_first else "waiting"
    assert engine.get_waitlist_entry("drop-HAT", "cy").status == expected
    assert engine.sweep().offered == (0 if hat_first else 1)
    assert engine.get_waitlist_entry("drop-HAT", "cy").status == "offered"
    assert level_of(engine, "HAT").available == 0


def pin_part(engine: Engine, rid: str) -> dict[str, object]:
    """A pin of a reservation's first part, as the multi-partition commit makes it."""

    def op() -> Generator[Any, Any, dict[str, object]]:
        parts = yield from engine._read_parts(rid)
        result, _ = yield from engine._run_part("pin_reservation", rid, parts[0], "t", 60_000)
        return result

    return engine.run(op())


@pytest.mark.parametrize("path", ["extend", "ship", "pin"])
def test_a_write_that_finds_a_drop_hold_expired_offers_its_units(
    backend: Backend, clock: object, path: str
) -> None:
    engine = backend.engine()
    open_drop(engine, units=1, waitlist=True, hold_ttl_seconds=1)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    engine.join_waitlist("drop-TEE", "bob", "TEE", actor="checkout")
    backend.advance(1.1)
    if path == "pin":
        assert pin_part(engine, held.id)["error"] == "reservation_expired"
    elif path == "extend":
        with pytest.raises(ReservationExpired):
            engine.extend(held.id, 60, actor="shop")
    else:
        with pytest.raises(ReservationExpired):
            engine.ship(held.id, actor="shop")
    # No sweep: the hold given back in that call is bob's offer.
    assert engine.get_reservation(held.id).status == "expired"
    bob = engine.get_waitlist_entry("drop-TEE", "bob")
    assert bob.status == "offered" and bob.offer is not None
    assert engine.get_reservation(bob.offer.reservation_id).status == "held"
    level = level_of(engine, "TEE")
    assert (level.on_hand, level.reserved, level.available) == (1, 1, 0)
    assert [t for t, *_ in waitlist_events(engine)].count("waitlist_offered") == 1
