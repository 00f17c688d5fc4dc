"""Channels over HTTP (docs/channels.md): buffers, SKU overrides, the channel's view of
a SKU, reservations refused on the channel's view, allocations; bad input is a problem
with a stable code and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from earmark import limits
from tests.support.api import Api, problem_of


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}


async def put(api: Api, path: str, body: dict[str, Any]) -> httpx.Response:
    return await api.admin.put(path, json=body, headers=key())


async def reserve(api: Api, qty: int, channel: str = "") -> httpx.Response:
    body = {"lines": [{"sku": "TEE", "qty": qty}], "channel": channel}
    return await api.reserver.post("/v1/reservations", json=body)


async def test_a_buffer_and_an_override_shape_what_the_channel_may_reserve(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 20})
    set_ = await put(api, "/v1/channels/marketplace", {"buffer_units": 2, "buffer_percent": 25})
    assert set_.status_code == 200, set_.text
    assert set_.json()["default"] == {"buffer_units": 2, "buffer_percent": 25, "floor": 0}
    seen = (await api.reader.get("/v1/skus/TEE", params={"channel": "marketplace"})).json()
    assert (seen["available"], seen["unbuffered_available"], seen["channel"]) == (
        15,
        20,
        "marketplace",
    )
    refused = problem_of(await reserve(api, 16, "marketplace"), 409, "insufficient_stock")
    assert refused["lines"][0]["available"] == 15
    assert (await reserve(api, 16, "web")).status_code == 201
    override = await put(api, "/v1/channels/marketplace/skus/TEE", {"floor": 10})
    assert override.json()["rule"] == {"buffer_units": 0, "buffer_percent": 0, "floor": 10}
    problem_of(await reserve(api, 1, "marketplace"), 409, "insufficient_stock")
    read = (await api.reader.get("/v1/channels/marketplace")).json()
    assert read["skus"] == {"TEE": {"buffer_units": 0, "buffer_percent": 0, "floor": 10}}
    gone = await api.admin.delete("/v1/channels/marketplace/skus/TEE", headers=key())
    assert gone.status_code == 200 and gone.json()["removed"] is True
    assert (await api.reader.get("/v1/channels/marketplace")).json()["skus"] == {}


async def test_an_allocation_is_fenced_and_given_back(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    path = "/v1/channels/marketplace/allocations"
    moved = await api.admin.post(path, json={"sku": "TEE", "qty": 7})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["allocated"], moved.json()["moved"]) == (7, 7)
    problem_of(await reserve(api, 4, "web"), 409, "insufficient_stock")
    problem_of(await reserve(api, 4), 409, "insufficient_stock")
    assert (await reserve(api, 9, "marketplace")).status_code == 201
    back = await api.admin.post(path, json={"sku": "TEE", "qty": 1})
    assert back.status_code == 200
    short = problem_of(
        await api.admin.post(path, json={"sku": "TEE", "qty": -2}), 409, "allocation_short"
    )
    assert (short["allocated"], short["requested"]) == (1, 2)
    whole = await api.admin.delete(f"{path}/TEE", headers=key())
    assert (whole.json()["allocated"], whole.json()["moved"]) == (0, -1)
    problem_of(await api.admin.post(path, json={"sku": "NOPE", "qty": 1}), 404, "sku_not_found")
    problem_of(await api.admin.post(path, json={"sku": "TEE", "qty": 5}), 409, "insufficient_stock")


async def test_an_allocation_move_replays_under_its_key(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    headers = {"Idempotency-Key": "fence-1"}
    path = "/v1/channels/marketplace/allocations"
    first = await api.admin.post(path, json={"sku": "TEE", "qty": 3}, headers=headers)
    again = await api.admin.post(path, json={"sku": "TEE", "qty": 3}, headers=headers)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert (await api.levels("TEE"))[1] == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/channels/marketplace", {"buffer_units": -1}),
        ("/v1/channels/marketplace", {"buffer_percent": 101}),
        ("/v1/channels/marketplace", {"floor": -5}),
        ("/v1/channels/marketplace", {"buffer_units": limits.CHANNEL_BUFFER_UNITS_MAX + 1}),
        ("/v1/channels/marketplace/skus/TEE", {"buffer_percent": 1.5}),
        ("/v1/channels/marketplace/skus/TEE", {"floor": -1}),
        ("/v1/channels/bad%20name", {}),
        ("/v1/channels/marketplace/skus/bad%20sku", {}),
    ],
)
async def test_a_bad_rule_is_a_problem_and_writes_nothing(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    before = await api.stream_lengths()
    problem_of(await put(api, path, body), 422, "invalid_request")
    assert await api.stream_lengths() == before
    assert (await api.reader.get("/v1/channels/marketplace")).json()["default"] is None


@pytest.mark.parametrize("qty", [0, -limits.QTY_MAX - 1, limits.QTY_MAX + 1])
async def test_a_bad_allocation_is_a_problem_and_writes_nothing(api: Api, qty: int) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    before = await api.stream_lengths()
    response = await api.admin.post(
        "/v1/channels/marketplace/allocations", json={"sku": "TEE", "qty": qty}
    )
    problem_of(response, 422, "invalid_channel_rule" if qty == 0 else "invalid_request")
    assert await api.stream_lengths() == before


async def test_an_unknown_sku_is_a_problem_and_writes_nothing(api: Api) -> None:
    before = await api.stream_lengths()
    problem_of(await put(api, "/v1/channels/marketplace/skus/NOPE", {}), 404, "sku_not_found")
    problem_of(
        await api.reader.get("/v1/skus/NOPE", params={"channel": "marketplace"}),
        404,
        "sku_not_found",
    )
    assert await api.stream_lengths() == before


async def test_channel_writes_need_the_stock_scope(api: Api) -> None:
    refused = await api.reserver.put(
        "/v1/channels/marketplace", json={"buffer_units": 1}, headers=key()
    )
    problem_of(refused, 403, "forbidden")
