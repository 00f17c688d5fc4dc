"""GET /v1/ledger: the durable record, page by page, on SQLite and on a real PostgreSQL;
503 ledger_unavailable without a record to read."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import fakeredis
import httpx
import pytest

from earmark import AsyncEngine, EngineConfig
from earmark.api.app import create_app
from earmark.durable.flusher import Flusher
from earmark.durable.service import DurableService
from tests.support.api import BASE_URL, KEYED_HOOKS, Api, make_settings, open_api, problem_of
from tests.support.backends import fresh_prefix
from tests.support.servers import free_port


async def flush(api: Api) -> int:
    """What the write-behind flusher does in ``serve``: the events waiting, recorded."""
    durable: DurableService = api.app.state.durable
    flusher = Flusher.for_engine(api.engine, await durable.ledger_for_reads(), consumer="test")
    try:
        return await flusher.drain()
    finally:
        await flusher.close()


async def history(api: Api) -> None:
    """25 events over A (two locations) and B: receipts, a transfer, damage, a sale."""
    a = api.stocker
    for i in range(8):
        await a.post("/v1/skus/A/receipts", json={"qty": i + 1, "reference": f"PO-{i}"})
        await a.post("/v1/skus/B/receipts", json={"qty": 1})
    move = {"qty": 2, "from_location": "default", "to_location": "b"}
    sent = (await a.post("/v1/skus/A/transfers", json=move)).json()
    await a.post(f"/v1/transfers/{sent['id']}/receipt", json={"qty_received": 2})
    await a.post("/v1/skus/A/damage", json={"qty": 1, "reason": "dropped"})
    await a.post("/v1/skus/B/damage", json={"qty": 1, "reason": "wet"})
    cart = {"lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1}]}
    held = await api.reserver.post("/v1/reservations", json=cart, headers={"Idempotency-Key": "c"})
    await api.reserver.post(f"/v1/reservations/{held.json()['id']}/commit")


async def walk(client: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a query, following next_cursor."""
    pages = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/ledger", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def check_paging_and_filters(api: Api) -> None:
    await history(api)
    assert await walk(api.reader) == [[]]  # nothing flushed yet: the ledger is behind
    assert await flush(api) == 25
    (everything,) = await walk(api.reader, limit=1000)
    assert len(everything) == 25
    assert [e["id"] for e in everything] == sorted(
        (e["id"] for e in everything), key=lambda i: tuple(map(int, i.replace("/", "-").split("-")))
    )
    pages = await walk(api.reader, limit=10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [e for page in pages for e in page] == everything
    exact = await walk(api.reader, limit=5)  # the last full page says there is no more
    assert [len(page) for page in exact] == [5] * 5

    def expect(keep: Any, **params: Any) -> Any:
        return [e for e in everything if keep(e)], params

    since = everything[12]["occurred_at"]
    cases = [
        expect(lambda e: e["sku"] == "A", sku="A"),
        expect(lambda e: e["location"] == "b", location="b"),
        expect(lambda e: e["sku"] == "A" and e["location"] == "default", sku="A",
               location="default"),
        expect(lambda e: e["type"] in ("damaged", "committed"), type=["damaged", "committed"]),
        expect(lambda e: e["occurred_at"] >= since, since=since),
        expect(lambda e: e["sku"] == "B" and e["type"] == "received", sku="B", type="received"),
    ]  # fmt: skip
    for wanted, params in cases:
        pages = await walk(api.reader, limit=3, **params)
        assert [e for page in pages for e in page] == wanted, params
        assert all(len(page) <= 3 for page in pages)
    damaged = next(e for e in everything if e["type"] == "damaged" and e["sku"] == "A")
    assert (damaged["actor"], damaged["reason"], damaged["deltas"]) == (
        "stocker",
        "dropped",
        {"on_hand": -1, "damaged": 1},
    )
    assert damaged["attributes"]["forced"] == "0"
    later = datetime.fromisoformat(everything[-1]["occurred_at"]) + timedelta(seconds=1)
    assert await walk(api.reader, since=later.isoformat()) == [[]]


async def test_the_ledger_pages_through_sqlite(api: Api) -> None:
    await check_paging_and_filters(api)


@pytest.mark.postgres
async def test_the_ledger_pages_through_postgresql(pg_url: str) -> None:
    async with open_api(make_settings(database_url=pg_url)) as api:
        await check_paging_and_filters(api)


BAD = [
    {"limit": 0},
    {"limit": 1001},
    {"limit": "ten"},
    {"cursor": "not a cursor"},
    {"cursor": "bm9wZQ"},  # base64 of "nope"
    {"since": "2026-01-01T00:00:00"},  # no offset: ambiguous
    {"since": "yesterday"},
    {"since": "0.0"},  # seconds since the epoch: not the RFC 3339 the schema says
    {"since": "1796287225"},
    {"type": "Damaged"},
    {"sku": "A B"},
    {"type": [f"t{i}" for i in range(33)]},
]


@pytest.mark.parametrize("params", BAD, ids=[str(p)[:40] for p in BAD])
async def test_bad_queries_are_refused(api: Api, params: dict[str, Any]) -> None:
    response = await api.reader.get("/v1/ledger", params=params)
    assert problem_of(response, 422, "invalid_request")["detail"]


async def test_a_cursor_round_trips(api: Api) -> None:
    await history(api)
    await flush(api)
    first = (await api.reader.get("/v1/ledger", params={"limit": 4})).json()
    again = (await api.reader.get("/v1/ledger", params={"limit": 4})).json()
    assert first == again  # a page is a pure function of the query and the record
    cursor = first["next_cursor"]
    assert isinstance(cursor, str) and cursor
    second = (await api.reader.get("/v1/ledger", params={"limit": 4, "cursor": cursor})).json()
    eight = (await walk(api.reader, limit=8))[0]
    assert first["items"] + second["items"] == eight


async def test_the_ledger_needs_the_read_scope(api: Api) -> None:
    problem_of(await api.stocker.get("/v1/ledger"), 403, "forbidden")
    problem_of(await api.anon.get("/v1/ledger"), 401, "unauthorized")


class NoRecord:
    """A durable record that keeps no ledger (as a test double or a custom hook may)."""

    async def prepare(self, engine: AsyncEngine) -> bool:
        return True

    async def start(self, engine: AsyncEngine) -> None:
        return None

    async def stop(self) -> None:
        return None

    def lag_source(self) -> None:
        return None

    async def ledger_for_reads(self) -> None:
        return None

    async def api_keys(self) -> list[Any]:
        return []

    async def database_check(self) -> None:
        return None


async def read_ledger(durable: Any) -> httpx.Response:
    config = EngineConfig(prefix=fresh_prefix())
    engine = AsyncEngine.embedded(config, server=fakeredis.FakeServer())
    app = create_app(make_settings(), engine, durable=durable)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, event_hooks=KEYED_HOOKS
        ) as client:
            return await client.get("/v1/ledger")


async def test_without_a_durable_record_the_ledger_is_unavailable() -> None:
    body = problem_of(await read_ledger(NoRecord()), 503, "ledger_unavailable")
    assert "durable record" in body["detail"]


async def test_an_unreachable_record_makes_the_ledger_unavailable() -> None:
    down = DurableService(f"postgresql://earmark@127.0.0.1:{free_port()}/none")
    problem_of(await read_ledger(down), 503, "ledger_unavailable")
