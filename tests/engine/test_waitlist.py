"""The waitlist of a drop (docs/drops.md, "Waitlist"): joining in arrival order, joining
twice is one entry, declining leaves the line, the entry as read back, the drop's
``waiting`` figure, the ledger events, and bad input refused with nothing written; on
fakeredis, a real redis-server and a real Redis Cluster (4 partitions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from earmark import (
    CustomerLimitExceeded,
    DropNotFound,
    Engine,
    InvalidRequest,
    SkuNotInDrop,
    WaitlistDisabled,
    WaitlistEntryNotFound,
    limits,
)
from earmark.engine.replies import script_reply
from earmark.engine.steps import Call, Op
from tests.engine.test_drops import open_drop, server_now
from tests.support.backends import stream_lengths


def waitlist_events(engine: Engine, sku: str = "TEE") -> list[tuple[str, str, str, str]]:
    p = engine.partition_of(sku)
    found = engine.client.xrange(engine.keys.events(p))
    return [
        (f["type"], f["customer"], f["actor"], f.get("units", ""))
        for _, f in found
        if f["type"].startswith("waitlist_")
    ]


def test_customers_queue_in_arrival_order_and_joining_twice_is_one_entry(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    ann = engine.join_waitlist("drop-TEE", " Ann ", "TEE")
    bob = engine.join_waitlist("drop-TEE", "bob", "TEE", 2, actor="checkout")
    assert (ann.customer, ann.status, ann.position, ann.qty, ann.offer) == (
        "ann",
        "waiting",
        1,
        1,
        None,
    )
    assert (bob.position, bob.qty) == (2, 2)
    again = engine.join_waitlist("drop-TEE", "ANN", "TEE", 2)
    assert again == ann  # the same entry: same qty, same place, same joined_at
    assert engine.get_waitlist_entry("drop-TEE", "bob") == bob
    assert engine.get_waitlist_entry("drop-TEE", "bob", "TEE") == bob
    assert engine.get_drop("drop-TEE").waiting == 2
    assert waitlist_events(engine) == [
        ("waitlist_joined", "ann", "library", "1"),
        ("waitlist_joined", "bob", "checkout", "2"),
    ]


def test_declining_leaves_the_line_and_the_next_moves_up(engine: Engine) -> None:
    open_drop(engine, units=1, waitlist=True)
    for who in ("ann", "bob", "cy"):
        engine.join_waitlist("drop-TEE", who, "TEE")
    declined = engine.decline_waitlist("drop-TEE", "ann")
    assert (declined.status, declined.position) == ("declined", 0)
    assert declined.changed_at >= declined.joined_at
    assert engine.get_waitlist_entry("drop-TEE", "bob").position == 1
    assert engine.get_waitlist_entry("drop-TEE", "cy").position == 2
    # Declining again changes nothing and writes nothing.
    before = stream_lengths(engine)
    assert engine.decline_waitlist("drop-TEE", "ann") == declined
    assert stream_lengths(engine) == before
    # Joining after a finished entry is a new entry at the back of the line.
    back = engine.join_waitlist("drop-TEE", "ann", "TEE")
    assert (back.status, back.position) == ("waiting", 3)
    assert engine.get_drop("drop-TEE").waiting == 3
    types = [t for t, *_ in waitlist_events(engine)]
    assert types.count("waitlist_declined") == 1 and types.count("waitlist_joined") == 4


def test_a_customer_waiting_for_several_skus_names_one(engine: Engine) -> None:
    engine.receive("TEE", 1)
    engine.receive("CAP", 1)
    engine.create_drop(
        "duo",
        ["TEE", "CAP"] if engine.partition_of("TEE") == engine.partition_of("CAP") else ["TEE"],
        opens_at=server_now(engine) - timedelta(minutes=1),
        waitlist=True,
    )
    skus = engine.get_drop("duo").skus
    for sku in skus:
        engine.join_waitlist("duo", "ann", sku)
    if len(skus) > 1:
        with pytest.raises(InvalidRequest) as refused:
            engine.get_waitlist_entry("duo", "ann")
        assert refused.value.details["field"] == "sku"
    assert engine.get_waitlist_entry("duo", "ann", skus[-1]).sku == skus[-1]


def test_bad_joins_are_refused_and_write_nothing(engine: Engine) -> None:
    open_drop(engine, sku="TEE", units=1, waitlist=True, per_customer_limit=2)
    open_drop(engine, sku="OFF", units=1, waitlist=False)
    engine.receive("PLAIN", 1)
    before = stream_lengths(engine)
    with pytest.raises(WaitlistDisabled):
        engine.join_waitlist("drop-OFF", "ann", "OFF")
    with pytest.raises(DropNotFound):
        engine.join_waitlist("nope", "ann", "TEE")
    bad: list[tuple[object, object, object, str]] = [
        ("ann", "bad sku", 1, "sku"),
        ("ann", "TEE", 0, "qty"),
        ("ann", "TEE", -1, "qty"),
        ("ann", "TEE", 1.5, "qty"),
        ("ann", "TEE", "1", "qty"),
        ("x" * (limits.CUSTOMER_LENGTH_MAX + 1), "TEE", 1, "customer"),
        ("", "TEE", 1, "customer"),
        ("   ", "TEE", 1, "customer"),
        ("tab\there", "TEE", 1, "customer"),
        (None, "TEE", 1, "customer"),
    ]
    with pytest.raises(SkuNotInDrop):
        engine.join_waitlist("drop-TEE", "ann", "PLAIN")
    with pytest.raises(CustomerLimitExceeded) as over:
        engine.join_waitlist("drop-TEE", "ann", "TEE", 3)  # more than the limit: never served
    assert (over.value.details["limit"], over.value.details["requested"]) == (2, 3)
    for customer, sku, qty, field in bad:
        with pytest.raises(InvalidRequest) as refused:
            engine.join_waitlist("drop-TEE", customer, sku, qty)  # type: ignore[arg-type]
        assert refused.value.details["field"] == field, (customer, sku, qty)
    with pytest.raises(WaitlistEntryNotFound):
        engine.get_waitlist_entry("drop-TEE", "ann")
    with pytest.raises(WaitlistEntryNotFound):
        engine.decline_waitlist("drop-TEE", "ann", "TEE")
    with pytest.raises(DropNotFound):
        engine.get_waitlist_entry("nope", "ann")
    assert stream_lengths(engine) == before
    assert engine.get_drop("drop-TEE").waiting == 0


def test_the_script_refuses_a_join_on_the_rules_it_reads(engine: Engine) -> None:
    """Python checks the SKU and the limit first; the script checks them again on the rules
    it reads (a PATCH may lower the limit between the two)."""
    engine.receive("TEE", 1)
    engine.create_drop(
        "later",
        ["TEE"],
        opens_at=server_now(engine) + timedelta(hours=1),
        per_customer_limit=1,
        waitlist=True,
    )
    p = engine.partition_of("TEE")
    before = stream_lengths(engine)

    def script(customer: str, sku: str, qty: int) -> dict[str, object]:
        call = engine._waitlist_call("join_waitlist", p, "later", customer, sku, "", "t", "")
        call.args.extend((qty, ""))  # no opening rank
        reply, _ = script_reply(engine.run(single(call)))
        return reply

    assert script("ann", "TEE", 2) == {
        "error": "customer_limit_exceeded",
        "drop": "later",
        "limit": 1,
        "used": 0,
        "requested": 2,
    }
    assert script("ann", "OTHER", 1) == {
        "error": "sku_not_in_drop",
        "sku": "OTHER",
        "drop": "later",
    }
    assert stream_lengths(engine) == before
    assert script("ann", "TEE", 1)["ok"] is True


def single(call: Call) -> Op[Any]:
    return (yield call)
