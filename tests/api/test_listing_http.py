"""``GET /v1/skus``: pages of stock records over HTTP, described in /openapi.json."""

from __future__ import annotations

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


async def test_the_route_is_in_the_openapi_document(api: Api) -> None:
    schema = (await api.anon.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/skus"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"prefix", "location", "cursor", "limit"}
    assert "422" in operation["responses"] and "401" in operation["responses"]
    assert "application/problem+json" in operation["responses"]["422"]["content"]
