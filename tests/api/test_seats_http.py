"""Seats over HTTP (docs/seats.md): the routes, statuses and problem codes of issue 16,
each refusal with nothing written, and the scopes they need."""

from __future__ import annotations

from typing import Any

import httpx

from earmark.webhooks.types import type_of_event
from tests.support.api import Api, problem_of

SEATS = "/v1/tenants/acme/seats"


def key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def cap(api: Api, n: int, **extra: Any) -> dict[str, Any]:
    response = await api.stocker.put(SEATS, json={"cap": n, **extra}, headers=key(f"cap{n}{extra}"))
    return ok(response)


async def test_assign_is_201_then_200_whatever_the_key_and_free_is_idempotent(api: Api) -> None:
    pool = await cap(api, 2, overage="1.5x")
    assert (pool["cap"], pool["factor"], pool["limit"], pool["over_cap"]) == (2, 1.5, 3, False)
    first = await api.reserver.put(f"{SEATS}/ann", headers=key("a1"))
    assert ok(first, 201)["created"] is True
    assert ok(await api.reserver.put(f"{SEATS}/ann", headers=key("a2")))["created"] is False
    replay = await api.reserver.put(f"{SEATS}/ann", headers=key("a1"))
    assert ok(replay)["user"] == "ann" and replay.headers["idempotent-replayed"] == "true"
    freed = ok(await api.reserver.delete(f"{SEATS}/ann", headers=key("d1")))
    assert (freed["freed"], freed["revoked"]) == (True, False)
    again = ok(await api.reserver.delete(f"{SEATS}/ann", headers=key("d2")))
    assert (again["freed"], again["revoked"]) == (False, False)


async def test_a_full_tenant_answers_seat_limit_reached_with_cap_and_used(api: Api) -> None:
    await cap(api, 1)
    ok(await api.reserver.put(f"{SEATS}/ann", headers=key("a")), 201)
    before = await api.stream_lengths()
    body = problem_of(
        await api.reserver.put(f"{SEATS}/bob", headers=key("b")), 409, "seat_limit_reached"
    )
    assert (body["cap"], body["used"], body["limit"]) == (1, 1, 1)
    assert await api.stream_lengths() == before


async def test_invite_accept_and_the_seat_they_hold(api: Api) -> None:
    await cap(api, 1)
    invites = "/v1/tenants/acme/invites"
    held = ok(await api.reserver.post(invites, json={"user": "ann", "ttl_seconds": 600}), 201)
    assert held["created"] is True and held["expires_at"]
    again = await api.reserver.post(invites, json={"user": "ann", "ttl_seconds": 600})
    assert ok(again)["created"] is False
    problem_of(await api.reserver.put(f"{SEATS}/bob", headers=key("b")), 409, "seat_limit_reached")
    accepted = ok(await api.reserver.post(f"{invites}/ann/accept"), 201)
    assert accepted["created"] is True
    problem_of(await api.reserver.post(f"{invites}/bob/accept"), 404, "invite_not_found")
    problem_of(
        await api.reserver.post(invites, json={"user": "ann", "ttl_seconds": 60}),
        409,
        "seat_already_assigned",
    )
    pool = ok(await api.reader.get(SEATS))
    assert (pool["assigned"], pool["invited"], pool["high_water_mark"]) == (1, 0, 1)


async def test_a_cap_below_use_is_over_cap_and_emits_its_webhook_event(api: Api) -> None:
    await cap(api, 2)
    ok(await api.reserver.put(f"{SEATS}/ann", headers=key("a")), 201)
    ok(await api.reserver.put(f"{SEATS}/bob", headers=key("b")), 201)
    assert (await cap(api, 1))["over_cap"] is True
    body = problem_of(await api.reserver.put(f"{SEATS}/cat", headers=key("c")), 409, "over_cap")
    assert (body["cap"], body["used"], body["limit"]) == (1, 2, 1)
    invite = {"user": "cat", "ttl_seconds": 60}
    problem_of(await api.reserver.post("/v1/tenants/acme/invites", json=invite), 409, "over_cap")
    over = [e for e in await api.events() if e["type"] == "seats_over_cap"]
    assert len(over) == 1 and over[0]["sku"] == "acme"
    assert type_of_event("seats_over_cap") == "seats.over_cap"
    ok(await api.reserver.delete(f"{SEATS}/ann", headers=key("d")))
    assert ok(await api.reader.get(SEATS))["over_cap"] is False
    assert [e["type"] for e in await api.events()].count("seats_under_cap") == 1


async def test_floating_seats_take_a_heartbeat(api: Api) -> None:
    pool = await cap(api, 1, floating=True, lease_seconds=60)
    assert (pool["floating"], pool["lease_seconds"]) == (True, 60)
    seat = ok(await api.reserver.put(f"{SEATS}/ann", headers=key("a")), 201)
    beat = ok(await api.reserver.post(f"{SEATS}/ann/heartbeat"))
    assert beat["lease_expires_at"] >= seat["lease_expires_at"]
    problem_of(await api.reserver.post(f"{SEATS}/bob/heartbeat"), 404, "seat_not_found")


async def test_the_period_and_the_users_pages(api: Api) -> None:
    await cap(api, 10)
    for n in range(5):
        ok(await api.reserver.put(f"{SEATS}/user{n}", headers=key(f"u{n}")), 201)
    past = ok(await api.reader.get(SEATS, params={"period": "2001-02"}))
    assert (past["period"], past["high_water_mark"], past["assigned"]) == ("2001-02", 0, 5)
    seen: list[str] = []
    params: dict[str, Any] = {"users": "true", "limit": 2}
    while True:
        page = ok(await api.reader.get(SEATS, params=params))
        seen += [u["user"] for u in page["users"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [f"user{n}" for n in range(5)]


async def test_bad_input_is_a_problem_with_its_code_and_writes_nothing(api: Api) -> None:
    await cap(api, 1)
    before = await api.stream_lengths()
    bad = [
        (api.stocker.put(SEATS, json={"cap": -1}, headers=key("x1")), 422, "invalid_seat_cap"),
        (
            api.stocker.put(SEATS, json={"cap": 1, "overage": "3x"}, headers=key("x2")),
            422,
            "invalid_overage",
        ),
        (api.reserver.put(f"{SEATS}/{'u' * 129}", headers=key("x3")), 422, "invalid_user_id"),
        (api.reserver.put(f"{SEATS}/a%20b", headers=key("x4")), 422, "invalid_user_id"),
        (
            api.reserver.put("/v1/tenants/nobody/seats/ann", headers=key("x5")),
            404,
            "tenant_not_found",
        ),
        (api.reader.get("/v1/tenants/nobody/seats"), 404, "tenant_not_found"),
        (api.reader.get(SEATS, params={"period": "2026-13"}), 422, "invalid_request"),
        (
            api.reserver.post("/v1/tenants/acme/invites", json={"user": "a", "ttl_seconds": 0}),
            422,
            "invalid_request",
        ),
        (api.reserver.put(f"{SEATS}/ann"), 400, "idempotency_key_required"),
    ]
    for request, status, code in bad:
        problem_of(await request, status, code)
    assert await api.stream_lengths() == before
    assert ok(await api.reader.get(SEATS))["cap"] == 1


async def test_each_route_needs_its_scope(api: Api) -> None:
    problem_of(await api.reserver.put(SEATS, json={"cap": 1}, headers=key("s")), 403, "forbidden")
    await cap(api, 1)
    problem_of(await api.reader.put(f"{SEATS}/ann", headers=key("r")), 403, "forbidden")
    problem_of(await api.anon.get(SEATS), 401, "unauthorized")
