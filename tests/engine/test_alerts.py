"""Reorder points and low-stock alerts (lua/includes/alerts.lua): the check runs inside
every write script that changes availability, fires one ``stock_low`` per crossing and
re-arms only above ``rearm_above``; on fakeredis, a real redis-server and a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from earmark import AsyncEngine, Engine, EngineConfig
from earmark.errors import InvalidReorderPoint, SkuNotFound
from tests.support.backends import Backend, fresh_prefix


def low_events(engine: Engine, sku: str, kind: str = "stock_low") -> list[dict[str, Any]]:
    found = []
    p = engine.partition_of(sku)
    for _, raw in engine.client.xrange(engine.keys.events(p)):
        fields = dict(raw)
        if fields["type"] == kind and fields["sku"] == sku:
            fields["deltas"] = orjson.loads(fields["deltas"]) or {}
            found.append(fields)
    return found


def test_fires_once_per_crossing_and_rearms_above(engine: Engine) -> None:
    engine.receive("A", 20)
    setting = engine.set_reorder("A", 5, 10, lead_time_days=7)
    assert (setting.reorder_point, setting.rearm_above, setting.low) == (5, 10, False)
    engine.reserve([("A", 14)], idempotency_key="r1")  # available 6: above the point
    assert low_events(engine, "A") == []
    engine.reserve([("A", 1)], idempotency_key="r2")  # 5: at the point, fires
    engine.reserve([("A", 2)], idempotency_key="r3")  # 3: still low, silent
    (low,) = low_events(engine, "A")
    assert low["deltas"] == {}
    assert (low["available"], low["on_hand"], low["reorder_point"]) == ("5", "20", "5")
    assert (low["demand_24h"], low["days_of_cover"], low["lead_time_days"]) == ("15", "0.33", "7")
    engine.receive("A", 7)  # available 10: not above rearm_above
    assert low_events(engine, "A", "stock_rearmed") == []
    (alert,) = engine.alerts()
    assert (alert.sku, alert.available, alert.reorder_point) == ("A", 10, 5)
    engine.receive("A", 1)  # 11 > 10: re-armed
    assert len(low_events(engine, "A", "stock_rearmed")) == 1
    assert engine.alerts() == []
    engine.damage("A", 6, "crushed")  # 5 again: a second crossing, a second event
    assert len(low_events(engine, "A")) == 2


def test_setting_on_a_low_sku_fires_at_once(engine: Engine) -> None:
    engine.receive("B", 3)
    setting = engine.set_reorder("B", 5, 8)
    assert setting.low and setting.low_since is not None
    assert len(low_events(engine, "B")) == 1
    assert [a.sku for a in engine.alerts()] == ["B"]


def test_reorder_settings_read_the_point_and_alert_state_per_location(engine: Engine) -> None:
    with pytest.raises(SkuNotFound):
        engine.reorder_settings("R")
    engine.receive("R", 10)
    engine.receive("R", 10, location="east")
    engine.receive("R", 10, location="west")
    assert engine.reorder_settings("R") == []  # stocked, no point anywhere
    engine.set_reorder("R", 3, 6, location="east", lead_time_days=5)
    engine.set_reorder("R", 4, 9)
    engine.damage("R", 7, "crushed")  # default: available 3, at or below 4: low
    default, east = engine.reorder_settings("R")  # west has none: left out
    assert (default.location, default.reorder_point, default.rearm_above) == ("default", 4, 9)
    assert default.low and default.low_since is not None
    assert (east.location, east.reorder_point, east.lead_time_days) == ("east", 3, 5)
    assert not east.low and east.low_since is None
    engine.receive("R", 7)  # default: 10 > 9, re-armed
    assert [s.low for s in engine.reorder_settings("R")] == [False, False]


@pytest.mark.parametrize(
    ("reorder_point", "rearm_above", "lead", "field"),
    [
        (5, 5, None, "rearm_above"),
        (5, 3, None, "rearm_above"),
        (-1, 3, None, "reorder_point"),
        ("5", 8, None, "reorder_point"),
        (5, 8, -1, "lead_time_days"),
        (5, 8, True, "lead_time_days"),
    ],
)
def test_bad_settings_are_refused_and_write_nothing(
    engine: Engine,
    untouched: Callable[[], Any],
    reorder_point: Any,
    rearm_above: Any,
    lead: Any,
    field: str,
) -> None:
    engine.receive("C", 3)
    before = untouched()
    with pytest.raises(InvalidReorderPoint) as refused:
        engine.set_reorder("C", reorder_point, rearm_above, lead_time_days=lead)
    assert refused.value.code == "invalid_reorder_point"
    assert refused.value.details["field"] == field
    assert untouched() == before


# Each path that lowers availability, from available 10 with reorder point 5, to 4.
def _lower_by(name: str) -> Callable[[Engine], None]:
    def reserve(e: Engine) -> None:
        e.reserve([("P", 6)], idempotency_key="lower")

    paths: dict[str, Callable[[Engine], object]] = {
        "reserve": reserve,
        "adjust": lambda e: e.adjust("P", -6, "shrinkage"),
        "damage": lambda e: e.damage("P", 6, "wet"),
        "write_off": lambda e: e.write_off("P", 6, "lost"),
        "transfer": lambda e: e.transfer("P", 6, "default", "far"),
        "count": lambda e: e.count("P", 4, e.stock("P", "default").locations[0].version),
    }
    chosen = paths[name]

    def run(engine: Engine) -> None:
        chosen(engine)

    return run


@pytest.mark.parametrize("path", ["reserve", "adjust", "damage", "write_off", "transfer", "count"])
def test_every_lowering_write_path_fires(engine: Engine, path: str) -> None:
    engine.receive("P", 10)
    engine.set_reorder("P", 5, 8)
    _lower_by(path)(engine)
    (low,) = low_events(engine, "P")
    assert low["available"] == "4"
    assert [a.sku for a in engine.alerts()] == ["P"]


def _raise_path(engine: Engine, path: str) -> None:
    """From available 4 (low, reorder point 5, rearm above 8), to 10."""
    if path == "receive":
        engine.receive("R", 6)
    elif path == "adjust":
        engine.adjust("R", 6, "found")
    elif path == "release":
        held = engine.reserve([("R", 1)], idempotency_key="x")  # 3
        engine.receive("R", 5)  # 8: not above rearm_above
        assert low_events(engine, "R", "stock_rearmed") == []
        engine.release(held.id)  # 9: the release re-arms
    elif path == "receive_transfer":
        sent = engine.transfer("R", 6, "far", "default")
        engine.receive_transfer(sent.id, 6)
    elif path == "receive_purchase_order":
        po = engine.create_purchase_order(
            [("R", 6)], supplier="ACME", expected_date="2026-03-01", idempotency_key="po"
        )
        engine.receive_purchase_order(po.id, [("R", 6)])
    elif path == "return_restock":
        sold = engine.reserve([("R", 1)], idempotency_key="sold")
        engine.commit(sold.id)
        engine.ship(sold.id)
        engine.receive_return(sold.id, "R", 1)
        engine.dispose_returned("R", 1, "restock")
        engine.receive("R", 6)


@pytest.mark.parametrize(
    "path",
    [
        "receive",
        "adjust",
        "release",
        "receive_transfer",
        "receive_purchase_order",
        "return_restock",
    ],
)
def test_every_raising_write_path_rearms(engine: Engine, path: str) -> None:
    engine.receive("R", 10)
    engine.receive("R", 6, location="far")
    engine.set_reorder("R", 5, 8)
    engine.adjust("R", -6, "shrinkage")
    assert len(low_events(engine, "R")) == 1
    _raise_path(engine, path)
    assert len(low_events(engine, "R", "stock_rearmed")) == 1
    assert engine.alerts() == []


def test_commit_and_ship_do_not_change_availability(engine: Engine) -> None:
    engine.receive("S", 10)
    engine.set_reorder("S", 5, 8)
    held = engine.reserve([("S", 4)], idempotency_key="s")  # 6
    engine.commit(held.id)
    engine.ship(held.id)
    assert low_events(engine, "S") == [] and engine.alerts() == []


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_exactly_once_under_300_concurrent_reserves(backend: Backend) -> None:
    """300 concurrent reserves of one unit each from 400, point 150: the crossing from
    151 to 150 happens once, so exactly one event, whatever the interleaving."""
    prefix = fresh_prefix()
    setup = backend.engine(prefix=prefix)
    setup.receive("HOT", 400)
    setup.set_reorder("HOT", 150, 200)

    async def storm() -> int:
        engine = AsyncEngine.from_url(backend.url(), EngineConfig(prefix=prefix))
        await engine.start()
        try:
            held = await asyncio.gather(
                *(engine.reserve([("HOT", 1)], idempotency_key=f"k{i}") for i in range(300))
            )
            return len(held)
        finally:
            await engine.close()

    assert asyncio.run(storm()) == 300
    assert len(low_events(setup, "HOT")) == 1
    level = setup.stock("HOT", "default").locations[0]
    assert level.available == 100
    (alert,) = setup.alerts()
    assert alert.available == 100
    setup.receive("HOT", 100)  # 200: not above 200
    assert low_events(setup, "HOT", "stock_rearmed") == []
    setup.receive("HOT", 1)
    assert len(low_events(setup, "HOT", "stock_rearmed")) == 1
