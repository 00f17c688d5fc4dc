"""Channels (docs/channels.md): buffer rules (a default in every partition, SKU
overrides), the channel's view in reads and in the reserve script, allocations fenced for
one channel, the ledger events of each change, and bad input refused with nothing
written; on fakeredis, a real redis-server and a real Redis Cluster (4 partitions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark import (
    AllocationShort,
    ChannelRule,
    Engine,
    InsufficientStock,
    InvalidChannelRule,
    InvalidRequest,
    Line,
    SkuNotFound,
    limits,
)
from earmark.engine.config import EngineConfig
from earmark.engine.ops.channels import channel_view, shared_view
from tests.support.backends import fresh_prefix, level_of


def events_of(engine: Engine, sku: str, kind: str) -> list[dict[str, Any]]:
    p = engine.partition_of(sku)
    return [f for _, f in engine.client.xrange(engine.keys.events(p)) if f["type"] == kind]


def test_a_channel_default_is_in_every_partition_and_an_override_wins(engine: Engine) -> None:
    engine.receive("TEE", 1)
    settings_ = engine.set_channel("marketplace", buffer_units=2, buffer_percent=10, floor=1)
    assert settings_.default == ChannelRule(buffer_units=2, buffer_percent=10, floor=1)
    for p in range(engine.partitions):
        assert engine.client.hget(engine.keys.channel(p, "marketplace"), "*") == "2:10:1"
    override = engine.set_channel_sku("marketplace", "TEE", buffer_units=5)
    assert override.rule == ChannelRule(buffer_units=5)
    read = engine.channel("marketplace")
    assert read.skus == {"TEE": ChannelRule(buffer_units=5)}
    assert read.default == settings_.default
    removed = engine.remove_channel_sku("marketplace", "TEE")
    assert removed.removed and removed.rule is None
    assert not engine.remove_channel_sku("marketplace", "TEE").removed
    assert engine.channel("marketplace").skus == {}
    # every rule change is an event with its actor, moving no bucket
    p = engine.partition_of("TEE")
    kinds = [
        (f["type"], f["scope"], f["channel"], f["actor"], orjson.loads(f["deltas"]) or {})
        for _, f in engine.client.xrange(engine.keys.events(p))
        if f["type"].startswith("channel_")
    ]
    assert kinds == [
        ("channel_set", "default", "marketplace", "library", {}),
        ("channel_set", "sku", "marketplace", "library", {}),
        ("channel_removed", "sku", "marketplace", "library", {}),
        ("channel_removed", "sku", "marketplace", "library", {}),
    ]


def test_the_reserve_script_refuses_what_the_channel_may_not_see(engine: Engine) -> None:
    engine.receive("TEE", 20)
    engine.set_channel("marketplace", buffer_units=3, buffer_percent=25)
    # 20 available: the buffer is max(3, ceil(20 * 25%)) = 5, so marketplace sees 15
    view = engine.channel_stock("marketplace", "TEE")
    assert (view.available, view.unbuffered_available, view.channel) == (15, 20, "marketplace")
    with pytest.raises(InsufficientStock) as refused:
        engine.reserve([("TEE", 16)], idempotency_key="m1", channel="marketplace")
    assert refused.value.shortfalls[0].available == 15
    assert level_of(engine, "TEE").reserved == 0
    # other channels, and none, still sell the buffered units
    engine.reserve([("TEE", 16)], idempotency_key="w1", channel="web")
    engine.reserve([("TEE", 1)], idempotency_key="n1")
    # 3 left: marketplace sees max(0, 3 - max(3, 1)) = 0
    with pytest.raises(InsufficientStock):
        engine.reserve([("TEE", 1)], idempotency_key="m2", channel="marketplace")
    engine.reserve([("TEE", 3)], idempotency_key="w2", channel="web")


def test_a_floor_and_a_sku_override(engine: Engine) -> None:
    engine.receive("TEE", 4)
    engine.receive("CAP", 4)
    engine.set_channel("marketplace", floor=4)
    engine.set_channel_sku("marketplace", "CAP", buffer_units=1)
    with pytest.raises(InsufficientStock):
        engine.reserve([("TEE", 1)], idempotency_key="m1", channel="marketplace")
    held = engine.reserve([("CAP", 3)], idempotency_key="m2", channel="marketplace")
    assert held.channel == "marketplace"
    with pytest.raises(InsufficientStock):
        engine.reserve([("CAP", 1)], idempotency_key="m3", channel="marketplace")


def test_an_allocation_is_the_channels_only(engine: Engine) -> None:
    engine.receive("TEE", 10)
    moved = engine.allocate("marketplace", "TEE", qty=6, idempotency_key="a1")
    assert (moved.allocated, moved.moved) == (6, 6)
    assert level_of(engine, "TEE").available == 4
    # another channel, and no channel, see the fenced units as unavailable
    with pytest.raises(InsufficientStock):
        engine.reserve([("TEE", 5)], idempotency_key="w1", channel="web")
    with pytest.raises(InsufficientStock):
        engine.reserve([("TEE", 5)], idempotency_key="n1")
    view = engine.channel_stock("marketplace", "TEE")
    assert (view.available, view.allocated, view.unbuffered_available) == (10, 6, 4)
    # the channel draws its allocation down first; the hold is an ordinary one
    held = engine.reserve([("TEE", 8)], idempotency_key="m1", channel="marketplace")
    assert level_of(engine, "TEE").reserved == 8
    assert engine.channel_stock("marketplace", "TEE").allocated == 0
    (drawn,) = [f for f in events_of(engine, "TEE", "reserved") if f["channel"] == "marketplace"]
    assert orjson.loads(drawn["deltas"]) == {"reserved": 2}
    assert (drawn["allocation_drawn"], drawn["allocation"]) == ("6", "0")
    # a release gives the units to the shared pool
    engine.release(held.id, idempotency_key="r1")
    assert level_of(engine, "TEE").available == 10


def test_an_allocation_goes_back_with_a_negative_qty_or_all_at_once(engine: Engine) -> None:
    engine.receive("TEE", 10)
    engine.allocate("marketplace", "TEE", qty=6)
    back = engine.allocate("marketplace", "TEE", qty=-2, idempotency_key="b1")
    assert (back.allocated, back.moved, level_of(engine, "TEE").available) == (4, -2, 6)
    with pytest.raises(AllocationShort) as short:
        engine.allocate("marketplace", "TEE", qty=-5)
    assert short.value.details == {"channel": "marketplace", "allocated": 4, "requested": 5}
    gone = engine.deallocate("marketplace", "TEE", idempotency_key="d1")
    assert (gone.allocated, gone.moved, level_of(engine, "TEE").available) == (0, -4, 10)
    again = engine.deallocate("marketplace", "TEE", idempotency_key="d2")
    assert (again.allocated, again.moved) == (0, 0)
    moves = [(f["qty"], orjson.loads(f["deltas"])) for f in events_of(engine, "TEE", "allocated")]
    assert moves == [
        ("6", {"reserved": 6}),
        ("2", {"reserved": -2}),
        ("4", {"reserved": -4}),
    ]


def test_allocation_moves_are_idempotent(engine: Engine) -> None:
    engine.receive("TEE", 10)
    first = engine.allocate("marketplace", "TEE", qty=3, idempotency_key="k")
    second = engine.allocate("marketplace", "TEE", qty=3, idempotency_key="k")
    assert second == first and second.replayed
    assert level_of(engine, "TEE").reserved == 3
    assert len(events_of(engine, "TEE", "allocated")) == 1
    one = engine.set_channel("marketplace", buffer_units=1, idempotency_key="s")
    two = engine.set_channel("marketplace", buffer_units=1, idempotency_key="s")
    assert two == one and two.replayed


def test_more_than_available_or_an_unknown_sku_is_refused(
    engine: Engine, untouched: Callable[[], Any]
) -> None:
    engine.receive("TEE", 3)
    before = untouched()
    with pytest.raises(InsufficientStock):
        engine.allocate("marketplace", "TEE", qty=4)
    with pytest.raises(SkuNotFound) as unknown:
        engine.allocate("marketplace", "NOPE", qty=1)
    assert unknown.value.details == {"sku": "NOPE", "location": "default"}
    assert str(unknown.value) == "no stock record for NOPE at default"
    with pytest.raises(SkuNotFound) as never:
        engine.set_channel_sku("marketplace", "NOPE", buffer_units=1)
    assert str(never.value) == "no stock record for NOPE at any location"
    with pytest.raises(SkuNotFound):
        engine.channel_stock("marketplace", "NOPE")
    assert untouched() == before
    assert level_of(engine, "TEE").reserved == 0
    assert engine.channel("marketplace").skus == {}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda e: e.set_channel("m", buffer_units=-1), "buffer_units"),
        (lambda e: e.set_channel("m", buffer_percent=101), "buffer_percent"),
        (lambda e: e.set_channel("m", floor=-3), "floor"),
        (lambda e: e.set_channel("m", buffer_percent=2.5), "buffer_percent"),
        (
            lambda e: e.set_channel_sku("m", "TEE", floor=limits.CHANNEL_BUFFER_UNITS_MAX + 1),
            "floor",
        ),
        (lambda e: e.allocate("m", "TEE", qty=0), "qty"),
    ],
)
def test_a_bad_rule_is_refused_and_writes_nothing(
    engine: Engine, untouched: Callable[[], Any], call: Callable[[Engine], Any], field: str
) -> None:
    before = untouched()
    with pytest.raises(InvalidChannelRule) as refused:
        call(engine)
    assert refused.value.details["field"] == field
    assert untouched() == before
    assert engine.channel("m").default is None


def test_bad_names_are_refused(engine: Engine, untouched: Callable[[], Any]) -> None:
    before = untouched()
    with pytest.raises(InvalidRequest):
        engine.set_channel("a b")
    with pytest.raises(InvalidRequest):
        engine.set_channel_sku("m", "bad sku")
    with pytest.raises(InvalidRequest):
        engine.allocate("m", "TEE", qty=limits.QTY_MAX + 1)
    assert untouched() == before


# -- the formula against a plain model -----------------------------------------------------


def model_view(free: int, units: int, percent: int, floor: int, allocated: int) -> int:
    """The issue's words, as plainly as they go."""
    shared = max(free, 0)
    if shared <= floor:
        seen = 0
    else:
        buffer = max(units, -(-shared * percent // 100))
        seen = max(0, shared - buffer)
    return seen + max(0, min(allocated, allocated + free))


@given(
    free=st.integers(-50, 10_000),
    units=st.integers(0, 500),
    percent=st.integers(0, 100),
    floor=st.integers(0, 500),
    allocated=st.integers(0, 200),
)
def test_the_view_formula_matches_the_model(
    free: int, units: int, percent: int, floor: int, allocated: int
) -> None:
    rule = ChannelRule(buffer_units=units, buffer_percent=percent, floor=floor)
    assert channel_view(rule, free, allocated) == model_view(free, units, percent, floor, allocated)
    assert shared_view(None, free) == max(free, 0)


@settings(max_examples=25, deadline=None)
@given(
    on_hand=st.integers(1, 300),
    units=st.integers(0, 50),
    percent=st.integers(0, 100),
    floor=st.integers(0, 50),
    allocated=st.integers(0, 40),
    qty=st.integers(1, 400),
)
def test_the_reserve_script_decides_as_the_model(
    on_hand: int,
    units: int,
    percent: int,
    floor: int,
    allocated: int,
    qty: int,
) -> None:
    """The Lua view (the reserve's decision) and the read agree with the model."""
    with Engine.embedded(EngineConfig(prefix=fresh_prefix())) as engine:
        scenario(engine, on_hand, units, percent, floor, allocated, qty)


def scenario(
    engine: Engine, on_hand: int, units: int, percent: int, floor: int, allocated: int, qty: int
) -> None:
    engine.receive("TEE", on_hand)
    fenced = min(allocated, on_hand)
    if fenced:
        engine.allocate("m", "TEE", qty=fenced)
    engine.set_channel("m", buffer_units=units, buffer_percent=percent, floor=floor)
    expected = model_view(on_hand - fenced, units, percent, floor, fenced)
    assert engine.channel_stock("m", "TEE").available == expected
    if qty <= expected:
        engine.reserve([("TEE", qty)], idempotency_key="r", channel="m")
        assert level_of(engine, "TEE").reserved == max(qty, fenced)
    else:
        with pytest.raises(InsufficientStock) as refused:
            engine.reserve([("TEE", qty)], idempotency_key="r", channel="m")
        assert refused.value.shortfalls[0].available == expected


# -- the cost on the hot path ----------------------------------------------------------------


def commands_of(engine: Engine, run: Callable[[], Any]) -> dict[str, int]:
    """The Redis commands ``run`` made (scripts' own calls included), from INFO."""
    engine.client.config_resetstat()
    run()
    stats = engine.client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


@pytest.mark.redis_server
def test_a_channel_costs_one_hmget_and_no_channel_costs_nothing(redis_server: Any) -> None:
    """A reserve with a channel makes the same commands as one without, plus one HMGET
    (its rules); a reserve with no channel sends no channel key."""
    engine = Engine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix())).start()
    try:
        engine.receive("TEE", 10)
        engine.set_channel("market", buffer_units=1)
        engine.reserve([("TEE", 1)], idempotency_key="warm")  # scripts loaded, ring slot set
        plain = commands_of(engine, lambda: engine.reserve([("TEE", 1)], idempotency_key="plain"))
        channel = commands_of(
            engine,
            lambda: engine.reserve([("TEE", 1)], idempotency_key="ch", channel="market"),
        )
        expected = dict(plain)
        expected["hmget"] = expected.get("hmget", 0) + 1
        assert channel == expected
        rid, lines = f"rsv_{'0' * 24}_0", [Line(sku="TEE", qty=1)]
        bare = engine._reserve_call(rid, 0, lines, "f" * 32, 1000, "", "a", "k")
        assert len(bare.keys) == 6 + 4 + 1  # the layout, one line, the drop index
        market = engine._reserve_call(rid, 0, lines, "f" * 32, 1000, "market", "a", "k")
        assert market.keys == [*bare.keys[:-1], engine.keys.channel(0, "market"), bare.keys[-1]]
    finally:
        engine.close()
