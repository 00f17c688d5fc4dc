"""``GET /v1/skus``: pages of stock records over HTTP, described in /openapi.json."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.api import Api, problem_of


async def walk(api: Api, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({} if cursor is None else {"cursor": cursor})}
        response = await api.reader.get("/v1/skus", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


async def test_pages_filters_and_bad_input(api: Api) -> None:
    for n in range(12):
        await api.admin.post(f"/v1/skus/TEE-{n:02d}/receipts", json={"qty": n + 1})
    await api.admin.post("/v1/skus/CAP/receipts", json={"qty": 3, "location": "berlin"})
    everything = await walk(api, limit=5)
    assert len(everything) == 13
    assert {x["sku"] for x in everything} == {*(f"TEE-{n:02d}" for n in range(12)), "CAP"}
    assert [x["on_hand"] for x in await walk(api, prefix="TEE-03")] == [4]
    berlin = await walk(api, location="berlin")
    assert [(x["sku"], x["available"]) for x in berlin] == [("CAP", 3)]

    problem_of(await api.reader.get("/v1/skus", params={"cursor": "nope"}), 422, "invalid_request")
    problem_of(await api.reader.get("/v1/skus", params={"limit": 0}), 422, "invalid_request")
    problem_of(await api.reader.get("/v1/skus", params={"prefix": "a b"}), 422, "invalid_request")
    problem_of(await api.anon.get("/v1/skus"), 401, "unauthorized")


async def test_low_stock_filter(api: Api) -> None:
    for sku, qty in (("LOW", 2), ("HIGH", 20), ("PLAIN", 1)):
        await api.admin.post(f"/v1/skus/{sku}/receipts", json={"qty": qty})
    for sku in ("LOW", "HIGH"):
        put = await api.admin.put(
            f"/v1/skus/{sku}/reorder",
            json={"reorder_point": 5, "rearm_above": 8},
            headers={"Idempotency-Key": f"reorder-{sku}"},
        )
        assert put.status_code == 200, put.text
    low = await walk(api, low_stock="true")
    assert [(x["sku"], x["available"]) for x in low] == [("LOW", 2)]
    alerts = (await api.reader.get("/v1/alerts")).json()["items"]
    assert [a["sku"] for a in alerts] == [x["sku"] for x in low]
    assert len(await walk(api, low_stock="false")) == 3
    problem_of(
        await api.reader.get("/v1/skus", params={"low_stock": "maybe"}), 422, "invalid_request"
    )


async def test_the_route_is_in_the_openapi_document(api: Api) -> None:
    schema = (await api.anon.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/skus"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names >= {"prefix", "location", "cursor", "limit", "low_stock"}
    assert "422" in operation["responses"] and "401" in operation["responses"]
    assert "application/problem+json" in operation["responses"]["422"]["content"]


async def test_held_reservations_over_http(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 10})
    ids = []
    for ttl in (900, 300, 600):
        held = await api.reserver.post(
            "/v1/reservations", json={"lines": [{"sku": "A", "qty": 1}], "ttl_seconds": ttl}
        )
        ids.append(held.json()["id"])
    await api.reserver.post(f"/v1/reservations/{ids[2]}/release")
    first = await api.reader.get("/v1/reservations", params={"sku": "A", "limit": 1})
    assert first.status_code == 200
    body = first.json()
    assert [r["id"] for r in body["items"]] == [ids[1]]  # the soonest expiry
    assert body["items"][0]["status"] == "held" and body["next_cursor"]
    rest = await api.reader.get(
        "/v1/reservations", params={"sku": "A", "cursor": body["next_cursor"]}
    )
    assert [r["id"] for r in rest.json()["items"]] == [ids[0]]
    assert rest.json()["next_cursor"] is None
    every = (await api.reader.get("/v1/reservations")).json()
    assert sorted(r["id"] for r in every["items"]) == sorted(ids[:2])

    bad = await api.reader.get("/v1/reservations", params={"status": "committed"})
    assert "GET /v1/ledger" in problem_of(bad, 422, "invalid_request")["detail"]
    bad = await api.reader.get("/v1/reservations", params={"cursor": "x"})
    problem_of(bad, 422, "invalid_request")
    problem_of(await api.anon.get("/v1/reservations"), 401, "unauthorized")
    schema = (await api.anon.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/reservations"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "sku", "location", "status", "customer", "cursor", "limit"
    }  # fmt: skip
    (status,) = [p for p in operation["parameters"] if p["name"] == "status"]
    assert status["schema"]["enum"] == ["held"]
    assert "application/problem+json" in operation["responses"]["422"]["content"]


async def test_drops_are_listed_in_pages(api: Api) -> None:
    opens = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for n in range(3):
        await api.admin.post(f"/v1/skus/D-{n}/receipts", json={"qty": 4})
        body = {"id": f"drop-{n}", "skus": [f"D-{n}"], "opens_at": opens}
        made = await api.admin.post("/v1/drops", json=body, headers={"Idempotency-Key": f"d{n}"})
        assert made.status_code == 201, made.text
    first = await api.reader.get("/v1/drops", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [d["id"] for d in first.json()["items"]] == ["drop-0", "drop-1"]
    assert first.json()["items"][0]["open"] is False
    rest = await api.reader.get("/v1/drops", params={"cursor": first.json()["next_cursor"]})
    assert [d["id"] for d in rest.json()["items"]] == ["drop-2"]
    assert rest.json()["next_cursor"] is None
    problem_of(await api.reader.get("/v1/drops", params={"limit": 0}), 422, "invalid_request")
    problem_of(await api.reader.get("/v1/drops", params={"cursor": "a b"}), 422, "invalid_request")
    problem_of(await api.anon.get("/v1/drops"), 401, "unauthorized")


async def test_held_reservations_of_a_customer_over_http(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    opens = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    made = await api.admin.post(
        "/v1/drops",
        json={"id": "launch", "skus": ["TEE"], "opens_at": opens},
        headers={"Idempotency-Key": "drop"},
    )
    assert made.status_code == 201, made.text
    ids = {}
    for customer in ("Ann@X ", "bob"):
        body = {"lines": [{"sku": "TEE", "qty": 1}], "customer": customer}
        held = await api.reserver.post("/v1/reservations", json=body)
        assert held.status_code == 201, held.text
        ids[customer] = held.json()["id"]
    page = await api.reader.get("/v1/reservations", params={"customer": " ann@x"})
    assert [r["id"] for r in page.json()["items"]] == [ids["Ann@X "]]
    bad = await api.reader.get("/v1/reservations", params={"customer": "  "})
    problem_of(bad, 422, "invalid_request")
