"""The reservation endpoints and their state machine, over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import time_machine

from tests.support.api import Api, make_settings, open_api, problem_of

RESERVATION_FIELDS = {"id", "status", "lines", "expires_at", "created_at", "channel"}


async def hold(api: Api, qty: int = 2, key: str = "cart", **extra: Any) -> httpx.Response:
    """Held by the reserver key (the key that then commits, releases and extends it: a
    reservation belongs to the key that created it)."""
    body = {"lines": [{"sku": "A", "qty": qty}], **extra}
    return await api.reserver.post("/v1/reservations", json=body, headers={"Idempotency-Key": key})


@pytest.fixture
def clock() -> Iterator[Any]:
    """fakeredis's TIME is Python's clock: time-machine moves the server's clock."""
    with time_machine.travel(datetime.now().astimezone(), tick=True) as traveller:
        yield traveller


async def test_a_cart_is_held(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    await api.admin.post("/v1/skus/B/receipts", json={"qty": 5, "location": "x"})
    lines = [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 3, "location": "x"}]
    response = await api.reserver.post(
        "/v1/reservations",
        json={"lines": lines, "ttl_seconds": 60, "channel": "web"},
        headers={"Idempotency-Key": "cart-1"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body.keys() >= RESERVATION_FIELDS
    assert (body["status"], body["channel"]) == ("held", "web")
    assert body["id"].startswith("rsv_")
    assert response.headers["location"] == f"/v1/reservations/{body['id']}"
    assert {(x["sku"], x["location"], x["qty"]) for x in body["lines"]} == {
        ("A", "default", 2),
        ("B", "x", 3),
    }
    created = datetime.fromisoformat(body["created_at"])
    assert 59 <= (datetime.fromisoformat(body["expires_at"]) - created).total_seconds() <= 60
    assert await api.levels("A") == (5, 2, 0, 3)
    again = await api.reader.get(f"/v1/reservations/{body['id']}")
    assert again.status_code == 200
    assert again.json() == body


async def test_a_short_cart_is_refused_naming_every_short_line(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    await api.admin.post("/v1/skus/B/receipts", json={"qty": 1, "location": "x"})
    lines = [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]  # B exists, not at default
    before = await api.stream_lengths()
    response = await api.admin.post(
        "/v1/reservations", json={"lines": lines}, headers={"Idempotency-Key": "short"}
    )
    body = problem_of(response, 409, "insufficient_stock")
    assert sorted(body["lines"], key=lambda x: x["sku"]) == [
        {"sku": "A", "location": "default", "requested": 2, "available": 1},
        {"sku": "B", "location": "default", "requested": 1, "available": 0},
    ]
    assert await api.stream_lengths() == before
    assert await api.levels("A") == (1, 0, 0, 1)


async def test_a_sku_never_received_is_not_found_not_sold_out(api: Api) -> None:
    """A typo must not look like a stock-out: a SKU without stock at any location is 404
    sku_not_found naming each such line; a sold-out SKU stays 409 insufficient_stock."""
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    await hold(api, 1, "sells-out")
    before = await api.stream_lengths()
    lines = [{"sku": "A", "qty": 1}, {"sku": "TYPO", "qty": 1}]
    response = await api.reserver.post(
        "/v1/reservations", json={"lines": lines}, headers={"Idempotency-Key": "typo"}
    )
    body = problem_of(response, 404, "sku_not_found")
    assert body["lines"] == [{"sku": "TYPO", "location": "default"}]
    assert "TYPO" in body["detail"]
    sold_out = await hold(api, 1, "sold-out")
    assert problem_of(sold_out, 409, "insufficient_stock")["lines"][0]["available"] == 0
    assert await api.stream_lengths() == before


async def test_unknown_reservations_are_not_found(api: Api) -> None:
    for rid in ("rsv_" + "0" * 24 + "_0", "nope", "rsv_" + "0" * 24 + "_77"):
        problem_of(await api.admin.get(f"/v1/reservations/{rid}"), 404, "reservation_not_found")
        for action in ("commit", "release", "ship"):
            response = await api.admin.post(f"/v1/reservations/{rid}/{action}")
            problem_of(response, 404, "reservation_not_found")
        extended = await api.admin.post(f"/v1/reservations/{rid}/extend", json={"ttl_seconds": 60})
        problem_of(extended, 404, "reservation_not_found")


async def test_commit_twice_then_ship(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    rid = (await hold(api)).json()["id"]
    first = await api.reserver.post(f"/v1/reservations/{rid}/commit")
    assert (first.status_code, first.json()["status"]) == (200, "committed")
    second = await api.reserver.post(f"/v1/reservations/{rid}/commit")
    assert (second.status_code, second.json()["status"]) == (200, "committed")
    assert await api.levels("A") == (5, 0, 2, 3)
    refused = await api.reserver.post(f"/v1/reservations/{rid}/release")
    assert problem_of(refused, 409, "invalid_transition")["reservation_status"] == "committed"
    extended = await api.reserver.post(f"/v1/reservations/{rid}/extend", json={"ttl_seconds": 60})
    problem_of(extended, 409, "invalid_transition")
    shipped = await api.stocker.post(f"/v1/reservations/{rid}/ship")
    assert (shipped.status_code, shipped.json()["status"]) == (200, "shipped")
    assert await api.levels("A") == (3, 0, 0, 3)
    assert (await api.reader.get(f"/v1/reservations/{rid}")).json()["status"] == "shipped"


async def test_release_then_commit_is_gone(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    rid = (await hold(api)).json()["id"]
    problem_of(await api.stocker.post(f"/v1/reservations/{rid}/ship"), 409, "invalid_transition")
    released = await api.reserver.post(f"/v1/reservations/{rid}/release")
    assert (released.status_code, released.json()["status"]) == (200, "released")
    assert (await api.reserver.post(f"/v1/reservations/{rid}/release")).status_code == 200
    gone = await api.reserver.post(f"/v1/reservations/{rid}/commit")
    assert problem_of(gone, 410, "reservation_released")["reservation_status"] == "released"
    assert await api.levels("A") == (5, 0, 0, 5)


async def test_extend_moves_the_expiry(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    held = (await hold(api, ttl_seconds=5)).json()
    extended = await api.reserver.post(
        f"/v1/reservations/{held['id']}/extend", json={"ttl_seconds": 600}
    )
    assert extended.status_code == 200
    delta = datetime.fromisoformat(extended.json()["expires_at"]) - datetime.fromisoformat(
        held["expires_at"]
    )
    assert delta.total_seconds() > 500


async def test_a_cart_that_expired_holds_cover_is_held_not_refused(api: Api, clock: Any) -> None:
    """100 expired holds, 64 given back per call: GET says 100 available, and a cart of 65
    is held (it was 409 insufficient_stock 64/65)."""
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 100})
    for i in range(100):
        assert (await hold(api, 1, f"h{i}", ttl_seconds=1)).status_code == 201
    clock.shift(1.5)
    assert (await api.reader.get("/v1/skus/A")).json()["available"] == 100
    held = await hold(api, 65, "big")
    assert held.status_code == 201, held.text
    assert (await api.reader.get("/v1/skus/A")).json()["available"] == 35


async def test_an_expired_hold_cannot_be_committed(api: Api, clock: Any) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    rid = (await hold(api, ttl_seconds=1)).json()["id"]
    clock.shift(1.5)
    assert (await api.reader.get(f"/v1/reservations/{rid}")).json()["status"] == "expired"
    gone = await api.reserver.post(f"/v1/reservations/{rid}/commit")
    assert problem_of(gone, 410, "reservation_expired")["reservation_status"] == "expired"
    extended = await api.reserver.post(f"/v1/reservations/{rid}/extend", json={"ttl_seconds": 60})
    problem_of(extended, 410, "reservation_expired")
    released = await api.reserver.post(f"/v1/reservations/{rid}/release")
    assert (released.status_code, released.json()["status"]) == (200, "expired")


async def test_the_in_process_sweeper_expires_holds(clock: Any) -> None:
    async with open_api(make_settings(sweep_interval_seconds=0.02)) as api:
        await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
        rid = (await hold(api, qty=3, ttl_seconds=1)).json()["id"]
        assert await api.levels("A") == (5, 3, 0, 2)
        clock.shift(2)
        expired: list[dict[str, str]] = []
        for _ in range(300):
            expired = [e for e in await api.events() if e["type"] == "expired"]
            if expired:
                break
            await asyncio.sleep(0.01)
        assert [e["reservation"] for e in expired] == [rid]
        assert await api.levels("A") == (5, 0, 0, 5)
        metrics = (await api.anon.get("/metrics")).text
        assert "earmark_expired_holds_total 1.0" in metrics


async def test_only_the_key_that_holds_a_cart_or_an_operator_may_change_it(api: Api) -> None:
    """A reservation records the API key that created it: another checkout key cannot
    commit, release or extend it (403 not_owner, nothing written); a key with the stock
    scope (an operator) can."""
    other = await api.create_key("other-shop", frozenset({"reserve", "read"}))
    stranger = {"Authorization": f"Bearer {other}"}
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    made = await api.reserver.post(
        "/v1/reservations",
        json={"lines": [{"sku": "A", "qty": 2}]},
        headers={"Idempotency-Key": "mine"},
    )
    rid = made.json()["id"]
    before = await api.stream_lengths(), await api.levels("A")
    for action, body in (("commit", None), ("release", None), ("extend", {"ttl_seconds": 60})):
        refused = await api.anon.post(
            f"/v1/reservations/{rid}/{action}",
            json=body,
            headers={**stranger, "Idempotency-Key": f"x-{action}"},
        )
        assert problem_of(refused, 403, "not_owner")["id"] == rid
    assert (await api.stream_lengths(), await api.levels("A")) == before
    assert (await api.reserver.post(f"/v1/reservations/{rid}/extend",
                                    json={"ttl_seconds": 60})).status_code == 200  # fmt: skip
    committed = await api.admin.post(f"/v1/reservations/{rid}/commit")  # an operator
    assert (committed.status_code, committed.json()["status"]) == (200, "committed")
