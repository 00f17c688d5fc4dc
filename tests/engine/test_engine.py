"""The behaviour suite: every operation of the core engine, on fakeredis, on a real
redis-server and on a real Redis Cluster (4 partitions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from earmark import (
    Engine,
    EngineClosed,
    IdempotencyConflict,
    InsufficientOnHand,
    InsufficientStock,
    InvalidRequest,
    Line,
    NotOwner,
    PurchaseOrderNotFound,
    ReclaimBacklog,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationReleased,
    SkuNotFound,
    SkuStock,
    TransferNotFound,
    WouldOversell,
    limits,
)
from tests.support.backends import Backend, level_of, stream_lengths

Clock = Callable[[float], None]


def levels(engine: Engine, sku: str, location: str = "default") -> tuple[int, int, int, int]:
    s = level_of(engine, sku, location)
    return s.on_hand, s.reserved, s.committed, s.available


def raw_reserved(engine: Engine, sku: str) -> int:
    p = engine.partition_of(sku)
    return int(engine.client.hget(engine.keys.stock(p, sku, "default"), "reserved"))


def events(engine: Engine, sku: str | None = None) -> list[dict[str, str]]:
    found = []
    for p in range(engine.partitions):
        for _, fields in engine.client.xrange(engine.keys.events(p)):
            if sku is None or fields["sku"] == sku:
                found.append(fields)
    return found


# -- stock ----------------------------------------------------------------------------


def test_receive_adds_to_on_hand_and_records_an_event(engine: Engine) -> None:
    level = engine.receive("TEE-M", 10, reference="PO-1", actor="dock", idempotency_key="r1")
    assert (level.on_hand, level.available, level.version) == (10, 10, 1)
    (event,) = events(engine, "TEE-M")
    assert event["type"] == "received"
    assert (event["qty"], event["actor"], event["reason"]) == ("10", "dock", "PO-1")
    assert event["idempotency_key"] == "r1"
    assert int(event["at"]) > 1_700_000_000_000  # server time in ms


def test_locations_are_separate_buckets(engine: Engine) -> None:
    engine.receive("TEE-M", 5, location="berlin")
    engine.receive("TEE-M", 2)
    assert levels(engine, "TEE-M", "berlin") == (5, 0, 0, 5)
    assert levels(engine, "TEE-M") == (2, 0, 0, 2)


def test_stock_of_an_unknown_sku_is_not_found(engine: Engine) -> None:
    with pytest.raises(SkuNotFound):
        engine.stock("NEVER")
    engine.receive("A", 1, location="x")
    with pytest.raises(SkuNotFound):
        engine.stock("A", "default")


def test_stock_of_a_sku_is_the_network_total_as_over_http(engine: Engine) -> None:
    """``stock(sku)`` answers what ``GET /v1/skus/{sku}`` answers: every location summed,
    with each location; ``stock(sku, location)`` the same for that location only."""
    engine.receive("A", 5)
    engine.receive("A", 3, location="x")
    engine.reserve([("A", 2, "x")], idempotency_key="r")
    total = engine.stock("A")
    assert isinstance(total, SkuStock)
    assert (total.on_hand, total.reserved, total.available) == (8, 2, 6)
    assert [level.location for level in total.locations] == ["default", "x"]
    one = engine.stock("A", "x")
    assert (one.on_hand, one.reserved, one.available) == (3, 2, 1)
    assert [(level.location, level.version) for level in one.locations] == [("x", 2)]


def test_adjust_up_and_down(engine: Engine) -> None:
    engine.receive("A", 10)
    assert engine.adjust("A", -3, "cycle count").on_hand == 7
    assert engine.adjust("A", 2, "found in back room").on_hand == 9
    assert [e["type"] for e in events(engine, "A")] == ["received", "adjusted", "adjusted"]


def test_adjust_refuses_a_decrease_below_available_unless_forced(
    engine: Engine, untouched: Callable[[], list[int]]
) -> None:
    engine.receive("A", 5)
    engine.reserve([("A", 4)], idempotency_key="hold")
    before = untouched()
    with pytest.raises(WouldOversell) as refused:
        engine.adjust("A", -2, "broken")
    assert refused.value.details == {"available": 1, "requested": 2}
    assert untouched() == before
    assert levels(engine, "A") == (5, 4, 0, 1)
    forced = engine.adjust("A", -2, "broken", force=True)
    assert (forced.on_hand, forced.available) == (3, -1)
    event = events(engine, "A")[-1]
    assert (event["forced"], event["exposure"]) == ("1", "1")
    with pytest.raises(InsufficientStock):
        engine.reserve([("A", 1)], idempotency_key="after-forced")


def test_an_expired_hold_never_blocks_a_decrease(engine: Engine, clock: Clock) -> None:
    engine.receive("A", 5)
    engine.reserve([("A", 4)], idempotency_key="hold", ttl_seconds=1)
    clock(1.2)
    assert engine.adjust("A", -5, "shrinkage").on_hand == 0
    assert [e["type"] for e in events(engine, "A")][-2:] == ["expired", "adjusted"]


def test_adjust_never_takes_on_hand_below_zero(engine: Engine) -> None:
    engine.receive("A", 2)
    with pytest.raises(InsufficientOnHand):
        engine.adjust("A", -3, "lost", force=True)
    assert levels(engine, "A") == (2, 0, 0, 2)


# -- reservations ---------------------------------------------------------------------


def test_reserve_holds_every_line(engine: Engine) -> None:
    engine.receive("A", 5)
    engine.receive("B", 5, location="store-2")
    held = engine.reserve(
        [Line(sku="A", qty=2), Line(sku="B", qty=3, location="store-2")],
        idempotency_key="cart-1",
        ttl_seconds=60,
        channel="web",
    )
    assert held.status == "held"
    assert held.channel == "web"
    assert {(x.sku, x.location, x.qty) for x in held.lines} == {
        ("A", "default", 2),
        ("B", "store-2", 3),
    }
    assert held.expires_at is not None and held.created_at is not None
    assert 59 <= (held.expires_at - held.created_at).total_seconds() <= 60
    assert levels(engine, "A") == (5, 2, 0, 3)
    assert levels(engine, "B", "store-2") == (5, 3, 0, 2)
    reserved = [e for e in events(engine) if e["type"] == "reserved"]
    assert {(e["sku"], e["qty"], e["reservation"], e["channel"]) for e in reserved} == {
        ("A", "2", held.id, "web"),
        ("B", "3", held.id, "web"),
    }


def test_reserve_is_all_or_nothing_and_names_every_short_line(
    engine: Engine, untouched: Callable[[], list[int]]
) -> None:
    for sku, qty in (("A", 5), ("B", 1), ("C", 1)):
        engine.receive(sku, qty)
    engine.adjust("C", -1, "sold out")  # C exists with 0 units (never stocked: SkuNotFound)
    before = untouched()
    with pytest.raises(InsufficientStock) as refused:
        engine.reserve([("A", 2), ("B", 2), ("C", 1)], idempotency_key="cart")
    short = {(s.sku, s.requested, s.available) for s in refused.value.shortfalls}
    assert short == {("B", 2, 1), ("C", 1, 0)}
    assert levels(engine, "A") == (5, 0, 0, 5)
    assert levels(engine, "B") == (1, 0, 0, 1)
    if engine.partitions == 1:
        assert untouched() == before  # on one partition a refusal writes nothing at all


def test_a_sku_never_received_is_not_found_rather_than_sold_out(
    engine: Engine, untouched: Callable[[], list[int]]
) -> None:
    engine.receive("A", 1)
    engine.receive("B", 1, location="berlin")
    engine.reserve([("A", 1)], idempotency_key="sold")
    before = untouched()
    with pytest.raises(SkuNotFound) as refused:
        engine.reserve([("A", 1), ("NEVER", 2), ("B", 1)], idempotency_key="typo")
    assert refused.value.details == {"lines": [{"sku": "NEVER", "location": "default"}]}
    assert "NEVER@default" in str(refused.value)
    assert untouched() == before
    with pytest.raises(InsufficientStock) as short:  # B exists (at berlin): short, not unknown
        engine.reserve([("A", 1), ("B", 1)], idempotency_key="short")
    assert sorted((s.sku, s.available) for s in short.value.shortfalls) == [("A", 0), ("B", 0)]


def test_commit_moves_a_live_hold_to_committed_and_is_idempotent(engine: Engine) -> None:
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="c")
    committed = engine.commit(held.id)
    assert committed.status == "committed"
    assert committed.committed_at is not None
    assert levels(engine, "A") == (5, 0, 2, 3)
    again = engine.commit(held.id)
    assert again.status == "committed"
    assert levels(engine, "A") == (5, 0, 2, 3)
    assert [e["type"] for e in events(engine, "A")].count("committed") == 1


def test_owner_only_refuses_another_actors_reservation(
    engine: Engine, untouched: Callable[[], list[int]]
) -> None:
    """Asked to (``owner_only``, as HTTP asks for keys without the stock scope), a
    transition by another actor is refused whatever the state; by default anyone may."""
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="own", actor="shop-1")
    before = untouched()
    for transition in (
        lambda: engine.commit(held.id, actor="shop-2", owner_only=True),
        lambda: engine.release(held.id, actor="shop-2", owner_only=True),
        lambda: engine.extend(held.id, 60, actor="shop-2", owner_only=True),
        lambda: engine.ship(held.id, actor="shop-2", owner_only=True),
    ):
        with pytest.raises(NotOwner) as refused:
            transition()
        assert (refused.value.http_status, refused.value.details) == (403, {"id": held.id})
    assert untouched() == before
    assert engine.commit(held.id, actor="shop-1", owner_only=True).status == "committed"
    assert engine.ship(held.id, actor="warehouse").status == "shipped"  # no check asked


def test_release_gives_units_back_once(engine: Engine) -> None:
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="r")
    assert engine.release(held.id).status == "released"
    assert engine.release(held.id).status == "released"
    assert levels(engine, "A") == (5, 0, 0, 5)
    with pytest.raises(ReservationReleased):
        engine.commit(held.id)
    assert engine.get_reservation(held.id).status == "released"


def test_release_of_a_committed_reservation_is_refused(engine: Engine) -> None:
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="r")
    engine.commit(held.id)
    with pytest.raises(ReservationNotHeld) as refused:
        engine.release(held.id)
    assert refused.value.status == "committed"
    assert refused.value.code == "invalid_transition"


def test_ship_takes_committed_units_out_of_on_hand(engine: Engine) -> None:
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="s")
    with pytest.raises(ReservationNotHeld):
        engine.ship(held.id)
    engine.commit(held.id)
    shipped = engine.ship(held.id)
    assert shipped.status == "shipped" and shipped.shipped_at is not None
    assert engine.ship(held.id).status == "shipped"
    assert levels(engine, "A") == (3, 0, 0, 3)
    assert engine.get_reservation(held.id).status == "shipped"


def test_unknown_reservation(engine: Engine) -> None:
    missing = "rsv_" + "0" * 24 + "_0"
    with pytest.raises(ReservationNotFound):
        engine.get_reservation(missing)
    with pytest.raises(ReservationNotFound):
        engine.commit(missing)


NOT_FOUND_IDS = [
    pytest.param(lambda e: e.commit("rsv_nope"), ReservationNotFound, id="commit"),
    pytest.param(lambda e: e.release("rsv_" + "0" * 24 + "_999"), ReservationNotFound,
                 id="release foreign partition"),
    pytest.param(lambda e: e.get_reservation("nope"), ReservationNotFound, id="get reservation"),
    pytest.param(lambda e: e.receive_return("nope", "A", 1), ReservationNotFound, id="return"),
    pytest.param(lambda e: e.get_transfer("trf_nope"), TransferNotFound, id="get transfer"),
    pytest.param(lambda e: e.receive_transfer("nope", 1), TransferNotFound, id="receive transfer"),
    pytest.param(lambda e: e.get_purchase_order("po_x"), PurchaseOrderNotFound, id="get po"),
    pytest.param(lambda e: e.close_purchase_order("nope"), PurchaseOrderNotFound, id="close po"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error"), NOT_FOUND_IDS)
def test_a_malformed_id_is_not_found_as_over_http(
    engine: Engine, call: Callable[[Engine], object], error: type[Exception]
) -> None:
    """An id that cannot be one of ours names nothing: the resource's 404, as HTTP says,
    not a bad request (nothing is written either way)."""
    before = stream_lengths(engine)
    with pytest.raises(error):
        call(engine)
    assert stream_lengths(engine) == before


def test_a_closed_engine_refuses_every_call(engine: Engine) -> None:
    engine.receive("A", 1)
    engine.close()
    with pytest.raises(EngineClosed, match="closed"):
        engine.stock("A")
    with pytest.raises(EngineClosed):
        engine.receive("A", 1)
    engine.close()  # closing twice is harmless


def test_availability_reads_many_skus(engine: Engine) -> None:
    engine.receive("A", 5)
    engine.receive("B", 3, location="x")
    engine.reserve([("A", 1)], idempotency_key="r")
    a, b, unknown = engine.availability(["A", ("B", "x"), "NOPE"])
    assert (a.sku, a.available, a.reserved) == ("A", 4, 1)
    assert (b.location, b.available) == ("x", 3)
    assert (unknown.on_hand, unknown.available) == (0, 0)


# -- expiry -----------------------------------------------------------------------------


def test_an_expired_hold_cannot_be_committed_and_gives_its_units_back(
    engine: Engine, clock: Clock
) -> None:
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="e", ttl_seconds=1)
    clock(1.2)
    assert engine.get_reservation(held.id).status == "expired"
    with pytest.raises(ReservationExpired):
        engine.commit(held.id)
    assert levels(engine, "A") == (5, 0, 0, 5)
    with pytest.raises(ReservationExpired):
        engine.extend(held.id, 60)
    assert engine.release(held.id).status == "expired"


def test_an_expired_hold_never_blocks_a_new_reservation_without_a_sweeper(
    engine: Engine, clock: Clock
) -> None:
    engine.receive("A", 3)
    first = engine.reserve([("A", 3)], idempotency_key="old", ttl_seconds=1)
    with pytest.raises(InsufficientStock):
        engine.reserve([("A", 1)], idempotency_key="too-early")
    clock(1.2)
    assert levels(engine, "A") == (3, 0, 0, 3)  # stops counting at expiry, before reclaim
    assert raw_reserved(engine, "A") == 3
    second = engine.reserve([("A", 3)], idempotency_key="new", ttl_seconds=60)
    assert second.status == "held"
    assert levels(engine, "A") == (3, 3, 0, 0)
    expired = [e for e in events(engine, "A") if e["type"] == "expired"]
    assert [(e["reservation"], e["qty"]) for e in expired] == [(first.id, "3")]
    assert engine.get_reservation(first.id).status == "expired"


def test_reserve_reclaims_a_bounded_number_of_expired_holds(backend: Backend) -> None:
    engine = backend.engine(reclaim_per_line_max=2)
    backend.freeze()
    engine.receive("A", 5)
    for i in range(5):
        engine.reserve([("A", 1)], idempotency_key=f"h{i}", ttl_seconds=1)
    backend.advance(1.2)
    engine.reserve([("A", 2)], idempotency_key="new", ttl_seconds=60)
    # 2 expired holds reclaimed by the reserve, 3 still in the stored bucket ...
    assert raw_reserved(engine, "A") == 5
    # ... yet a hold stops counting at its expiry: reads leave the 3 out.
    assert levels(engine, "A") == (5, 2, 0, 3)
    assert engine.sweep().expired == 5
    assert raw_reserved(engine, "A") == 2
    assert levels(engine, "A") == (5, 2, 0, 3)


def test_a_refusal_is_never_given_while_expired_holds_could_cover_the_cart(
    engine: Engine, clock: Clock
) -> None:
    """More expired holds than one call reclaims per line (64): reserve gives them back in
    further bounded rounds rather than refusing 64/65 while reads say 100 are free."""
    engine.receive("A", 100)
    for i in range(100):
        engine.reserve([("A", 1)], idempotency_key=f"h{i}", ttl_seconds=1)
    clock(1.2)
    assert levels(engine, "A") == (100, 0, 0, 100)
    held = engine.reserve([("A", 65)], idempotency_key="big", ttl_seconds=60)
    assert held.status == "held"
    assert levels(engine, "A") == (100, 65, 0, 35)
    with pytest.raises(InsufficientStock) as refused:  # a true shortfall is still refused
        engine.reserve([("A", 36)], idempotency_key="too-big")
    assert [(s.requested, s.available) for s in refused.value.shortfalls] == [(36, 35)]


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda e: e.adjust("A", -5, "count"), id="adjust"),
        pytest.param(lambda e: e.damage("A", 5, "dropped"), id="damage"),
        pytest.param(lambda e: e.write_off("A", 5, "lost"), id="write-off"),
        pytest.param(lambda e: e.transfer("A", 5, "default", "b"), id="transfer"),
        pytest.param(lambda e: e.count("A", 0, level_of(e, "A").version), id="count"),
    ],
)
def test_decreases_reclaim_in_rounds_too(backend: Backend, write: Callable[[Engine], Any]) -> None:
    """adjust, damage, write-off and transfer share the per-call bound: with 5 expired
    holds and 2 reclaimed per call they used to refuse (would_oversell, insufficient
    stock) a decrease that every unit covers; a count recorded a false exposure."""
    engine = backend.engine(reclaim_per_line_max=2)
    backend.freeze()
    engine.receive("A", 5)
    for i in range(5):
        engine.reserve([("A", 1)], idempotency_key=f"h{i}", ttl_seconds=1)
    backend.advance(1.2)
    write(engine)
    assert raw_reserved(engine, "A") == 0
    assert not [e for e in events(engine, "A") if e["type"] == "oversell_exposure"]


def test_a_reclaim_backlog_past_the_rounds_is_a_retry_not_a_refusal(backend: Backend) -> None:
    """Past RECLAIM_ROUNDS_MAX rounds the engine cannot decide within its bound: it says
    so (503 reclaim_backlog, retry) instead of a false insufficient_stock; the holds it
    gave back stay given back, so the retry decides."""
    engine = backend.engine(reclaim_per_line_max=1)
    backend.freeze()
    holds = limits.RECLAIM_ROUNDS_MAX + 4
    engine.receive("A", holds)
    for i in range(holds):
        engine.reserve([("A", 1)], idempotency_key=f"h{i}", ttl_seconds=1)
    backend.advance(1.2)
    with pytest.raises(ReclaimBacklog) as busy:
        engine.reserve([("A", holds)], idempotency_key="all")
    assert busy.value.http_status == 503
    assert raw_reserved(engine, "A") == 4
    assert engine.reserve([("A", holds)], idempotency_key="all").status == "held"


def test_the_sweeper_expires_overdue_holds_and_leaves_live_ones(
    engine: Engine, clock: Clock
) -> None:
    engine.receive("A", 5)
    short = engine.reserve([("A", 2)], idempotency_key="short", ttl_seconds=1)
    long = engine.reserve([("A", 1)], idempotency_key="long", ttl_seconds=120)
    clock(1.2)
    assert engine.sweep().expired == 1
    assert engine.sweep().expired == 0
    assert levels(engine, "A") == (5, 1, 0, 4)
    assert engine.get_reservation(short.id).status == "expired"
    assert engine.get_reservation(long.id).status == "held"


def test_ttl_seconds_takes_fractions_within_the_bounds_http_documents(engine: Engine) -> None:
    """A TTL is a number of seconds, rounded to the millisecond; the bounds apply to the
    number given (1 to the maximum, as /openapi.json says), not to its rounding."""
    engine.receive("A", 5)
    held = engine.reserve([("A", 1)], idempotency_key="f", ttl_seconds=1.5)
    assert held.expires_at is not None and held.created_at is not None
    assert (held.expires_at - held.created_at).total_seconds() == 1.5
    extended = engine.extend(held.id, 2.25)
    assert extended.expires_at is not None
    for ttl in (0.9996, 86_400.0004):
        with pytest.raises(InvalidRequest, match="ttl_seconds"):
            engine.reserve([("A", 1)], idempotency_key=f"t{ttl}", ttl_seconds=ttl)


def test_extend_moves_the_expiry(engine: Engine, clock: Clock) -> None:
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="x", ttl_seconds=1)
    extended = engine.extend(held.id, 120)
    assert held.expires_at is not None and extended.expires_at is not None
    assert (extended.expires_at - held.expires_at).total_seconds() > 100
    clock(1.2)
    assert engine.sweep().expired == 0
    assert engine.commit(held.id).status == "committed"
    assert levels(engine, "A") == (5, 0, 2, 3)


# -- idempotency --------------------------------------------------------------------------


def test_a_replayed_reserve_returns_the_original_without_holding_again(engine: Engine) -> None:
    engine.receive("A", 5)
    first = engine.reserve([("A", 2)], idempotency_key="k", ttl_seconds=60)
    again = engine.reserve([("A", 2)], idempotency_key="k", ttl_seconds=60)
    assert again.id == first.id
    assert levels(engine, "A") == (5, 2, 0, 3)
    with pytest.raises(IdempotencyConflict):
        engine.reserve([("A", 3)], idempotency_key="k", ttl_seconds=60)
    assert levels(engine, "A") == (5, 2, 0, 3)


def test_a_refusal_is_not_remembered_as_the_answer(engine: Engine) -> None:
    """A refused request wrote nothing, so its key binds nothing: a retry re-evaluates
    (once stock frees it holds), and the key may carry another request."""
    engine.receive("A", 1)
    with pytest.raises(InsufficientStock):
        engine.reserve([("A", 2)], idempotency_key="k")
    engine.receive("A", 5)
    held = engine.reserve([("A", 2)], idempotency_key="k")
    assert held.status == "held" and not held.replayed
    again = engine.reserve([("A", 2)], idempotency_key="k")
    assert again == held and again.replayed  # a success replays exactly
    with pytest.raises(WouldOversell):
        engine.adjust("A", -5, "count", idempotency_key="adj")
    assert engine.adjust("A", 1, "found one", idempotency_key="adj").on_hand == 7


def test_a_replayed_result_says_so_without_changing_its_value(engine: Engine) -> None:
    first = engine.receive("A", 5, idempotency_key="rcv")
    again = engine.receive("A", 5, idempotency_key="rcv")
    assert (first.replayed, again.replayed) == (False, True)
    assert again == first and again.model_dump() == first.model_dump()
    held = engine.reserve([("A", 1)], idempotency_key="r")
    committed = engine.commit(held.id, idempotency_key="c")
    assert engine.commit(held.id, idempotency_key="c").replayed
    assert not committed.replayed and not engine.commit(held.id).replayed  # no key: no replay


def test_idempotency_keys_are_scoped_per_actor(engine: Engine) -> None:
    engine.receive("A", 5)
    one = engine.reserve([("A", 1)], idempotency_key="same", actor="shop-1")
    two = engine.reserve([("A", 2)], idempotency_key="same", actor="shop-2")
    assert one.id != two.id
    assert levels(engine, "A") == (5, 3, 0, 2)


def test_stock_writes_replay_and_conflict(engine: Engine) -> None:
    engine.receive("A", 5, idempotency_key="rcv")
    assert engine.receive("A", 5, idempotency_key="rcv").on_hand == 5
    with pytest.raises(IdempotencyConflict):
        engine.receive("A", 6, idempotency_key="rcv")
    engine.adjust("A", -1, "count", idempotency_key="adj")
    assert engine.adjust("A", -1, "count", idempotency_key="adj").on_hand == 4
    with pytest.raises(IdempotencyConflict):
        engine.adjust("A", -2, "count", idempotency_key="adj")
    assert levels(engine, "A") == (4, 0, 0, 4)
    assert len(events(engine, "A")) == 2


def test_reservation_writes_replay_and_conflict(engine: Engine) -> None:
    engine.receive("A", 5)
    one = engine.reserve([("A", 1)], idempotency_key="r1")
    two = engine.reserve([("A", 1)], idempotency_key="r2")
    first = engine.extend(one.id, 100, idempotency_key="ext")
    replayed = engine.extend(one.id, 100, idempotency_key="ext")
    assert replayed.expires_at == first.expires_at
    with pytest.raises(IdempotencyConflict):
        engine.extend(two.id, 100, idempotency_key="ext")
    engine.commit(one.id, idempotency_key="op")
    with pytest.raises(IdempotencyConflict):
        engine.release(two.id, idempotency_key="op")
    assert engine.get_reservation(two.id).status == "held"


def test_every_event_carries_its_context(engine: Engine) -> None:
    engine.receive("A", 5, actor="dock")
    held = engine.reserve([("A", 2)], idempotency_key="ctx", channel="app", actor="checkout")
    engine.commit(held.id, actor="checkout", idempotency_key="ctx-commit")
    engine.ship(held.id, actor="warehouse")
    kinds = {e["type"]: e for e in events(engine, "A")}
    assert set(kinds) == {"received", "reserved", "committed", "shipped"}
    commit = kinds["committed"]
    assert (commit["actor"], commit["channel"], commit["reservation"]) == (
        "checkout",
        "app",
        held.id,
    )
    assert commit["idempotency_key"] == "ctx-commit"
    assert kinds["shipped"]["deltas"] in (
        '{"committed":-2,"on_hand":-2}',
        '{"on_hand":-2,"committed":-2}',
    )


# -- bad input ------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[str, Callable[[Engine], object]]] = [
    ("empty sku", lambda e: e.receive("", 1)),
    ("sku charset", lambda e: e.receive("TEE M", 1)),
    ("sku trailing newline", lambda e: e.receive("TEE\n", 1)),
    ("sku too long", lambda e: e.receive("A" * 65, 1)),
    ("zero qty", lambda e: e.receive("A", 0)),
    ("negative qty", lambda e: e.receive("A", -1)),
    ("huge qty", lambda e: e.receive("A", 10**9)),
    ("bool qty", lambda e: e.receive("A", True)),
    ("float qty", lambda e: e.receive("A", 1.5)),  # type: ignore[arg-type]
    ("bad location", lambda e: e.receive("A", 1, location="a:b")),
    ("zero delta", lambda e: e.adjust("A", 0, "x")),
    ("no reason", lambda e: e.adjust("A", 1, "")),
    ("empty cart", lambda e: e.reserve([], idempotency_key="k")),
    ("oversized cart", lambda e: e.reserve([(f"S{i}", 1) for i in range(51)], idempotency_key="k")),
    ("duplicate line", lambda e: e.reserve([("A", 1), ("A", 2)], idempotency_key="k")),
    ("no idempotency key", lambda e: e.reserve([("A", 1)], idempotency_key=None)),  # type: ignore[arg-type]
    ("ttl too short", lambda e: e.reserve([("A", 1)], idempotency_key="k", ttl_seconds=0.5)),
    ("ttl too long", lambda e: e.reserve([("A", 1)], idempotency_key="k", ttl_seconds=10**6)),
    ("ttl nan", lambda e: e.reserve([("A", 1)], idempotency_key="k", ttl_seconds=float("nan"))),
    # A malformed or foreign id is not found, not bad input: see
    # test_a_malformed_id_is_not_found_as_over_http.
    ("extend ttl", lambda e: e.extend("rsv_" + "0" * 24 + "_0", 0)),
    ("idempotency key size", lambda e: e.receive("A", 1, idempotency_key="k" * 256)),
    ("channel control char", lambda e: e.reserve([("A", 1)], idempotency_key="k", channel="\n")),
    ("too many skus", lambda e: e.availability([f"S{i}" for i in range(1001)])),
]


@pytest.mark.parametrize(("name", "request_"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_refused_and_writes_nothing(
    name: str, request_: Callable[[Engine], object], engine: Engine
) -> None:
    engine.receive("A", 5)
    before = stream_lengths(engine), level_of(engine, "A")
    with pytest.raises(InvalidRequest) as refused:
        request_(engine)
    assert refused.value.code == "invalid_request"
    assert str(refused.value)
    assert (stream_lengths(engine), level_of(engine, "A")) == before
