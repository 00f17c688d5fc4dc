"""The stock lifecycle (docs/design/lifecycle.md): locations, transfers, returns, damage,
write-offs, cycle counts and purchase orders, on fakeredis, a real redis-server and a
real Redis Cluster (4 partitions).

Most tests end with ``assert_events_explain_stock``: summing every event's ``deltas`` per
(sku, location), as the flusher does, must give the stock exactly, and the number of
events that moved a bucket must equal the stock's ``version``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
from redis.crc import key_slot

from earmark import (
    AsyncEngine,
    Engine,
    EngineConfig,
    IdempotencyConflict,
    InsufficientOnHand,
    InsufficientStock,
    InvalidRequest,
    ReservationNotFound,
    ReservationNotHeld,
    SkuNotFound,
    WouldOversell,
    limits,
)
from earmark.durable.rebuild import replay_check, verify
from earmark.engine.steps import Call, Op
from earmark.errors import (
    EarmarkError,
    InsufficientUnits,
    PurchaseOrderClosed,
    PurchaseOrderNotFound,
    ReturnExceedsShipped,
    StaleCount,
    TransferAlreadyReceived,
    TransferNotFound,
)
from earmark.keys import partition_of
from earmark.models import StockLevel
from earmark.store.ledger import Ledger
from tests.engine.test_scripts import LIFECYCLE_SCRIPT_NAMES
from tests.support.backends import Backend, alevel_of, level_of, stream_lengths

ROOT = Path(__file__).resolve().parents[2]
BUCKETS = (
    "on_hand",
    "reserved",
    "committed",
    "in_transit",
    "returned",
    "damaged",
    "written_off",
    "inbound",
)
Clock = Callable[[float], None]


# -- helpers ------------------------------------------------------------------------------


def events(engine: Engine, sku: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Every event (deltas decoded), optionally of one SKU and one type."""
    found = []
    for p in range(engine.partitions):
        for _, fields in engine.client.xrange(engine.keys.events(p)):
            if fields.get("restore") or (sku is not None and fields["sku"] != sku):
                continue
            if kind is None or fields["type"] == kind:
                found.append({**fields, "deltas": orjson.loads(fields["deltas"]) or {}})
    return found


def buckets(level: StockLevel) -> dict[str, int]:
    return {b: getattr(level, b) for b in BUCKETS}


def assert_events_explain_stock(engine: Engine) -> None:
    """What the generic flusher sees: deltas summed per (sku, location) equal the stock,
    and one bucket-moving event per version bump."""
    folded: dict[tuple[str, str], dict[str, int]] = {}
    moved: dict[tuple[str, str], int] = {}
    for event in events(engine):
        where = (event["sku"], event["location"])
        totals = folded.setdefault(where, dict.fromkeys(BUCKETS, 0))
        for bucket, units in event["deltas"].items():
            totals[bucket] += units
        moved[where] = moved.get(where, 0) + (1 if event["deltas"] else 0)
    for (sku, location), totals in folded.items():
        if not moved[(sku, location)]:
            continue
        level = level_of(engine, sku, location)
        raw = engine.client.hgetall(engine.keys.stock(engine.partition_of(sku), sku, location))
        assert {b: int(raw.get(b, 0)) for b in BUCKETS} == totals, (sku, location)
        assert level.version == moved[(sku, location)], (sku, location)


def snapshot(engine: Engine, *places: tuple[str, str]) -> tuple[list[int], list[StockLevel]]:
    """Stream lengths and stock levels: equal before and after a refusal."""
    return stream_lengths(engine), engine.availability(list(places))


def skus_in_partitions(count: int, partitions: int) -> list[str]:
    """SKUs of ``count`` different partitions, in partition order."""
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(partition_of(f"SKU-{i}", partitions), f"SKU-{i}")
        if len(found) == count:
            return [found[p] for p in sorted(found)]
    raise AssertionError("not enough partitions reached")


def shipped(engine: Engine, lines: list[tuple[str, int] | tuple[str, int, str]], key: str) -> str:
    held = engine.reserve(lines, idempotency_key=key)
    engine.commit(held.id)
    engine.ship(held.id)
    return held.id


# -- locations ------------------------------------------------------------------------------


def test_locations_and_the_network_total(engine: Engine) -> None:
    engine.receive("TEE", 10)
    engine.receive("TEE", 4, location="berlin")
    engine.reserve([("TEE", 3, "berlin")], idempotency_key="hold")
    engine.transfer("TEE", 2, "default", "paris")
    assert [level.location for level in engine.locations("TEE")] == ["berlin", "default", "paris"]
    total = engine.stock("TEE")
    assert (total.on_hand, total.reserved, total.available, total.in_transit) == (12, 3, 9, 2)
    assert [level.location for level in total.locations] == ["berlin", "default", "paris"]
    with pytest.raises(SkuNotFound):
        engine.locations("NEVER")
    with pytest.raises(SkuNotFound):
        engine.stock("NEVER")


def test_every_script_that_creates_a_record_indexes_its_location(engine: Engine) -> None:
    engine.adjust("A", 2, "found", location="adj")
    engine.create_purchase_order(
        [("A", 5, "dock")], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    engine.count("A", 1, 0, location="counted")
    engine.receive("A", 3)
    engine.transfer("A", 1, "default", "moved")
    assert [x.location for x in engine.locations("A")] == [
        "adj",
        "counted",
        "default",
        "dock",
        "moved",
    ]


# -- transfers ------------------------------------------------------------------------------


def test_a_transfer_moves_on_hand_into_transit_and_is_received(engine: Engine) -> None:
    engine.receive("A", 10)
    sent = engine.transfer("A", 4, "default", "berlin", reference="T-1", actor="ops")
    assert re.fullmatch(rf"trf_[0-9a-f]{{24}}_{engine.partition_of('A')}", sent.id)
    assert (sent.status, sent.qty_shipped, sent.from_location, sent.to_location) == (
        "in_transit",
        4,
        "default",
        "berlin",
    )
    assert engine.get_transfer(sent.id) == sent
    assert (level_of(engine, "A").on_hand, level_of(engine, "A", "berlin").in_transit) == (6, 4)
    out, into = events(engine, "A")[-2:]
    assert (out["type"], out["location"], out["deltas"]) == (
        "transfer_out",
        "default",
        {"on_hand": -4},
    )
    assert (into["type"], into["location"], into["deltas"]) == (
        "transfer_in",
        "berlin",
        {"in_transit": 4},
    )
    assert (out["transfer"], out["reference"], out["actor"]) == (sent.id, "T-1", "ops")
    got = engine.receive_transfer(sent.id, 4)
    assert (got.status, got.qty_received, got.discrepancy) == ("received", 4, 0)
    assert got.received_at is not None
    berlin = level_of(engine, "A", "berlin")
    assert (berlin.on_hand, berlin.in_transit, berlin.available) == (4, 0, 4)
    (arrived,) = events(engine, "A", "transfer_received")
    assert arrived["deltas"] == {"in_transit": -4, "on_hand": 4}
    assert engine.stock("A").on_hand == 10
    assert_events_explain_stock(engine)


def test_a_short_transfer_writes_off_the_missing_units(engine: Engine) -> None:
    engine.receive("A", 10)
    sent = engine.transfer("A", 5, "default", "berlin")
    got = engine.receive_transfer(sent.id, 3, reason="pallet damaged")
    assert got.discrepancy == -2
    berlin = level_of(engine, "A", "berlin")
    assert (berlin.on_hand, berlin.in_transit, berlin.written_off) == (3, 0, 2)
    (short,) = events(engine, "A", "transfer_discrepancy")
    assert short["deltas"] == {"in_transit": -2, "written_off": 2}
    assert (short["discrepancy"], short["qty"], short["reason"]) == ("short", "2", "pallet damaged")
    assert_events_explain_stock(engine)


def test_a_transfer_with_surplus_lands_it_in_on_hand(engine: Engine) -> None:
    engine.receive("A", 10)
    sent = engine.transfer("A", 2, "default", "berlin")
    assert engine.receive_transfer(sent.id, 5).discrepancy == 3
    assert level_of(engine, "A", "berlin").on_hand == 5
    (extra,) = events(engine, "A", "transfer_discrepancy")
    assert (extra["discrepancy"], extra["deltas"]) == ("surplus", {"on_hand": 3})
    assert_events_explain_stock(engine)


def test_a_transfer_of_units_all_lost(engine: Engine) -> None:
    engine.receive("A", 3)
    sent = engine.transfer("A", 3, "default", "berlin")
    engine.receive_transfer(sent.id, 0)
    berlin = level_of(engine, "A", "berlin")
    assert (berlin.on_hand, berlin.in_transit, berlin.written_off) == (0, 0, 3)
    assert not events(engine, "A", "transfer_received")
    assert_events_explain_stock(engine)


def test_a_transfer_is_refused_beyond_available_at_the_source(engine: Engine, clock: Clock) -> None:
    engine.receive("A", 5)
    engine.reserve([("A", 4)], idempotency_key="hold", ttl_seconds=1)
    before = snapshot(engine, ("A", "default"), ("A", "berlin"))
    with pytest.raises(InsufficientStock) as refused:
        engine.transfer("A", 2, "default", "berlin")
    (short,) = refused.value.shortfalls
    assert (short.location, short.requested, short.available) == ("default", 2, 1)
    assert snapshot(engine, ("A", "default"), ("A", "berlin")) == before
    clock(1.2)  # the hold expires: the transfer reclaims it first
    assert engine.transfer("A", 5, "default", "berlin").qty_shipped == 5
    assert [e["type"] for e in events(engine, "A")][-3:] == [
        "expired",
        "transfer_out",
        "transfer_in",
    ]
    assert_events_explain_stock(engine)


def test_receiving_a_transfer_twice(engine: Engine) -> None:
    engine.receive("A", 5)
    sent = engine.transfer("A", 5, "default", "berlin")
    first = engine.receive_transfer(sent.id, 4)
    written = stream_lengths(engine)
    assert engine.receive_transfer(sent.id, 4) == first  # same qty: the record, no change
    with pytest.raises(TransferAlreadyReceived) as refused:
        engine.receive_transfer(sent.id, 5)
    assert refused.value.details["transfer"]["qty_received"] == 4
    assert stream_lengths(engine) == written
    assert level_of(engine, "A", "berlin").on_hand == 4


def test_transfers_replay_and_conflict(engine: Engine) -> None:
    engine.receive("A", 10)
    first = engine.transfer("A", 3, "default", "b", idempotency_key="t")
    assert engine.transfer("A", 3, "default", "b", idempotency_key="t") == first
    with pytest.raises(IdempotencyConflict):
        engine.transfer("A", 4, "default", "b", idempotency_key="t")
    got = engine.receive_transfer(first.id, 2, idempotency_key="rt")
    assert engine.receive_transfer(first.id, 2, idempotency_key="rt") == got
    with pytest.raises(IdempotencyConflict):
        engine.receive_transfer(first.id, 3, idempotency_key="rt")
    assert (level_of(engine, "A").on_hand, level_of(engine, "A", "b").on_hand) == (7, 2)
    assert len(events(engine, "A", "transfer_out")) == 1
    assert len(events(engine, "A", "transfer_discrepancy")) == 1
    assert_events_explain_stock(engine)


def test_an_unknown_transfer(engine: Engine) -> None:
    missing = f"trf_{'0' * 24}_0"
    with pytest.raises(TransferNotFound):
        engine.get_transfer(missing)
    with pytest.raises(TransferNotFound):
        engine.receive_transfer(missing, 1)


# -- returns --------------------------------------------------------------------------------


def test_a_return_waits_in_quarantine_up_to_what_shipped(engine: Engine) -> None:
    engine.receive("A", 10)
    rid = shipped(engine, [("A", 3)], "sale")
    back = engine.receive_return(rid, "A", 2, reason="too small", actor="returns-desk")
    assert (back.location, back.qty, back.returned, back.shipped) == ("default", 2, 2, 3)
    level = back.stock
    assert (level.on_hand, level.returned, level.available) == (7, 2, 7)
    (event,) = events(engine, "A", "returned")
    assert (event["deltas"], event["reservation"], event["reason"]) == (
        {"returned": 2},
        rid,
        "too small",
    )
    assert engine.receive_return(rid, "A", 1).returned == 3
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(ReturnExceedsShipped) as refused:
        engine.receive_return(rid, "A", 1)
    assert refused.value.details == {"shipped": 3, "returned": 3, "requested": 1}
    assert snapshot(engine, ("A", "default")) == before
    assert_events_explain_stock(engine)


def test_a_return_needs_a_shipped_line(engine: Engine) -> None:
    engine.receive("A", 10)
    engine.receive("A", 10, location="b")
    engine.receive("B", 10)
    held = engine.reserve([("A", 2), ("A", 1, "b")], idempotency_key="sale")
    engine.commit(held.id)
    before = snapshot(engine, ("A", "default"), ("A", "b"), ("B", "default"))
    with pytest.raises(ReservationNotHeld) as refused:
        engine.receive_return(held.id, "A", 1, location="b")
    assert refused.value.status == "committed"
    with pytest.raises(InvalidRequest, match="several locations"):
        engine.receive_return(held.id, "A", 1)
    with pytest.raises(InvalidRequest, match="no line"):
        engine.receive_return(held.id, "A", 1, location="paris")
    with pytest.raises(InvalidRequest, match="no line"):
        engine.receive_return(held.id, "B", 1)
    assert snapshot(engine, ("A", "default"), ("A", "b"), ("B", "default")) == before
    engine.ship(held.id)
    assert engine.receive_return(held.id, "A", 1, location="b").stock.returned == 1
    with pytest.raises(ReservationNotFound):
        engine.receive_return(f"rsv_{'0' * 24}_{engine.partition_of('A')}", "A", 1)


def test_returned_units_are_restocked_damaged_or_written_off(engine: Engine) -> None:
    engine.receive("A", 10)
    rid = shipped(engine, [("A", 6)], "sale")
    engine.receive_return(rid, "A", 6)
    restocked = engine.dispose_returned("A", 3, "restock", reason="as new")
    assert (restocked.on_hand, restocked.returned, restocked.available) == (7, 3, 7)
    damaged = engine.dispose_returned("A", 2, "damaged")
    assert (damaged.returned, damaged.damaged) == (1, 2)
    gone = engine.dispose_returned("A", 1, "write_off")
    assert (gone.returned, gone.written_off) == (0, 1)
    kinds = [(e["type"], e["deltas"]) for e in events(engine, "A")][-3:]
    assert kinds == [
        ("return_restocked", {"returned": -3, "on_hand": 3}),
        ("return_damaged", {"returned": -2, "damaged": 2}),
        ("return_written_off", {"returned": -1, "written_off": 1}),
    ]
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(InsufficientUnits) as refused:
        engine.dispose_returned("A", 1, "restock")
    assert refused.value.details == {"bucket": "returned", "available": 0, "requested": 1}
    assert snapshot(engine, ("A", "default")) == before
    assert_events_explain_stock(engine)


def test_returns_replay_and_conflict(engine: Engine) -> None:
    engine.receive("A", 10)
    rid = shipped(engine, [("A", 4)], "sale")
    first = engine.receive_return(rid, "A", 2, idempotency_key="ret")
    assert engine.receive_return(rid, "A", 2, idempotency_key="ret") == first
    with pytest.raises(IdempotencyConflict):
        engine.receive_return(rid, "A", 1, idempotency_key="ret")
    level = engine.dispose_returned("A", 1, "restock", idempotency_key="disp")
    assert engine.dispose_returned("A", 1, "restock", idempotency_key="disp") == level
    with pytest.raises(IdempotencyConflict):
        engine.dispose_returned("A", 1, "damaged", idempotency_key="disp")
    assert (level_of(engine, "A").returned, level_of(engine, "A").on_hand) == (1, 7)
    assert_events_explain_stock(engine)


# -- damage and write-offs ----------------------------------------------------------------


def test_damage_moves_on_hand_and_respects_promises(engine: Engine) -> None:
    engine.receive("A", 5)
    level = engine.damage("A", 1, "dropped")
    assert (level.on_hand, level.damaged, level.available) == (4, 1, 4)
    (event,) = events(engine, "A", "damaged")
    assert (event["deltas"], event["reason"]) == ({"on_hand": -1, "damaged": 1}, "dropped")
    engine.reserve([("A", 3)], idempotency_key="hold")
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(WouldOversell) as refused:
        engine.damage("A", 2, "crushed")
    assert refused.value.details == {"available": 1, "requested": 2}
    assert snapshot(engine, ("A", "default")) == before
    forced = engine.damage("A", 2, "crushed", force=True)
    assert (forced.on_hand, forced.available) == (2, -1)
    damaged, exposure = events(engine, "A")[-2:]
    assert (damaged["type"], exposure["type"]) == ("damaged", "oversell_exposure")
    assert (exposure["qty"], exposure["deltas"], exposure["cause"]) == ("1", {}, "damaged")
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(InsufficientOnHand):
        engine.damage("A", 3, "lost", force=True)
    assert snapshot(engine, ("A", "default")) == before
    assert_events_explain_stock(engine)


def test_write_offs_from_on_hand_and_from_damaged(engine: Engine) -> None:
    engine.receive("A", 5)
    engine.damage("A", 2, "wet")
    level = engine.write_off("A", 2, "mouldy", source="damaged")
    assert (level.damaged, level.written_off, level.on_hand) == (0, 2, 3)
    level = engine.write_off("A", 1, "stolen")
    assert (level.on_hand, level.written_off) == (2, 3)
    kinds = [(e["type"], e["source"], e["deltas"]) for e in events(engine, "A", "written_off")]
    assert kinds == [
        ("written_off", "damaged", {"damaged": -2, "written_off": 2}),
        ("written_off", "on_hand", {"on_hand": -1, "written_off": 1}),
    ]
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(InsufficientUnits) as refused:
        engine.write_off("A", 1, "x", source="damaged")
    assert refused.value.details["bucket"] == "damaged"
    with pytest.raises(InsufficientOnHand):
        engine.write_off("A", 3, "x", force=True)
    assert snapshot(engine, ("A", "default")) == before
    engine.reserve([("A", 2)], idempotency_key="hold")
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(WouldOversell):
        engine.write_off("A", 1, "x")
    assert snapshot(engine, ("A", "default")) == before
    forced = engine.write_off("A", 2, "x", force=True)
    assert (forced.on_hand, forced.available) == (0, -2)
    assert events(engine, "A")[-1]["type"] == "oversell_exposure"
    assert events(engine, "A")[-1]["qty"] == "2"
    assert_events_explain_stock(engine)


def test_damage_and_write_off_replay_and_conflict(engine: Engine) -> None:
    engine.receive("A", 5)
    first = engine.damage("A", 1, "x", idempotency_key="d")
    assert engine.damage("A", 1, "x", idempotency_key="d") == first
    with pytest.raises(IdempotencyConflict):
        engine.damage("A", 2, "x", idempotency_key="d")
    first = engine.write_off("A", 1, "x", source="damaged", idempotency_key="w")
    assert engine.write_off("A", 1, "x", source="damaged", idempotency_key="w") == first
    with pytest.raises(IdempotencyConflict):
        engine.write_off("A", 1, "x", idempotency_key="w")
    level = level_of(engine, "A")
    assert (level.on_hand, level.damaged, level.written_off) == (4, 0, 1)
    assert_events_explain_stock(engine)


# -- cycle counts ------------------------------------------------------------------------------


def test_a_count_with_a_sale_between_read_and_count(engine: Engine) -> None:
    engine.receive("A", 10)
    held = engine.reserve([("A", 3)], idempotency_key="sale")
    engine.commit(held.id)
    read = level_of(engine, "A")  # the counter reads on_hand 10 ...
    engine.ship(held.id)  # ... 3 units leave before the shelf is counted ...
    engine.receive("A", 5)  # ... and 5 arrive
    result = engine.count("A", 9, read.version, reason="aisle 4")  # 9 of the 10 were there
    assert (result.expected, result.delta, result.exposure) == (10, -1, 0)
    assert result.stock.on_hand == 10 - 3 + 5 - 1
    event = events(engine, "A", "counted")[-1]
    assert (event["deltas"], event["counted"], event["expected"]) == ({"on_hand": -1}, "9", "10")
    assert (event["counted_version"], event["reason"]) == (str(read.version), "aisle 4")
    now = level_of(engine, "A")
    assert engine.count("A", now.on_hand, now.version).delta == 0  # a match is recorded too
    assert events(engine, "A")[-1]["deltas"] == {"on_hand": 0}
    assert_events_explain_stock(engine)


def test_a_count_that_leaves_promises_uncovered_records_the_exposure(engine: Engine) -> None:
    engine.receive("A", 5)
    engine.reserve([("A", 5)], idempotency_key="hold")
    result = engine.count("A", 3, level_of(engine, "A").version)
    assert (result.delta, result.exposure, result.stock.available) == (-2, 2, -2)
    counted, exposure = events(engine, "A")[-2:]
    assert (counted["type"], exposure["type"], exposure["qty"]) == (
        "counted",
        "oversell_exposure",
        "2",
    )
    with pytest.raises(InsufficientStock):
        engine.reserve([("A", 1)], idempotency_key="after")
    assert_events_explain_stock(engine)


def test_a_count_older_than_the_log_or_from_the_future_is_stale(engine: Engine) -> None:
    engine.receive("A", 1)
    first = level_of(engine, "A").version
    for i in range(limits.ONHAND_LOG_MAX):
        engine.receive("A", 1, idempotency_key=f"r{i}")
    engine.reserve([("A", 1)], idempotency_key="hold")  # versions move without on_hand
    oldest_kept = first + 1
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(StaleCount) as refused:
        engine.count("A", 5, first)
    assert refused.value.code == "stale_count"
    assert refused.value.details["oldest"] == oldest_kept
    with pytest.raises(StaleCount):
        engine.count("A", 5, before[1][0].version + 1)
    assert snapshot(engine, ("A", "default")) == before
    result = engine.count("A", 100, oldest_kept)
    assert (result.expected, result.stock.on_hand) == (2, 257 + 98)


def test_a_count_older_than_the_last_applied_count_is_stale(engine: Engine) -> None:
    """Two counters: one read at version 4 and counted, one read at version 1 and reports
    later. The later report is older than what was already counted: applying it would
    move on_hand a second time for the same shelf (today's bug: 10 -> 7 -> 5)."""
    engine.receive("A", 4)
    early = level_of(engine, "A")  # version 1: the late counter reads here ...
    engine.receive("A", 3)
    engine.receive("A", 2)
    engine.receive("A", 1)
    late = level_of(engine, "A")  # ... the first counter at version 4
    assert (early.version, late.version, late.on_hand) == (1, 4, 10)
    assert engine.count("A", 7, late.version).stock.on_hand == 7  # 3 missing
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(StaleCount) as refused:
        engine.count("A", 2, early.version)  # 2 missing of the 4 there at version 1
    assert refused.value.details == {"version": 1, "current": 5, "oldest": 5}
    with pytest.raises(StaleCount):
        engine.count("A", 7, late.version)  # the same snapshot counted twice
    assert snapshot(engine, ("A", "default")) == before
    assert engine.count("A", 6, 5).stock.on_hand == 6  # a count after the last one


def test_a_log_that_disagrees_with_the_stock_only_answers_for_now(engine: Engine) -> None:
    engine.receive("A", 10)
    engine.receive("A", 5)
    p = engine.partition_of("A")
    engine.client.hset(engine.keys.stock(p, "A", "default"), "on_hand", 12)  # a restore
    with pytest.raises(StaleCount):
        engine.count("A", 11, 1)
    now = level_of(engine, "A")
    assert engine.count("A", 11, now.version).delta == -1
    engine.receive("A", 1)
    assert engine.count("A", 12, now.version + 1).expected == 11  # the log starts again


def test_a_count_of_a_location_never_stocked(engine: Engine) -> None:
    result = engine.count("A", 4, 0, location="attic")
    assert (result.expected, result.delta, result.stock.on_hand) == (0, 4, 4)
    with pytest.raises(StaleCount):  # version 0 was counted already
        engine.count("A", 0, 0, location="attic")
    assert engine.count("A", 0, 1, location="attic").stock.on_hand == 0
    assert_events_explain_stock(engine)


def test_a_count_that_contradicts_what_happened_since_is_refused(engine: Engine) -> None:
    engine.receive("A", 10)
    read = level_of(engine, "A")
    engine.adjust("A", -8, "sold at the counter")
    before = snapshot(engine, ("A", "default"))
    with pytest.raises(InsufficientOnHand):
        engine.count("A", 0, read.version)  # 10 gone since the read, but only 2 are left
    assert snapshot(engine, ("A", "default")) == before


def test_counts_replay_and_conflict(engine: Engine) -> None:
    engine.receive("A", 10)
    version = level_of(engine, "A").version
    first = engine.count("A", 8, version, idempotency_key="c")
    assert engine.count("A", 8, version, idempotency_key="c") == first
    with pytest.raises(IdempotencyConflict):
        engine.count("A", 7, version, idempotency_key="c")
    assert level_of(engine, "A").on_hand == 8
    assert_events_explain_stock(engine)


def test_every_lua_bound_matches_its_limit() -> None:
    """The bounds Lua checks (lua/includes/common.lua) carry the names and values of their
    constants in earmark.limits, so the two paths refuse the same requests."""
    source = (ROOT / "lua" / "includes" / "common.lua").read_text()
    source += (ROOT / "lua" / "includes" / "channels.lua").read_text()
    bounds = dict(re.findall(r"^local ([A-Z_]+) = (\d+)$", source, re.MULTILINE))
    assert set(bounds) >= {"LINES_MAX", "ONHAND_LOG_MAX", "SKUS_PER_READ_MAX"}
    assert "CHANNEL_RULES_PER_PARTITION_MAX" in bounds
    for name, value in bounds.items():
        assert getattr(limits, name) == int(value), name


# -- purchase orders ----------------------------------------------------------------------------


def test_a_purchase_order_is_expected_received_and_closed(engine: Engine) -> None:
    po = engine.create_purchase_order(
        [("A", 10), ("A", 4, "berlin"), ("B", 6)],
        supplier="ACME",
        expected_date="2026-03-01",
        reference="PO-77",
        idempotency_key="po",
    )
    assert re.fullmatch(r"po_[0-9a-f]{24}_[0-9]+(-[0-9]+)*", po.id)
    assert (po.status, po.supplier, po.expected_date, po.reference) == (
        "open",
        "ACME",
        "2026-03-01",
        "PO-77",
    )
    assert {(x.sku, x.location, x.outstanding) for x in po.lines} == {
        ("A", "default", 10),
        ("A", "berlin", 4),
        ("B", "default", 6),
    }
    assert level_of(engine, "A").inbound == 10
    assert all(e["deltas"] == {"inbound": e_qty} for e, e_qty in expected_events(engine))
    got = engine.receive_purchase_order(po.id, [("A", 6), ("A", 5, "berlin")])
    line = {(x.sku, x.location): x for x in got.lines}
    assert (line["A", "default"].received, line["A", "default"].outstanding) == (6, 4)
    assert (line["A", "berlin"].received, line["A", "berlin"].outstanding) == (5, 0)
    assert (level_of(engine, "A").on_hand, level_of(engine, "A").inbound) == (6, 4)
    berlin = level_of(engine, "A", "berlin")
    assert (berlin.on_hand, berlin.inbound) == (5, 0)
    (over,) = events(engine, "A", "supplier_discrepancy")
    assert (over["discrepancy"], over["deltas"], over["location"]) == (
        "over",
        {"on_hand": 1},
        "berlin",
    )
    closed = engine.close_purchase_order(po.id, reason="supplier is done")
    assert closed.status == "closed" and closed.closed_at is not None
    assert all(x.outstanding == 0 for x in closed.lines)
    assert (level_of(engine, "A").inbound, level_of(engine, "B").inbound) == (0, 0)
    shorts = [
        (e["sku"], e["qty"], e["deltas"])
        for e in events(engine, kind="supplier_discrepancy")
        if e["discrepancy"] == "short"
    ]
    assert sorted(shorts) == [("A", "4", {}), ("B", "6", {})]
    assert {(e["sku"], e["deltas"]["inbound"]) for e in events(engine, kind="po_closed")} == {
        ("A", -4),
        ("B", -6),
    }
    assert engine.get_purchase_order(po.id) == closed
    assert_events_explain_stock(engine)


def expected_events(engine: Engine) -> list[tuple[dict[str, Any], int]]:
    return [(e, int(e["qty"])) for e in events(engine, kind="po_expected")]


def test_a_finished_purchase_order_takes_nothing_more(engine: Engine) -> None:
    po = engine.create_purchase_order(
        [("A", 5)], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    engine.receive_purchase_order(po.id, [("A", 2)])
    cancelled = engine.close_purchase_order(po.id, cancel=True)
    assert cancelled.status == "cancelled"
    (event,) = events(engine, "A", "po_cancelled")
    assert event["deltas"] == {"inbound": -3}
    assert not events(engine, "A", "supplier_discrepancy")  # a cancel is not the supplier's
    before = snapshot(engine, ("A", "default"))
    assert engine.close_purchase_order(po.id, cancel=True) == cancelled  # a no-op
    with pytest.raises(PurchaseOrderClosed) as refused:
        engine.receive_purchase_order(po.id, [("A", 1)])
    assert refused.value.status == "cancelled"
    with pytest.raises(PurchaseOrderClosed):
        engine.close_purchase_order(po.id)
    with pytest.raises(InvalidRequest, match="no line"):
        engine.receive_purchase_order(po.id, [("Z", 1)])
    assert snapshot(engine, ("A", "default")) == before
    with pytest.raises(PurchaseOrderNotFound):
        engine.get_purchase_order(f"po_{'0' * 24}_0")
    assert_events_explain_stock(engine)


def test_purchase_orders_replay_and_conflict(engine: Engine) -> None:
    lines = [("A", 5), ("B", 2)]
    po = engine.create_purchase_order(
        lines, supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    again = engine.create_purchase_order(
        lines, supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    assert again.id == po.id
    with pytest.raises(IdempotencyConflict):
        engine.create_purchase_order(
            lines, supplier="ACME", expected_date="2026-03-02", idempotency_key="po"
        )
    got = engine.receive_purchase_order(po.id, [("A", 3)], idempotency_key="rcv")
    assert engine.receive_purchase_order(po.id, [("A", 3)], idempotency_key="rcv") == got
    with pytest.raises(IdempotencyConflict):
        engine.receive_purchase_order(po.id, [("A", 4)], idempotency_key="rcv")
    closed = engine.close_purchase_order(po.id, idempotency_key="close")
    # A replay after the close still succeeds: the delivered line as the delivery left it.
    (line,) = [x for x in got.lines if x.sku == "A"]
    replayed = engine.receive_purchase_order(po.id, [("A", 3)], idempotency_key="rcv")
    assert [x for x in replayed.lines if x.sku == "A"] == [line]
    assert engine.close_purchase_order(po.id, idempotency_key="close") == closed
    assert (level_of(engine, "A").inbound, level_of(engine, "A").on_hand) == (0, 3)
    assert len(events(engine, "A", "po_expected")) == 1
    assert len(events(engine, "A", "po_received")) == 1
    assert_events_explain_stock(engine)


def test_a_purchase_order_across_four_partitions(backend: Backend) -> None:
    engine = backend.engine(partitions=4)
    skus = skus_in_partitions(4, 4)
    lines = [(sku, 10 + i) for i, sku in enumerate(skus)] + [(skus[0], 3, "berlin")]
    po = engine.create_purchase_order(
        lines, supplier="ACME", expected_date="2026-03-01", idempotency_key="po4"
    )
    assert po.id.endswith("_0-1-2-3")
    assert [x.sku for x in po.lines] == [skus[0], skus[0], *skus[1:]]
    assert (
        engine.create_purchase_order(
            lines, supplier="ACME", expected_date="2026-03-01", idempotency_key="po4"
        )
        == po
    )
    assert [level_of(engine, sku).inbound for sku in skus] == [10, 11, 12, 13]
    got = engine.receive_purchase_order(
        po.id, [(skus[0], 10), (skus[2], 20), (skus[3], 1)], idempotency_key="d1"
    )
    assert [level_of(engine, sku).on_hand for sku in skus] == [10, 0, 20, 1]
    assert [level_of(engine, sku).inbound for sku in skus] == [0, 11, 0, 12]
    assert {x.sku: x.outstanding for x in got.lines if x.location == "default"} == {
        skus[0]: 0,
        skus[1]: 11,
        skus[2]: 0,
        skus[3]: 12,
    }
    assert (
        engine.receive_purchase_order(
            po.id, [(skus[0], 10), (skus[2], 20), (skus[3], 1)], idempotency_key="d1"
        )
        == got
    )
    closed = engine.close_purchase_order(po.id, idempotency_key="close")
    assert closed.status == "closed"
    assert [level_of(engine, sku).inbound for sku in skus] == [0, 0, 0, 0]
    assert level_of(engine, skus[0], "berlin").inbound == 0
    assert engine.get_purchase_order(po.id) == closed
    with pytest.raises(IdempotencyConflict):
        engine.close_purchase_order(po.id, cancel=True, idempotency_key="close")
    assert_events_explain_stock(engine)


def test_a_purchase_order_close_that_stopped_half_way_is_finished_by_a_retry(
    backend: Backend,
) -> None:
    engine = backend.engine(partitions=4)
    a, b = skus_in_partitions(2, 4)
    po = engine.create_purchase_order(
        [(a, 2), (b, 3)], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
    )
    ops = engine
    real_call = ops._po_call
    calls: list[str] = []

    def dying(script: str, *args: Any, **kwargs: Any) -> Call:
        if script == "close_purchase_order" and calls:
            raise ConnectionError("the caller died half way")
        calls.append(script)
        return real_call(script, *args, **kwargs)

    ops._po_call = dying  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        engine.close_purchase_order(po.id, idempotency_key="close")
    ops._po_call = real_call  # type: ignore[method-assign]
    assert engine.get_purchase_order(po.id).status == "open"  # one part closed, one open
    assert (level_of(engine, a).inbound, level_of(engine, b).inbound) == (0, 3)
    assert engine.close_purchase_order(po.id, idempotency_key="close").status == "closed"
    assert (level_of(engine, a).inbound, level_of(engine, b).inbound) == (0, 0)
    assert len(events(engine, kind="po_closed")) == 2
    assert_events_explain_stock(engine)


# -- bad input -------------------------------------------------------------------------------

RID = f"rsv_{'0' * 24}_0"
TID = f"trf_{'0' * 24}_0"
POID = f"po_{'0' * 24}_0"
PO = {"supplier": "ACME", "expected_date": "2026-03-01", "idempotency_key": "k"}
BAD_REQUESTS: list[tuple[str, Callable[[Engine], object]]] = [
    ("locations bad sku", lambda e: e.locations("a b")),
    ("transfer to itself", lambda e: e.transfer("A", 1, "default", "default")),
    ("transfer zero", lambda e: e.transfer("A", 0, "default", "b")),
    ("transfer bad location", lambda e: e.transfer("A", 1, "default", "a:b")),
    ("transfer reference size", lambda e: e.transfer("A", 1, "default", "b", reference="r" * 129)),
    ("receive transfer negative", lambda e: e.receive_transfer(TID, -1)),
    ("receive transfer huge", lambda e: e.receive_transfer(TID, 10**9)),
    ("return zero", lambda e: e.receive_return(RID, "A", 0)),
    ("return bad location", lambda e: e.receive_return(RID, "A", 1, location="")),
    ("dispose unknown", lambda e: e.dispose_returned("A", 1, "resell")),
    ("dispose zero", lambda e: e.dispose_returned("A", 0, "restock")),
    ("dispose reason", lambda e: e.dispose_returned("A", 1, "restock", reason="\x00")),
    ("damage no reason", lambda e: e.damage("A", 1, "")),
    ("damage zero", lambda e: e.damage("A", 0, "x")),
    ("damage force type", lambda e: e.damage("A", 1, "x", force="yes")),  # type: ignore[arg-type]
    ("write-off source", lambda e: e.write_off("A", 1, "x", source="returned")),
    ("write-off float", lambda e: e.write_off("A", 1.0, "x")),  # type: ignore[arg-type]
    ("count negative", lambda e: e.count("A", -1, 1)),
    ("count huge", lambda e: e.count("A", 10**10, 1)),
    ("count version", lambda e: e.count("A", 1, -1)),
    ("count version type", lambda e: e.count("A", 1, "1")),  # type: ignore[arg-type]
    ("po no lines", lambda e: e.create_purchase_order([], **PO)),
    ("po duplicate line", lambda e: e.create_purchase_order([("A", 1), ("A", 2)], **PO)),
    ("po zero qty", lambda e: e.create_purchase_order([("A", 0)], **PO)),
    ("po no supplier", lambda e: e.create_purchase_order([("A", 1)], **{**PO, "supplier": ""})),
    ("po date", lambda e: e.create_purchase_order([("A", 1)], **{**PO, "expected_date": "3/1"})),
    (
        "po day",
        lambda e: e.create_purchase_order([("A", 1)], **{**PO, "expected_date": "2026-02-30"}),
    ),
    ("po no key", lambda e: e.create_purchase_order([("A", 1)], **{**PO, "idempotency_key": None})),
    ("po receive no lines", lambda e: e.receive_purchase_order(POID, [])),
    ("po close cancel type", lambda e: e.close_purchase_order(POID, cancel=1)),  # type: ignore[arg-type]
]


# Ids that cannot be ours name nothing: the resource's NotFound, as HTTP's 404.
MALFORMED_IDS: list[tuple[str, Callable[[Engine], object], type[EarmarkError]]] = [
    ("receive transfer bad id", lambda e: e.receive_transfer("trf_x", 1), TransferNotFound),
    (
        "receive transfer foreign",
        lambda e: e.receive_transfer(f"trf_{'0' * 24}_999", 1),
        TransferNotFound,
    ),
    ("get transfer bad id", lambda e: e.get_transfer("nope"), TransferNotFound),
    ("return bad id", lambda e: e.receive_return("nope", "A", 1), ReservationNotFound),
    (
        "po receive bad id",
        lambda e: e.receive_purchase_order("po_x", [("A", 1)]),
        PurchaseOrderNotFound,
    ),
    (
        "po receive foreign",
        lambda e: e.receive_purchase_order(f"po_{'0' * 24}_999", [("A", 1)]),
        PurchaseOrderNotFound,
    ),
    ("po get bad id", lambda e: e.get_purchase_order("rsv_x"), PurchaseOrderNotFound),
]


@pytest.mark.parametrize(("name", "request_"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_refused_and_writes_nothing(
    name: str, request_: Callable[[Engine], object], engine: Engine
) -> None:
    engine.receive("A", 5)
    before = snapshot(engine, ("A", "default"), ("A", "b"))
    with pytest.raises(InvalidRequest) as refused:
        request_(engine)
    assert refused.value.code == "invalid_request"
    assert snapshot(engine, ("A", "default"), ("A", "b")) == before


@pytest.mark.parametrize(
    ("name", "request_", "error"), MALFORMED_IDS, ids=[b[0] for b in MALFORMED_IDS]
)
def test_a_malformed_id_is_not_found_and_writes_nothing(
    name: str, request_: Callable[[Engine], object], error: type[EarmarkError], engine: Engine
) -> None:
    engine.receive("A", 5)
    before = snapshot(engine, ("A", "default"), ("A", "b"))
    with pytest.raises(error):
        request_(engine)
    assert snapshot(engine, ("A", "default"), ("A", "b")) == before


# -- keys, clusters and the asyncio engine ---------------------------------------------------


def test_every_lifecycle_call_keeps_its_keys_in_one_slot(request: pytest.FixtureRequest) -> None:
    """As tests/test_scripts.py::test_every_call_keeps_its_keys_in_one_slot, for every
    lifecycle script, with a purchase order spanning 4 partitions."""
    engine = Backend("fake", request).engine(partitions=4)
    seen: set[str] = set()

    def checked(op: Op[Any]) -> Op[Any]:
        step = next(op)
        while True:
            for call in [step] if isinstance(step, Call) else getattr(step, "calls", []):
                assert len({key_slot(key.encode()) for key in call.keys}) == 1, call
                assert all(key.startswith(engine.keys.prefix) for key in call.keys)
                seen.add(call.script)
            for command in getattr(step, "commands", []):
                assert str(command[1]).startswith(engine.keys.prefix)
            try:
                step = op.send((yield step))
            except StopIteration as stop:
                return stop.value

    run = engine.run
    engine.run = lambda op: run(checked(op))  # type: ignore[method-assign]
    skus = skus_in_partitions(4, 4)
    for sku in skus:
        engine.receive(sku, 10, idempotency_key=f"r{sku}")
        engine.locations(sku)
        engine.stock(sku)
        sent = engine.transfer(sku, 2, "default", "b", idempotency_key=f"t{sku}")
        engine.receive_transfer(sent.id, 2, idempotency_key=f"rt{sku}")
        engine.get_transfer(sent.id)
        engine.damage(sku, 1, "x", idempotency_key=f"d{sku}")
        engine.write_off(sku, 1, "x", source="damaged", idempotency_key=f"w{sku}")
        engine.count(sku, 5, level_of(engine, sku).version, idempotency_key=f"c{sku}")
    held = engine.reserve([(sku, 1) for sku in skus], idempotency_key="cart")
    engine.commit(held.id)
    engine.ship(held.id)
    for sku in skus:
        engine.receive_return(held.id, sku, 1, idempotency_key=f"ret{sku}")
        engine.dispose_returned(sku, 1, "restock", idempotency_key=f"disp{sku}")
    po = engine.create_purchase_order(
        [(sku, 3) for sku in skus], supplier="S", expected_date="2026-01-01", idempotency_key="po"
    )
    engine.receive_purchase_order(po.id, [(sku, 1) for sku in skus], idempotency_key="d")
    engine.close_purchase_order(po.id, idempotency_key="close")
    engine.get_purchase_order(po.id)
    assert seen >= set(LIFECYCLE_SCRIPT_NAMES)


async def test_the_async_engine_covers_every_lifecycle_operation() -> None:
    engine = AsyncEngine.embedded(EngineConfig(partitions=2), server=fakeredis.FakeServer())
    async with engine:
        await engine.receive("A", 10)
        sent = await engine.transfer("A", 3, "default", "b")
        assert (await engine.receive_transfer(sent.id, 3)).status == "received"
        assert (await engine.get_transfer(sent.id)).qty_received == 3
        assert [x.location for x in await engine.locations("A")] == ["b", "default"]
        assert (await engine.stock("A")).on_hand == 10
        held = await engine.reserve([("A", 2)], idempotency_key="sale")
        await engine.commit(held.id)
        await engine.ship(held.id)
        assert (await engine.receive_return(held.id, "A", 2)).returned == 2
        assert (await engine.dispose_returned("A", 1, "restock")).returned == 1
        assert (await engine.damage("A", 1, "x")).damaged == 1
        assert (await engine.write_off("A", 1, "x", source="damaged")).written_off == 1
        version = (await alevel_of(engine, "A")).version
        assert (await engine.count("A", 4, version)).delta == -1
        po = await engine.create_purchase_order(
            [("A", 2), ("B", 2)], supplier="S", expected_date="2026-01-01", idempotency_key="p"
        )
        assert (await engine.receive_purchase_order(po.id, [("B", 2)])).status == "open"
        assert (await engine.close_purchase_order(po.id, cancel=True)).status == "cancelled"
        assert (await engine.get_purchase_order(po.id)).status == "cancelled"


async def test_the_flusher_records_every_lifecycle_event(
    aengine: AsyncEngine, sqlite_ledger: Ledger
) -> None:
    """The generic flusher applies the lifecycle events' deltas: the durable record agrees
    with Redis bucket for bucket and version for version (4 partitions, real Redis)."""
    engine = aengine
    skus = skus_in_partitions(4, 4)
    for sku in skus:
        await engine.receive(sku, 10)
        sent = await engine.transfer(sku, 4, "default", "b")
        await engine.receive_transfer(sent.id, 3)
        await engine.damage(sku, 1, "x")
        await engine.write_off(sku, 1, "x", source="damaged")
        await engine.receive(sku, 1, location="b")
        version = (await alevel_of(engine, sku, "b")).version
        await engine.count(sku, 2, version - 1, location="b")
    held = await engine.reserve([(sku, 2) for sku in skus], idempotency_key="sale")
    await engine.commit(held.id)
    await engine.ship(held.id)
    for sku in skus:
        await engine.receive_return(held.id, sku, 2)
        await engine.dispose_returned(sku, 1, "restock")
        await engine.dispose_returned(sku, 1, "write_off")
    await engine.reserve([(skus[0], 3)], idempotency_key="hold")
    await engine.damage(skus[0], 3, "x", force=True)  # an exposure: no deltas, no version
    po = await engine.create_purchase_order(
        [(sku, 5) for sku in skus], supplier="S", expected_date="2026-01-01", idempotency_key="po"
    )
    await engine.receive_purchase_order(po.id, [(skus[0], 7), (skus[1], 2)])
    await engine.close_purchase_order(po.id)
    report = await verify(engine, sqlite_ledger)
    assert report.ok, report.drift
    assert report.checked == 8
    recorded = {(x.sku, x.location): x.version for x in await sqlite_ledger.stock_levels()}
    levels = await engine.availability([(sku, loc) for sku in skus for loc in ("default", "b")])
    assert recorded == {(x.sku, x.location): x.version for x in levels}
    assert (await replay_check(sqlite_ledger)).ok
