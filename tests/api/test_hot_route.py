"""POST /v1/reservations served in one pass (earmark.api.hot): the same answers as the
routed path, without FastAPI's dependency solving, and every input that pass does not
take handed to the route unchanged."""

from __future__ import annotations

from typing import Any

import fastapi.routing
import pytest

from earmark.api import hot as hot_module
from tests.support.api import Api, problem_of


@pytest.fixture
def hot(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The idempotency keys of the requests the one pass took to the engine, in order."""
    keys: list[str] = []
    reserve, transition = hot_module.hold, hot_module.act

    async def reserving(ctx: Any, cart: Any, key: str) -> Any:
        keys.append(key)
        return await reserve(ctx, cart, key)

    async def moving(ctx: Any, op: str, rid: str, key: str, ttl: Any = None) -> Any:
        keys.append(key)
        return await transition(ctx, op, rid, key, ttl)

    # The one pass's own bindings: the routed path calls the route module's.
    monkeypatch.setattr(hot_module, "hold", reserving)
    monkeypatch.setattr(hot_module, "act", moving)
    return keys


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FastAPI solved dependencies for (the routed path), in order."""
    paths: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        paths.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return paths


def cart(qty: int = 1, **extra: Any) -> dict[str, Any]:
    return {"lines": [{"sku": "A", "qty": qty}], **extra}


async def test_a_hold_is_served_without_the_router(
    api: Api, solved: list[str], hot: list[str]
) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    solved.clear()
    sent = await api.reserver.post(
        "/v1/reservations", json=cart(2, channel="web"), headers={"Idempotency-Key": "k1"}
    )
    assert sent.status_code == 201
    assert sent.headers["content-type"] == "application/json"
    body = sent.json()
    assert sent.headers["location"] == f"/v1/reservations/{body['id']}"
    assert (body["status"], body["channel"]) == ("held", "web")
    again = await api.reserver.post(
        "/v1/reservations", json=cart(2, channel="web"), headers={"Idempotency-Key": "k1"}
    )
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    assert solved == []  # neither request was routed
    assert hot == ["k1", "k1"]
    assert (await api.reader.get(f"/v1/reservations/{body['id']}")).json() == body
    assert await api.levels("A") == (5, 2, 0, 3)


async def test_refusals_of_the_engine_are_the_routes_problems(api: Api, solved: list[str]) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    solved.clear()
    short = await api.reserver.post(
        "/v1/reservations", json=cart(2), headers={"Idempotency-Key": "k2"}
    )
    problem = problem_of(short, 409, "insufficient_stock")
    assert problem["instance"] == "/v1/reservations"
    assert problem["lines"][0]["available"] == 1
    unknown = await api.reserver.post(
        "/v1/reservations",
        json={"lines": [{"sku": "NOPE", "qty": 1}]},
        headers={"Idempotency-Key": "k3"},
    )
    problem_of(unknown, 404, "sku_not_found")
    forbidden = await api.reader.post(
        "/v1/reservations", json=cart(), headers={"Idempotency-Key": "k4"}
    )
    problem_of(forbidden, 403, "forbidden")
    assert solved == []
    assert await api.levels("A") == (1, 0, 0, 1)


INVALID = (422, "invalid_request")


@pytest.mark.parametrize(
    ("content", "headers", "expected"),
    [
        (b'{"lines": []}', {"Idempotency-Key": "k"}, INVALID),
        (b'{"lines": [{"sku": "A", "qty": 0}]}', {"Idempotency-Key": "k"}, INVALID),
        (b'{"lines": [{"sku": "A", "qty": 1}], "extra": 1}', {"Idempotency-Key": "k"}, INVALID),
        (b"{not json", {"Idempotency-Key": "k"}, (400, "malformed_json")),
        (b'{"lines": [{"sku": "A", "qty": 1}]}', {}, (400, "idempotency_key_required")),
        (b'{"lines": [{"sku": "A", "qty": 1}]}', {"Idempotency-Key": b"caf\xc3\xa9"}, INVALID),
    ],
    ids=["no-lines", "qty-0", "unknown-field", "not-json", "no-key", "key-not-ascii"],
)
async def test_bad_input_goes_to_the_route_and_gets_its_problem(
    api: Api,
    hot: list[str],
    content: bytes,
    headers: dict[str, Any],
    expected: tuple[int, str],
) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    client = api.bare["reserver"]
    sent = await client.post(
        "/v1/reservations",
        content=content,
        headers={"Content-Type": "application/json", **headers},
    )
    problem_of(sent, *expected)
    assert hot == []  # the one pass declined: the route answered
    assert await api.levels("A") == (5, 0, 0, 5)


async def test_another_content_type_is_the_routes_to_answer(api: Api, hot: list[str]) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    sent = await api.bare["reserver"].post(
        "/v1/reservations",
        content=b'{"lines": [{"sku": "A", "qty": 1}]}',
        headers={"Content-Type": "text/plain", "Idempotency-Key": "k"},
    )
    assert hot == []
    assert sent.status_code in (201, 415, 422)
    expected = (5, 1, 0, 4) if sent.status_code == 201 else (5, 0, 0, 5)
    assert await api.levels("A") == expected


async def test_the_latency_metrics_name_the_route(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    await api.reserver.post("/v1/reservations", json=cart(), headers={"Idempotency-Key": "m"})
    text = (await api.anon.get("/metrics")).text
    assert (
        'earmark_http_requests_total{method="POST",route="/v1/reservations",status="201"} 1.0'
        in text
    )
    assert 'earmark_writes_total{kind="new",route="/v1/reservations"} 1.0' in text
    assert 'earmark_reservations_total{operation="reserve",outcome="ok"} 1.0' in text


async def test_transitions_are_served_without_the_router(
    api: Api, solved: list[str], hot: list[str]
) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    first = (await api.reserver.post("/v1/reservations", json=cart(2))).json()["id"]
    second = (await api.reserver.post("/v1/reservations", json=cart(1))).json()["id"]
    solved.clear()
    extended = await api.reserver.post(
        f"/v1/reservations/{first}/extend",
        json={"ttl_seconds": 120},
        headers={"Idempotency-Key": "x1"},
    )
    assert (extended.status_code, extended.json()["status"]) == (200, "held")
    committed = await api.reserver.post(
        f"/v1/reservations/{first}/commit", headers={"Idempotency-Key": "c1"}
    )
    assert (committed.status_code, committed.json()["status"]) == (200, "committed")
    again = await api.reserver.post(
        f"/v1/reservations/{first}/commit", headers={"Idempotency-Key": "c1"}
    )
    assert again.json() == committed.json()
    released = await api.reserver.post(
        f"/v1/reservations/{second}/release", headers={"Idempotency-Key": "r1"}
    )
    assert (released.status_code, released.json()["status"]) == (200, "released")
    shipped = await api.admin.post(
        f"/v1/reservations/{first}/ship", headers={"Idempotency-Key": "s1"}
    )
    assert (shipped.status_code, shipped.json()["status"]) == (200, "shipped")
    assert solved == []
    assert hot[-5:] == ["x1", "c1", "c1", "r1", "s1"]
    assert await api.levels("A") == (3, 0, 0, 3)
    text = (await api.anon.get("/metrics")).text
    commit_route = 'route="/v1/reservations/{reservation_id}/commit",status="200"'
    assert f'earmark_http_requests_total{{method="POST",{commit_route}}} 2.0' in text
    assert 'earmark_reservations_total{operation="ship",outcome="ok"} 1.0' in text


async def test_transition_refusals_are_the_routes_problems(api: Api, hot: list[str]) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    rid = (await api.reserver.post("/v1/reservations", json=cart(1))).json()["id"]
    problem_of(
        await api.stocker.post(f"/v1/reservations/{rid}/ship", headers={"Idempotency-Key": "s"}),
        409,
        "invalid_transition",
    )
    problem_of(
        await api.reserver.post(f"/v1/reservations/{rid}/ship", headers={"Idempotency-Key": "t"}),
        403,
        "forbidden",
    )
    gone = await api.reserver.post(
        "/v1/reservations/rsv_nope_0/commit", headers={"Idempotency-Key": "u"}
    )
    assert problem_of(gone, 404, "reservation_not_found")["instance"] == (
        "/v1/reservations/rsv_nope_0/commit"
    )
    taken = len(hot)
    bad = await api.reserver.post(
        f"/v1/reservations/{rid}/extend",
        json={"ttl_seconds": -1},
        headers={"Idempotency-Key": "v"},
    )
    problem_of(bad, 422, "invalid_request")
    assert len(hot) == taken  # the route answered the bad body
    assert await api.levels("A") == (5, 1, 0, 4)
