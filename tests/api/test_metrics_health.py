"""``/metrics`` says whether each store is up, counts sweeper failures and idempotent
replays apart from new writes, and reports what it cannot measure as NaN, not 0."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import fakeredis
from prometheus_client.parser import text_string_to_metric_families

from earmark import AsyncEngine, EngineConfig
from earmark.api import metrics, responses
from earmark.api.metrics import Metrics
from earmark.engine.sweeper import sweep_once
from earmark.models import DropFigures, DropSkuFigures
from tests.support.api import Api, make_settings, open_api
from tests.support.backends import fresh_prefix


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


async def test_up_gauges_while_both_stores_answer(api: Api) -> None:
    text = (await api.anon.get("/metrics")).text
    assert value(text, "earmark_redis_up") == 1
    assert value(text, "earmark_database_up") == 1
    assert value(text, "earmark_fenced_partitions") == 0
    assert value(text, "earmark_durable_events_waiting") == 0


async def test_replays_are_counted_apart_from_new_writes(api: Api) -> None:
    key = {"Idempotency-Key": "receipt-1"}
    for _ in range(3):  # one write, then two replays of it
        response = await api.admin.post("/v1/skus/A/receipts", json={"qty": 2}, headers=key)
        assert response.status_code in (200, 201)
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    text = (await api.anon.get("/metrics")).text
    route = "/v1/skus/{sku}/receipts"
    assert value(text, "earmark_writes_total", route=route, kind="new") == 2
    assert value(text, "earmark_writes_total", route=route, kind="replayed") == 2
    assert value(text, "earmark_durable_events_waiting") == 2


async def test_a_fence_shows(api: Api) -> None:
    await api.engine.fence("test: Redis lost its data")
    assert value((await api.anon.get("/metrics")).text, "earmark_fenced_partitions") == 1


async def test_while_redis_is_down_it_is_0_and_the_lag_is_unknown() -> None:
    server = fakeredis.FakeServer()
    engine = AsyncEngine.embedded(EngineConfig(prefix=fresh_prefix()), server=server)
    async with open_api(make_settings(), engine=engine) as api:

        async def lag_source() -> float:
            return 0.0  # a record that answers; Redis decides that the lag is unknown

        api.app.state.lag_source = lag_source
        assert value((await api.anon.get("/metrics")).text, "earmark_flusher_lag_seconds") == 0
        server.connected = False
        try:
            response = await api.anon.get("/metrics")
        finally:
            server.connected = True
        assert response.status_code == 200
        text = response.text
        assert value(text, "earmark_redis_up") == 0
        assert math.isnan(value(text, "earmark_flusher_lag_seconds"))
        assert math.isnan(value(text, "earmark_durable_events_waiting"))
        assert math.isnan(value(text, "earmark_fenced_partitions"))
        assert value(text, "earmark_database_up") == 1


async def test_a_broken_lag_source_reads_as_unknown(api: Api) -> None:
    async def broken() -> float:
        raise RuntimeError("ledger unreachable")

    api.app.state.lag_source = broken
    text = (await api.anon.get("/metrics")).text
    assert math.isnan(value(text, "earmark_flusher_lag_seconds"))


async def test_sweeper_failures_are_counted() -> None:
    server = fakeredis.FakeServer()
    engine = AsyncEngine.embedded(EngineConfig(prefix=fresh_prefix()), server=server)
    await engine.start()
    counted = Metrics()
    try:
        assert await sweep_once(engine, counted.swept, counted.sweep_failed) is not None
        server.connected = False
        assert await sweep_once(engine, counted.swept, counted.sweep_failed) is None
    finally:
        server.connected = True
        await engine.close()
    text = counted.render().decode()
    assert value(text, "earmark_sweeps_total", result="ok") == 1
    assert value(text, "earmark_sweeps_total", result="failed") == 1


def test_the_replay_header_is_the_one_responses_send() -> None:
    assert responses.REPLAYED_HEADER.lower().encode() == metrics.REPLAYED


async def test_per_drop_gauges_after_reserving_in_a_drop(api: Api) -> None:
    now = datetime.now(UTC)
    for sku in ("TEE", "CAP", "LATER"):
        await api.admin.post(f"/v1/skus/{sku}/receipts", json={"qty": 10})
    drops = [
        ("launch", ["TEE", "CAP"], now - timedelta(minutes=1)),
        ("soon", ["LATER"], now + timedelta(hours=1)),
    ]
    for drop_id, skus, opens in drops:
        body = {"id": drop_id, "skus": skus, "opens_at": opens.isoformat()}
        made = await api.admin.post("/v1/drops", json=body)
        assert made.status_code == 201, made.text
    for qty, customer in ((2, "ann"), (3, "bob")):
        body = {"lines": [{"sku": "TEE", "qty": qty}], "customer": customer}
        held = await api.reserver.post("/v1/reservations", json=body)
        assert held.status_code == 201, held.text
    sold = (await api.reserver.post("/v1/reservations", json={
        "lines": [{"sku": "CAP", "qty": 1}], "customer": "cat"})).json()["id"]  # fmt: skip
    assert (await api.reserver.post(f"/v1/reservations/{sold}/commit")).status_code == 200

    found = samples((await api.anon.get("/metrics")).text)
    assert found[("earmark_drop_open", (("drop", "launch"),))] == 1
    assert found[("earmark_drop_held", (("drop", "launch"),))] == 5
    assert found[("earmark_drop_sold", (("drop", "launch"),))] == 1
    assert found[("earmark_drop_sku_held", (("drop", "launch"), ("sku", "TEE")))] == 5
    assert found[("earmark_drop_sku_sold", (("drop", "launch"), ("sku", "CAP")))] == 1
    assert found[("earmark_drop_open", (("drop", "soon"),))] == 0
    # Per-SKU series only for an open drop's SKUs, none for other SKUs.
    per_sku = {labels for name, labels in found if name.startswith("earmark_drop_sku_")}
    assert per_sku == {(("drop", "launch"), ("sku", s)) for s in ("TEE", "CAP")}


async def test_no_drop_series_while_redis_is_down() -> None:
    metrics = Metrics()
    metrics.set_drops([DropFigures(id="d", open=True, sold=1, held=2,
                                   skus=(DropSkuFigures(sku="T", sold=1, held=2),))])  # fmt: skip
    assert value(metrics.render().decode(), "earmark_drop_sku_held", drop="d", sku="T") == 2
    metrics.set_drops(None)  # stale figures would look like a quiet drop
    assert not [n for n, _ in samples(metrics.render().decode()) if n.startswith("earmark_drop")]
