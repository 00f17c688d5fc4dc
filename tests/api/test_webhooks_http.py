"""``/v1/webhooks``: endpoints, rotation, replay and deliveries over HTTP, with problem
details; then ``serve``'s in-process worker end to end, its metrics, and readiness that a
failing endpoint does not touch."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import pytest

from earmark import AsyncEngine, EngineConfig, apikeys
from earmark.api.app import create_app
from earmark.store.webhooks import webhook_store
from earmark.webhooks import verify
from earmark.webhooks.service import WebhookService
from tests.support.api import BASE_URL, KEYED_HOOKS, Api, make_settings, open_api, problem_of
from tests.support.backends import fresh_prefix
from tests.support.durable import eventually
from tests.support.receivers import Receiver, always, failing_first
from tests.support.webhooks import FakeClock, Writer, short_config

PUBLIC = "https://93.184.215.14/hooks/earmark"  # a public address: no DNS needed
ENDPOINTS = "/v1/webhooks/endpoints"


@pytest.fixture
async def local() -> AsyncIterator[Api]:
    """Auth on, private addresses allowed (the receivers are on 127.0.0.1), no worker."""
    async with open_api(make_settings(webhooks_allow_private=True)) as opened:
        yield opened


async def create(api: Api, url: str = PUBLIC, **body: Any) -> dict[str, Any]:
    response = await api.admin.post(ENDPOINTS, json={"url": url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{ENDPOINTS}/{created['id']}"
    return created


async def test_an_endpoint_is_created_with_its_secret_shown_once(api: Api) -> None:
    created = await create(api, events=["stock.changed", "reservation.*"], description="erp")
    assert created["secret"].startswith("whsec_")
    assert (created["url"], created["events"], created["disabled"]) == (
        PUBLIC, ["stock.changed", "reservation.*"], False
    )  # fmt: skip
    shown = (await api.reader.get(f"{ENDPOINTS}/{created['id']}")).json()
    assert "secret" not in shown and shown["description"] == "erp"
    listed = (await api.reader.get(ENDPOINTS)).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert (await create(api))["events"] == ["*"]  # every type by default


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.com/x"}, "invalid_request"),  # the schema's pattern
        ({"url": "http://127.0.0.1:8080/hook"}, "invalid_webhook_url"),
        ({"url": "http://169.254.169.254/latest"}, "invalid_webhook_url"),
        ({"url": "http://localhost/x"}, "invalid_webhook_url"),
        ({"url": PUBLIC, "events": ["stock.typo"]}, "invalid_request"),
        ({"url": PUBLIC, "events": []}, "invalid_request"),
        ({"url": PUBLIC, "extra": 1}, "invalid_request"),
    ],
    ids=["scheme", "loopback", "link-local", "localhost", "type", "no-types", "unknown-field"],
)
async def test_bad_endpoints_are_refused_and_nothing_is_written(
    api: Api, body: dict[str, Any], code: str
) -> None:
    problem_of(await api.admin.post(ENDPOINTS, json=body), 422, code)
    assert (await api.reader.get(ENDPOINTS)).json()["items"] == []


async def test_scopes_reads_need_read_and_writes_need_stock(api: Api) -> None:
    problem_of(await api.reader.post(ENDPOINTS, json={"url": PUBLIC}), 403, "forbidden")
    problem_of(await api.reserver.get(ENDPOINTS), 403, "forbidden")
    problem_of(await api.anon.get(ENDPOINTS), 401, "unauthorized")
    created = (await api.stocker.post(ENDPOINTS, json={"url": PUBLIC})).json()
    path = f"{ENDPOINTS}/{created['id']}"
    problem_of(await api.reader.delete(path), 403, "forbidden")
    problem_of(await api.reader.post(f"{path}/rotate-secret"), 403, "forbidden")


async def test_patch_and_delete(api: Api) -> None:
    created = await create(api)
    path = f"{ENDPOINTS}/{created['id']}"
    patched = await api.admin.patch(path, json={"events": ["stock.*"], "disabled": True})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["events"], body["disabled"], body["disabled_reason"]) == (
        ["stock.*"], True, "operator"
    )  # fmt: skip
    enabled = (await api.admin.patch(path, json={"disabled": False})).json()
    assert (enabled["disabled"], enabled["disabled_reason"]) == (False, None)
    moved = await api.admin.patch(path, json={"url": "https://93.184.215.15/x"})
    assert moved.json()["url"] == "https://93.184.215.15/x"
    problem_of(
        await api.admin.patch(path, json={"url": "http://10.0.0.1/"}), 422, "invalid_webhook_url"
    )
    assert (await api.admin.delete(path)).status_code == 204
    problem_of(await api.reader.get(path), 404, "webhook_endpoint_not_found")
    problem_of(await api.admin.delete(path), 404, "webhook_endpoint_not_found")
    problem_of(await api.reader.get(f"{ENDPOINTS}/not-ours"), 404, "webhook_endpoint_not_found")


async def test_rotate_secret(api: Api) -> None:
    created = await create(api)
    path = f"{ENDPOINTS}/{created['id']}/rotate-secret"
    rotated = await api.admin.post(path, json={"grace_seconds": 3600})
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    expires = datetime.datetime.fromisoformat(body["previous_secret_expires_at"])
    now = datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=59) < expires - now <= datetime.timedelta(hours=1)
    default = (await api.admin.post(path)).json()  # no body: the configured grace (24 h)
    expires = datetime.datetime.fromisoformat(default["previous_secret_expires_at"])
    assert expires - now > datetime.timedelta(hours=23)
    problem_of(await api.admin.post(path, json={"grace_seconds": -1}), 422, "invalid_request")


async def test_replay_by_seq_or_since(api: Api) -> None:
    created = await create(api)
    path = f"{ENDPOINTS}/{created['id']}/replay"
    by_seq = await api.admin.post(path, json={"after_seq": 0})
    assert by_seq.status_code == 202, by_seq.text
    assert by_seq.json()["status"] == "running" and by_seq.json()["after_seq"] == 0
    since = await api.admin.post(path, json={"since": "2025-01-01T00:00:00+00:00"})
    assert since.status_code == 202 and since.json()["since"].startswith("2025-01-01")
    for bad in ({}, {"after_seq": 1, "since": "2025-01-01T00:00:00Z"}, {"after_seq": -1},
                {"since": "2025-01-01T00:00:00"}):  # fmt: skip
        problem_of(await api.admin.post(path, json=bad), 422, "invalid_request")
    problem_of(
        await api.admin.post(f"{ENDPOINTS}/ep_{'0' * 24}/replay", json={"after_seq": 0}),
        404,
        "webhook_endpoint_not_found",
    )


async def test_webhook_posts_take_an_idempotency_key(api: Api) -> None:
    key = {"Idempotency-Key": "create-erp-hook"}
    first = await api.admin.post(ENDPOINTS, json={"url": PUBLIC}, headers=key)
    again = await api.admin.post(ENDPOINTS, json={"url": PUBLIC}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()  # the same endpoint and secret, not a second one
    assert len((await api.reader.get(ENDPOINTS)).json()["items"]) == 1
    other = await api.admin.post(ENDPOINTS, json={"url": PUBLIC + "/2"}, headers=key)
    problem_of(other, 422, "idempotency_conflict")


async def test_deliveries_are_listed_newest_first_with_a_cursor(
    local: Api, receiver_factory: Any
) -> None:
    receiver: Receiver = receiver_factory(failing_first(2))
    created = await create(local, receiver.url, events=["adjustment.*"])
    ledger = local.app.state.durable.ledger
    clock = FakeClock()
    service = WebhookService(ledger, short_config(schedule_seconds=(0, 1, 1)), clock=clock)
    try:
        await Writer(ledger).receipts(2)
        for _ in range(3):
            await service.run_once()
            clock.advance(2)
    finally:
        await service.close()
    path = f"{ENDPOINTS}/{created['id']}/deliveries"
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await local.reader.get(path, params=params)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and [a["id"] for a in seen] == sorted(
        (a["id"] for a in seen), reverse=True
    )
    assert sorted((a["attempt"], a["status_code"], a["outcome"]) for a in seen) == [
        (1, 500, "failed"), (1, 500, "failed"), (2, 500, "failed"), (2, 500, "failed"),
        (3, 200, "delivered"), (3, 200, "delivered"),
    ]  # fmt: skip
    assert all(a["message_id"].startswith("msg_") and a["latency_ms"] >= 0 for a in seen)
    problem_of(await local.reader.get(path, params={"cursor": "x"}), 422, "invalid_request")


async def test_serve_delivers_from_the_record_and_readiness_ignores_a_failing_endpoint(
    receiver_factory: Any,
) -> None:
    """The app as ``serve`` builds it (embedded, flusher and webhook worker in-process):
    a receipt over HTTP reaches a receiver, signed; an endpoint answering 500 leaves
    /readyz at 200; /metrics counts the attempts."""
    good: Receiver = receiver_factory(always(200))
    bad: Receiver = receiver_factory(always(500))
    server = fakeredis.FakeServer()
    config = EngineConfig(prefix=fresh_prefix())
    engine = AsyncEngine.embedded(config, server=server)
    await engine.start()
    settings = make_settings(
        webhooks_allow_private=True, webhooks_timeout_seconds=1, webhooks_lease_seconds=5
    )
    app = create_app(settings, engine)
    token, key = apikeys.new_key("ops", frozenset(apikeys.SCOPES))
    assert await (await app.state.durable.ledger_for_reads()).create_api_key(key)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, headers=headers, event_hooks=KEYED_HOOKS
            ) as client,
        ):
            made = []
            for receiver, events in ((good, ["stock.changed"]), (bad, ["*"])):
                response = await client.post(
                    ENDPOINTS, json={"url": receiver.url, "events": events}
                )
                made.append(response.json())
            assert (await client.post("/v1/skus/HOOK/receipts", json={"qty": 7})).status_code == 200

            async def arrived() -> bool:
                return bool(good.received()) and bool(bad.received())

            await eventually(arrived, 30, "the webhook at both receivers")
            event = verify(made[0]["secret"], good.received()[0].headers, good.received()[0].body)
            assert event["type"] == "stock.changed"
            assert (event["data"]["sku"], event["data"]["on_hand"], event["data"]["seq"]) == (
                "HOOK", 7, 1
            )  # fmt: skip
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert "webhook" not in ready.text
            metrics = (await client.get("/metrics")).text
            assert (
                f'earmark_webhook_attempts_total{{endpoint="{made[0]["id"]}",outcome="delivered"}}'
                in metrics
            )
            assert f'endpoint="{made[1]["id"]}",outcome="failed"' in metrics
            assert "earmark_webhook_oldest_undelivered_seconds" in metrics
            store = webhook_store(app.state.durable.ledger)
            failing = await store.endpoint(made[1]["id"])
            assert failing is not None and failing.failing_since_ms is not None
    finally:
        await engine.close()
