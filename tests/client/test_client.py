"""``earmark.client``: every route has a method, the methods answer what the library
answers and raise what it raises (against the app and against a real ``earmark serve``),
and retries are safe: only idempotent requests, one key for every attempt, Retry-After
honoured."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from earmark import (
    Engine,
    EngineConfig,
    InsufficientStock,
    InvalidRequest,
    Reservation,
    ReservationNotFound,
    SkuNotFound,
    SkuStock,
    StockLevel,
    apikeys,
)
from earmark.client import AsyncClient, Client, Retry
from earmark.client.call import routes_of
from earmark.durable import service as durable
from earmark.engine.operation import operations_of
from earmark.errors import (
    Forbidden,
    NotOwner,
    Overloaded,
    StoreUnavailable,
    Unauthorized,
    UnexpectedResponse,
)
from earmark.models import Health, LedgerPage, LowStockAlert, ReorderSetting
from tests.support.api import BASE_URL, Api
from tests.support.backends import fresh_prefix
from tests.support.serve import Serve
from tests.support.servers import RedisServer

NOT_LIBRARY = {"actor", "owner_only"}  # the API key is the actor over HTTP


def openapi_routes(api: Api) -> set[str]:
    spec = api.app.openapi()
    return {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}


async def test_every_route_of_the_openapi_document_has_a_client_method(api: Api) -> None:
    assert set(routes_of(Client)) == openapi_routes(api)


def test_both_clients_offer_the_same_calls_with_the_same_signatures() -> None:
    sync, asyn = routes_of(Client), routes_of(AsyncClient)
    assert sync == asyn
    for name in set(sync.values()):
        s = inspect.signature(getattr(Client, name))
        a = inspect.signature(getattr(AsyncClient, name))
        assert s == a, name


def test_a_call_shared_with_the_engine_takes_the_engines_arguments() -> None:
    """Swapping ``Engine`` for ``Client``: every argument a client call takes, the
    engine's call of that name takes too, with the same kind and default."""
    engine_ops = operations_of(Engine)
    shared = sorted(set(routes_of(Client).values()) & set(engine_ops))
    assert {"reserve", "commit", "release", "extend", "ship", "stock", "receive"} <= set(shared)
    for name in shared:
        engine_params = inspect.signature(engine_ops[name]).parameters
        client = inspect.signature(getattr(Client, name)).parameters
        for pname, param in client.items():
            if pname in ("self", "idempotency_key"):
                continue
            assert pname in engine_params, (name, pname)
            assert engine_params[pname].kind == param.kind, (name, pname)
            assert engine_params[pname].default == param.default, (name, pname)
        missing = set(engine_params) - set(client) - NOT_LIBRARY - {"self", "idempotency_key"}
        assert missing == set(), (name, missing)


def asgi_client(api: Api, token: str | None) -> AsyncClient:
    return AsyncClient(BASE_URL, api_key=token, transport=httpx.ASGITransport(app=api.app))


async def test_the_async_client_answers_with_the_librarys_models(api: Api) -> None:
    async with asgi_client(api, api.tokens["admin"]) as client:
        level = await client.receive("A", 10, idempotency_key="r-1")
        assert isinstance(level, StockLevel) and level.on_hand == 10
        again = await client.receive("A", 10, idempotency_key="r-1")
        assert again == level  # a replay, not a second receipt
        held = await client.reserve([("A", 3)], ttl_seconds=60)
        assert isinstance(held, Reservation) and held.status == "held"
        assert (await client.get_reservation(held.id)).id == held.id
        committed = await client.commit(held.id)
        assert committed.status == "committed"
        shipped = await client.ship(held.id)
        assert shipped.status == "shipped"
        stock = await client.stock("A")
        assert isinstance(stock, SkuStock) and (stock.on_hand, stock.committed) == (7, 0)
        at_default = await client.stock("A", "default")
        assert isinstance(at_default, SkuStock) and at_default.locations[0].on_hand == 7
        (level,) = await client.availability(["A"])
        assert level.available == 7
        page = await client.ledger(sku="A")
        assert isinstance(page, LedgerPage)
        assert (page.items, page.next_cursor) == ([], None)  # no flusher runs in this app
        setting = await client.set_reorder("A", 7, 9)
        assert isinstance(setting, ReorderSetting) and setting.low  # available 7: at once
        assert await client.reorder_settings("A") == [setting]
        (alert,) = await client.alerts()
        assert isinstance(alert, LowStockAlert) and alert.low_since == setting.low_since


async def test_problems_are_raised_as_the_librarys_exceptions(api: Api) -> None:
    async with asgi_client(api, api.tokens["admin"]) as admin:
        await admin.receive("A", 2)
        with pytest.raises(InsufficientStock) as short:
            await admin.reserve([("A", 5)])
        assert [(s.sku, s.available) for s in short.value.shortfalls] == [("A", 2)]
        with pytest.raises(SkuNotFound):
            await admin.stock("NEVER")
        with pytest.raises(ReservationNotFound):
            await admin.commit("rsv_" + "0" * 24 + "_0")
        with pytest.raises(InvalidRequest):
            await admin.reserve([("A", 0)])
        held = await admin.reserve([("A", 1)])
    async with asgi_client(api, api.tokens["reserver"]) as reserver:
        with pytest.raises(NotOwner):
            await reserver.commit(held.id)
        with pytest.raises(Forbidden):
            await reserver.receive("A", 1)
    async with asgi_client(api, "em_not_a_key") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.stock("A")
    assert await api.levels("A") == (2, 1, 0, 1)  # nothing the refusals wrote


@pytest.fixture(scope="module")
def served(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serve, str]]:
    prefix = fresh_prefix()
    tmp = tmp_path_factory.mktemp("client")
    database_url = f"sqlite:///{tmp / 'earmark.db'}"
    scopes = frozenset(apikeys.SCOPES)
    token, _ = asyncio.run(durable.create_api_key(database_url, "client-test", scopes))
    with Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)) as engine:
        engine.receive("SNEAKER", 5)
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_DATABASE_URL": database_url,
        "EARMARK_API_KEY_CACHE_SECONDS": "0",
    }
    server = Serve(Path(tmp), env)
    try:
        server.wait_ready()
        yield server, token
    finally:
        assert server.stopped_cleanly(), server.output()


def test_the_blocking_client_sells_exactly_the_stock_of_a_real_server(
    served: tuple[Serve, str],
) -> None:
    server, token = served
    with Client(server.url, api_key=token) as client:
        sold, refused = 0, 0
        for _ in range(8):
            try:
                held = client.reserve([("SNEAKER", 1)])
            except InsufficientStock:
                refused += 1
                continue
            client.commit(held.id)
            sold += 1
        assert (sold, refused) == (5, 3)
        stock = client.stock("SNEAKER")
        assert (stock.on_hand, stock.committed, stock.available) == (5, 5, 0)
        assert client.health() == Health(status="ok")
        assert "earmark" in client.metrics()


# -- retries, on a scripted transport ---------------------------------------------------


class Script:
    """Answers each request with the next scripted response; records every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def problem(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/problem+json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {"type": f"tag:earmark,2025:problem:{code}", "title": code, "status": status}
    return httpx.Response(status, headers=headers, json={**body, "detail": code, "code": code})


RESERVED = {
    "id": "rsv_" + "1" * 24 + "_0",
    "status": "held",
    "lines": [{"sku": "A", "location": "default", "qty": 1}],
    "created_at": "2026-12-01T00:00:00Z",
    "expires_at": "2026-12-01T00:15:00Z",
}


def scripted(script: Script, pauses: list[float], **retry: Any) -> Client:
    return Client(
        "http://earmark.test",
        transport=httpx.MockTransport(script),
        retry=Retry(jitter=lambda: 1.0, **retry),
        sleep=pauses.append,
    )


def test_a_write_is_retried_with_the_same_key_honouring_retry_after() -> None:
    script = Script(problem(503, "overloaded", "1"), problem(429, "rate_limited", "2"))
    script.answers.append(httpx.Response(201, json=RESERVED))
    pauses: list[float] = []
    held = scripted(script, pauses).reserve([("A", 1)])
    assert held.id == RESERVED["id"]
    keys = {r.headers["idempotency-key"] for r in script.requests}
    assert len(script.requests) == 3 and len(keys) == 1
    assert pauses == [1.0, 2.0]


def test_the_backoff_grows_and_gives_up_with_the_last_error() -> None:
    script = Script(*[problem(503, "store_unavailable") for _ in range(4)])
    pauses: list[float] = []
    with pytest.raises(StoreUnavailable):
        scripted(script, pauses, backoff_base_seconds=0.1).reserve([("A", 1)])
    assert len(script.requests) == 4
    assert pauses == [0.1, 0.2, 0.4]


def test_a_retry_after_beyond_the_bound_is_not_waited_for() -> None:
    script = Script(problem(503, "overloaded", "3600"))
    pauses: list[float] = []
    with pytest.raises(Overloaded):
        scripted(script, pauses).reserve([("A", 1)])
    assert (len(script.requests), pauses) == (1, [])


def test_a_request_without_an_idempotency_key_is_never_retried() -> None:
    script = Script(problem(503, "overloaded", "0"))
    pauses: list[float] = []
    with pytest.raises(Overloaded):
        scripted(script, pauses).update_webhook_endpoint("wh_1", description="x")
    assert len(script.requests) == 1
    assert "idempotency-key" not in script.requests[0].headers


def test_a_reorder_put_sends_a_key_and_is_retried_with_it() -> None:
    setting = {"sku": "A", "location": "default", "reorder_point": 4, "rearm_above": 8}
    script = Script(problem(503, "overloaded", "1"), httpx.Response(200, json=setting))
    pauses: list[float] = []
    answered = scripted(script, pauses).set_reorder("A", 4, 8)
    assert isinstance(answered, ReorderSetting) and answered.reorder_point == 4
    assert [r.method for r in script.requests] == ["PUT", "PUT"]
    keys = {r.headers["idempotency-key"] for r in script.requests}
    assert len(keys) == 1 and pauses == [1.0]


def test_a_refusal_is_not_retried() -> None:
    script = Script(problem(409, "insufficient_stock"))
    pauses: list[float] = []
    with pytest.raises(InsufficientStock):
        scripted(script, pauses).reserve([("A", 1)])
    assert len(script.requests) == 1


def test_a_dropped_connection_is_retried_for_a_read() -> None:
    level = {"sku": "A", "location": "default", "on_hand": 1, "available": 1}
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=level))
    pauses: list[float] = []
    stock = scripted(script, pauses).stock("A", "default")
    assert stock.on_hand == 1 and len(script.requests) == 2


def test_an_answer_that_is_no_problem_is_an_unexpected_response() -> None:
    script = Script(httpx.Response(500, text="<html>proxy error</html>"))
    with pytest.raises(UnexpectedResponse) as error:
        scripted(script, []).stock("A")
    assert error.value.details["status"] == 500


async def test_the_async_client_retries_alike() -> None:
    script = Script(problem(503, "overloaded", "1"), httpx.Response(201, json=RESERVED))
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    client = AsyncClient(
        "http://earmark.test",
        transport=httpx.MockTransport(script),
        retry=Retry(jitter=lambda: 1.0),
        sleep=sleep,
    )
    async with client:
        held = await client.reserve([("A", 1)], idempotency_key="given")
    assert held.id == RESERVED["id"] and pauses == [1.0]
    assert [r.headers["idempotency-key"] for r in script.requests] == ["given", "given"]


async def test_seats_over_the_client_answer_and_refuse_as_the_library(api: Api) -> None:
    from earmark import SeatLimitReached

    async with asgi_client(api, api.tokens["admin"]) as client:
        pool = await client.set_seat_cap("acme", 1)
        assert (pool.cap, pool.limit) == (1, 1)
        seat = await client.assign_seat("acme", "ann")
        again = await client.assign_seat("acme", "ann")
        assert (seat.created, again.created) == (True, False)
        with pytest.raises(SeatLimitReached):
            await client.assign_seat("acme", "bob")
        assert (await client.seats("acme")).assigned == 1
        assert [u.user for u in (await client.seat_users("acme")).users] == ["ann"]
        await client.free_seat("acme", "ann")
        assert (await client.seats("acme")).assigned == 0
