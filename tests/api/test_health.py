"""Liveness, readiness (with the pluggable lag source) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from tests.support.api import Api, make_settings, open_api, problem_of


async def test_healthz(api: Api) -> None:
    response = await api.anon.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_checks_redis_and_generation_markers(api: Api) -> None:
    response = await api.anon.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {
        "redis",
        "generations",
        "fence",
        "database",
        "backlog",
        "flusher_lag",
    }
    assert body["checks"]["database"] == {"ok": True, "detail": "", "required": False}
    assert body["checks"]["flusher_lag"]["ok"] is True


async def test_readyz_fails_while_events_wait_longer_than_the_lag_bound() -> None:
    """The durable record's own lag source: the age of the oldest event no flusher
    recorded (the fixture runs none) against EARMARK_FLUSHER_LAG_SECONDS_MAX."""
    async with open_api(make_settings(flusher_lag_seconds_max=0.05), keys=False) as api:
        assert (await api.anon.get("/readyz")).status_code == 200  # nothing waits yet
        await api.anon.post("/v1/skus/A/receipts", json={"qty": 1})
        await asyncio.sleep(0.1)
        body = problem_of(await api.anon.get("/readyz"), 503, "not_ready")
        assert body["checks"]["flusher_lag"]["ok"] is False
        assert body["checks"]["generations"]["ok"] is True
        assert body["detail"] == "failing checks: flusher_lag"
        gauge = next(
            line
            for line in (await api.anon.get("/metrics")).text.splitlines()
            if line.startswith("earmark_flusher_lag_seconds ")
        )
        assert float(gauge.split()[1]) >= 0.1


async def test_readyz_fails_when_a_generation_marker_is_missing(api: Api) -> None:
    await api.engine.client.hdel(api.engine.keys.meta(0), "generation")  # Redis lost it
    body = problem_of(await api.anon.get("/readyz"), 503, "not_ready")
    generations = body["checks"]["generations"]
    assert generations == {"ok": False, "detail": "missing in partitions 0", "required": True}
    assert body["detail"] == "failing checks: generations"


async def test_readyz_fails_while_the_flusher_lags(api: Api) -> None:
    lag = [1.0]

    async def lag_source() -> float:
        return lag[0]

    api.app.state.lag_source = lag_source
    ready = await api.anon.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["flusher_lag"]["ok"] is True
    lag[0] = 31.0
    body = problem_of(await api.anon.get("/readyz"), 503, "not_ready")
    assert body["checks"]["flusher_lag"]["ok"] is False
    assert "flusher_lag" in body["detail"]
    assert "earmark_flusher_lag_seconds 31.0" in (await api.anon.get("/metrics")).text


async def test_readyz_fails_when_the_lag_source_breaks(api: Api) -> None:
    async def broken() -> float:
        raise RuntimeError("ledger unreachable")

    api.app.state.lag_source = broken
    body = problem_of(await api.anon.get("/readyz"), 503, "not_ready")
    assert "ledger unreachable" in body["checks"]["flusher_lag"]["detail"]


async def test_metrics(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    key = {"Idempotency-Key": "m1"}
    held = await api.admin.post(
        "/v1/reservations", json={"lines": [{"sku": "A", "qty": 1}]}, headers=key
    )
    await api.admin.post(
        "/v1/reservations",
        json={"lines": [{"sku": "A", "qty": 1}]},
        headers={"Idempotency-Key": "m2"},
    )
    await api.admin.post(f"/v1/reservations/{held.json()['id']}/commit")
    response = await api.anon.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'earmark_reservations_total{operation="reserve",outcome="ok"} 1.0' in text
    assert (
        'earmark_reservations_total{operation="reserve",outcome="insufficient_stock"} 1.0' in text
    )
    assert 'earmark_reservations_total{operation="commit",outcome="ok"} 1.0' in text
    assert "earmark_insufficient_stock_refusals_total 1.0" in text
    assert (
        'earmark_http_request_duration_seconds_count{method="POST",route="/v1/reservations"} 2.0'
        in text
    )
    assert 'route="/v1/reservations/{reservation_id}/commit"' in text
    assert "earmark_flusher_lag_seconds" in text
