"""The stock endpoints: read one, read many, receive, adjust."""

from __future__ import annotations

from tests.support.api import Api, problem_of


async def test_a_receipt_returns_the_new_buckets(api: Api) -> None:
    response = await api.admin.post(
        "/v1/skus/TEE-M/receipts", json={"qty": 10, "location": "berlin", "reference": "PO-1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["sku"], body["location"], body["on_hand"], body["available"]) == (
        "TEE-M",
        "berlin",
        10,
        10,
    )
    assert await api.levels("TEE-M", "berlin") == (10, 0, 0, 10)


async def test_stock_of_one_sku_at_one_location(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 7})
    response = await api.reader.get("/v1/skus/A", params={"location": "default"})
    assert response.status_code == 200
    body = response.json()
    expected = {"sku": "A", "location": "default", "on_hand": 7, "reserved": 0, "committed": 0}
    assert expected.items() <= body.items()
    assert (body["available"], body["version"]) == (7, 1)
    at = await api.reader.get("/v1/skus/A", params={"location": "elsewhere"})
    body = problem_of(at, 404, "sku_not_found")
    assert (body["sku"], body["location"]) == ("A", "elsewhere")


async def test_stock_of_one_sku_over_every_location(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 7})
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5, "location": "berlin"})
    held = await api.admin.post(
        "/v1/reservations",
        json={"lines": [{"sku": "A", "qty": 2, "location": "berlin"}]},
        headers={"Idempotency-Key": "h"},
    )
    assert held.status_code == 201
    response = await api.reader.get("/v1/skus/A")
    assert response.status_code == 200
    body = response.json()
    totals = {k: body[k] for k in ("sku", "on_hand", "reserved", "available", "in_transit")}
    assert totals == {"sku": "A", "on_hand": 12, "reserved": 2, "available": 10, "in_transit": 0}
    assert "location" not in body and "version" not in body
    by_location = {x["location"]: (x["on_hand"], x["available"]) for x in body["locations"]}
    assert by_location == {"berlin": (5, 3), "default": (7, 7)}
    assert [x["location"] for x in body["locations"]] == ["berlin", "default"]


async def test_a_sku_never_received_is_not_found(api: Api) -> None:
    body = problem_of(await api.reader.get("/v1/skus/NEVER"), 404, "sku_not_found")
    assert body["sku"] == "NEVER" and "location" not in body
    assert body["instance"] == "/v1/skus/NEVER"
    at = await api.reader.get("/v1/skus/NEVER", params={"location": "default"})
    assert problem_of(at, 404, "sku_not_found")["location"] == "default"


async def test_availability_of_many_skus(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    await api.admin.post("/v1/skus/B/receipts", json={"qty": 3})
    response = await api.reader.get(
        "/v1/availability", params=[("sku", "B"), ("sku", "A"), ("sku", "NOPE")]
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(i["sku"], i["available"]) for i in items] == [("B", 3), ("A", 5), ("NOPE", 0)]


async def test_availability_bounds(api: Api) -> None:
    problem_of(await api.reader.get("/v1/availability"), 422, "invalid_request")
    many = [("sku", f"S{i}") for i in range(1001)]
    problem_of(await api.reader.get("/v1/availability", params=many), 422, "invalid_request")


async def test_adjustments(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 10})
    down = await api.admin.post("/v1/skus/A/adjustments", json={"delta": -3, "reason": "count"})
    assert (down.status_code, down.json()["on_hand"]) == (200, 7)
    up = await api.admin.post("/v1/skus/A/adjustments", json={"delta": 2, "reason": "found"})
    assert up.json()["on_hand"] == 9


async def test_an_adjustment_that_would_oversell_is_refused_unless_forced(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    body = {"lines": [{"sku": "A", "qty": 4}]}
    held = await api.admin.post("/v1/reservations", json=body, headers={"Idempotency-Key": "h"})
    assert held.status_code == 201
    before = await api.stream_lengths()
    refused = await api.admin.post("/v1/skus/A/adjustments", json={"delta": -2, "reason": "x"})
    body = problem_of(refused, 409, "would_oversell")
    assert (body["available"], body["requested"]) == (1, 2)
    assert await api.stream_lengths() == before
    forced = await api.admin.post(
        "/v1/skus/A/adjustments", json={"delta": -2, "reason": "x", "force": True}
    )
    assert (forced.status_code, forced.json()["available"]) == (200, -1)
    too_far = await api.admin.post(
        "/v1/skus/A/adjustments", json={"delta": -5, "reason": "x", "force": True}
    )
    problem_of(too_far, 409, "insufficient_on_hand")


async def test_a_lost_generation_marker_refuses_writes(api: Api) -> None:
    await api.engine.client.delete(api.engine.keys.meta(0))
    refused = await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    problem_of(refused, 503, "store_not_ready")
    problem_of(await api.anon.get("/readyz"), 503, "not_ready")
