"""Drops over HTTP (docs/drops.md): create, read, change before opening, and the rules
a reservation with ``customer`` meets, each refusal a problem with a stable code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from earmark import limits
from tests.support.api import Api, problem_of


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def reserve(api: Api, key: str, qty: int = 1, **extra: Any) -> httpx.Response:
    body = {"lines": [{"sku": "TEE", "qty": qty}], **extra}
    return await api.reserver.post("/v1/reservations", json=body, headers={"Idempotency-Key": key})


async def make_drop(api: Api, **rules: Any) -> httpx.Response:
    body = {"id": "launch", "skus": ["TEE"], "opens_at": at(-timedelta(minutes=1)), **rules}
    return await api.admin.post("/v1/drops", json=body, headers={"Idempotency-Key": "drop"})


async def patch(api: Api, drop: str, body: dict[str, Any]) -> httpx.Response:
    key = {"Idempotency-Key": f"patch-{uuid.uuid4().hex}"}
    return await api.admin.patch(f"/v1/drops/{drop}", json=body, headers=key)


async def test_a_drop_is_created_read_and_enforced(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    created = await make_drop(api, per_customer_limit=2, hold_ttl_seconds=300)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["id"], body["skus"], body["per_customer_limit"], body["open"]) == (
        "launch",
        ["TEE"],
        2,
        True,
    )
    assert created.headers["location"] == "/v1/drops/launch"
    problem_of(await reserve(api, "k0"), 422, "customer_required")
    assert (await reserve(api, "k1", 2, customer=" Ann ")).status_code == 201
    refused = problem_of(
        await reserve(api, "k2", 1, customer="ann"), 409, "customer_limit_exceeded"
    )
    assert (refused["limit"], refused["used"]) == (2, 2)
    read = await api.reader.get("/v1/drops/launch")
    assert read.status_code == 200
    assert (read.json()["held"], read.json()["sold"]) == (2, 0)
    assert read.json()["customers_at_limit"] == 1  # ann holds her 2
    (listed,) = (await api.reader.get("/v1/drops")).json()["items"]
    assert listed["customers_at_limit"] == 1
    problem_of(
        await patch(api, "launch", {"per_customer_limit": 3}),
        409,
        "drop_already_open",
    )


async def test_a_drop_before_opening_refuses_and_can_change(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    assert (await make_drop(api, opens_at=at(timedelta(hours=1)))).status_code == 201
    refused = problem_of(await reserve(api, "k", customer="ann"), 409, "drop_not_open")
    assert datetime.fromisoformat(refused["opens_at"]) > datetime.now(UTC)
    changed = await patch(
        api, "launch", {"per_customer_limit": 4, "closes_at": at(timedelta(hours=3))}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["per_customer_limit"] == 4 and changed.json()["closes_at"]
    cleared = await patch(api, "launch", {"closes_at": None})
    assert cleared.json()["closes_at"] is None


async def test_bad_drops_are_problems_and_write_nothing(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 10})
    before = await api.stream_lengths()
    now = at(timedelta(0))
    bad: list[dict[str, Any]] = [
        {"opens_at": now, "closes_at": at(-timedelta(hours=1))},
        {"per_customer_limit": -1},
        {"per_customer_limit": 0},
        {"opens_at": "2026-01-01T00:00:00"},  # no time zone
        {"opens_at": 0},  # a number is not an RFC 3339 date-time
        {"opens_at": "1796287225"},
        {"skus": []},
        {"id": "x" * (limits.DROP_ID_LENGTH_MAX + 1)},
        {"hold_ttl_seconds": -1},
    ]
    for rules in bad:
        problem_of(await make_drop(api, **rules), 422, "invalid_request")
    assert await api.stream_lengths() == before
    assert (await api.reader.get("/v1/drops/launch")).status_code == 404
    problem_of(await api.reader.get("/v1/drops/nope"), 404, "drop_not_found")
    problem_of(
        await patch(api, "nope", {"per_customer_limit": 1}),
        404,
        "drop_not_found",
    )
    assert (await make_drop(api)).status_code == 201
    long = "x" * (limits.CUSTOMER_LENGTH_MAX + 1)
    problem_of(await reserve(api, "k", customer=long), 422, "invalid_request")
    problem_of(
        await api.admin.post(
            "/v1/drops",
            json={"id": "other", "skus": ["TEE"], "opens_at": now},
            headers={"Idempotency-Key": "other"},
        ),
        409,
        "sku_in_drop",
    )


async def test_a_hammering_identity_is_rate_limited(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 100})
    await make_drop(api)
    codes = [
        (await reserve(api, f"k{n}", customer="bot")).status_code
        for n in range(limits.DROP_ATTEMPTS_PER_SECOND_DEFAULT * 3)
    ]
    limited = [c for c in codes if c == 429]
    assert limited, codes
    response = await reserve(api, "again", customer="bot")
    if response.status_code == 429:
        assert response.headers["retry-after"] == "1"
        problem_of(response, 429, "rate_limited")


async def join(api: Api, body: dict[str, Any], drop: str = "launch") -> httpx.Response:
    key = {"Idempotency-Key": f"join-{uuid.uuid4().hex}"}
    return await api.reserver.post(f"/v1/drops/{drop}/waitlist", json=body, headers=key)


async def test_the_waitlist_over_http(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 1})
    assert (await make_drop(api, per_customer_limit=2, waitlist=True)).status_code == 201
    first = await join(api, {"customer": " Ann ", "sku": "TEE"})
    assert first.status_code == 201, first.text
    entry = first.json()
    assert (entry["customer"], entry["status"], entry["position"], entry["qty"]) == (
        "ann",
        "waiting",
        1,
        1,
    )
    assert entry["offer"] is None
    second = await join(api, {"customer": "bob", "sku": "TEE", "qty": 2})
    assert second.json()["position"] == 2
    again = await join(api, {"customer": "ann", "sku": "TEE", "qty": 2})
    assert again.status_code == 201 and again.json() == entry  # the same entry
    read = await api.reader.get("/v1/drops/launch/waitlist/bob", params={"sku": "TEE"})
    assert read.status_code == 200 and read.json() == second.json()
    assert (await api.reader.get("/v1/drops/launch")).json()["waiting"] == 2
    key = {"Idempotency-Key": "decline-ann"}
    declined = await api.reserver.post("/v1/drops/launch/waitlist/ann/decline", headers=key)
    assert declined.status_code == 200, declined.text
    assert (declined.json()["status"], declined.json()["position"]) == ("declined", 0)
    moved = await api.reader.get("/v1/drops/launch/waitlist/bob")
    assert moved.json()["position"] == 1


async def test_a_customer_id_with_a_slash_is_addressable(api: Api) -> None:
    """A hashed e-mail in base64 holds '/' (and '+', '='): sent percent-encoded, as the
    client does, the entry is read and declined like any other."""
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 1})
    await make_drop(api, waitlist=True)
    hashed = "q0/x+Yz/w=="
    assert (await join(api, {"customer": hashed, "sku": "TEE"})).status_code == 201
    await join(api, {"customer": "bob", "sku": "TEE"})
    path = "/v1/drops/launch/waitlist/q0%2Fx%2Byz%2Fw%3D%3D"  # case-folded
    read = await api.reader.get(path)
    assert read.status_code == 200, read.text
    assert (read.json()["customer"], read.json()["position"]) == ("q0/x+yz/w==", 1)
    key = {"Idempotency-Key": "decline-hashed"}
    declined = await api.reserver.post(path + "/decline", headers=key)
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    assert (await api.reader.get("/v1/drops/launch/waitlist/bob")).json()["position"] == 1
    problem_of(
        await api.reader.get("/v1/drops/launch/waitlist/q0%2Fother"),
        404,
        "waitlist_entry_not_found",
    )


async def test_bad_waitlist_requests_are_problems_and_write_nothing(api: Api) -> None:
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 1})
    await api.admin.post("/v1/skus/OFF/receipts", json={"qty": 1})
    await make_drop(api, per_customer_limit=2, waitlist=True)
    closed = {"id": "closed", "skus": ["OFF"], "opens_at": at(-timedelta(minutes=1))}
    made = await api.admin.post("/v1/drops", json=closed, headers={"Idempotency-Key": "off"})
    assert made.status_code == 201, made.text
    before = await api.stream_lengths()
    problem_of(
        await join(api, {"customer": "ann", "sku": "OFF"}, "closed"), 409, "waitlist_disabled"
    )
    problem_of(await join(api, {"customer": "ann", "sku": "TEE"}, "nope"), 404, "drop_not_found")
    long = "x" * (limits.CUSTOMER_LENGTH_MAX + 1)
    bad: list[dict[str, Any]] = [
        {"customer": "ann", "sku": "TEE", "qty": 0},
        {"customer": "ann", "sku": "TEE", "qty": -1},
        {"customer": "ann", "sku": "TEE", "qty": "1"},
        {"customer": long, "sku": "TEE"},
        {"customer": "", "sku": "TEE"},
        {"customer": "ann"},
        {"sku": "TEE"},
        {"customer": "ann", "sku": "TEE", "extra": 1},
    ]
    for body in bad:
        problem_of(await join(api, body), 422, "invalid_request")
    problem_of(await join(api, {"customer": "ann", "sku": "OFF"}), 409, "sku_not_in_drop")
    over = problem_of(
        await join(api, {"customer": "ann", "sku": "TEE", "qty": 3}), 409, "customer_limit_exceeded"
    )
    assert (over["limit"], over["requested"]) == (2, 3)
    problem_of(
        await api.reader.get("/v1/drops/launch/waitlist/ann"), 404, "waitlist_entry_not_found"
    )
    key = {"Idempotency-Key": "decline"}
    problem_of(
        await api.reserver.post("/v1/drops/launch/waitlist/ann/decline", headers=key),
        404,
        "waitlist_entry_not_found",
    )
    problem_of(
        await api.reader.get("/v1/drops/launch/waitlist/ann", params={"sku": "bad sku"}),
        422,
        "invalid_request",
    )
    assert await api.stream_lengths() == before
    assert (await api.reader.get("/v1/drops/launch")).json()["waiting"] == 0


async def test_an_offer_over_http(api: Api) -> None:
    """A release offers its unit to the next in line: the entry shows the offer, the drop
    its offered figure, and the checkout service that put the customer in line commits
    it as any reservation (its key has no stock scope: the offer is its own)."""
    await api.admin.post("/v1/skus/TEE/receipts", json={"qty": 1})
    created = await make_drop(api, per_customer_limit=1, waitlist=True, offer_ttl_seconds=90)
    assert created.json()["opening_seed"] is not None  # opened a minute ago
    held = await reserve(api, "k1", customer="ann")
    assert held.status_code == 201, held.text
    assert (await join(api, {"customer": "bob", "sku": "TEE"})).status_code == 201
    key = {"Idempotency-Key": "release-ann"}
    released = await api.reserver.post(f"/v1/reservations/{held.json()['id']}/release", headers=key)
    assert released.status_code == 200, released.text
    entry = (await api.reader.get("/v1/drops/launch/waitlist/bob")).json()
    assert entry["status"] == "offered" and entry["position"] == 0
    offer = entry["offer"]
    assert set(offer) == {"reservation_id", "expires_at"}
    drop = (await api.reader.get("/v1/drops/launch")).json()
    assert (drop["waiting"], drop["offered"], drop["held"]) == (0, 1, 1)
    key = {"Idempotency-Key": "commit-bob"}
    commit = await api.reserver.post(
        f"/v1/reservations/{offer['reservation_id']}/commit", headers=key
    )
    assert commit.status_code == 200, commit.text
    entry = (await api.reader.get("/v1/drops/launch/waitlist/bob")).json()
    assert (entry["status"], entry["offer"]) == ("converted", None)
    drop = (await api.reader.get("/v1/drops/launch")).json()
    assert (drop["offered"], drop["sold"]) == (0, 1)
