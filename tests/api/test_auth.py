"""API keys: 401 without a valid token, 403 without the scope, the key's name as actor."""

from __future__ import annotations

import logging

import pytest

from earmark.api.command import add_serve
from earmark.cli.main import build_parser
from earmark.errors import StartupRefused
from tests.support.api import Api, make_settings, open_api, problem_of

RID = "rsv_" + "0" * 24 + "_0"
# (method, path, json body, scope needed). Requests that pass auth may still fail later
# (e.g. 404): the test only checks they got past it.
ROUTES = [
    ("GET", "/v1/skus/A", None, "read"),
    ("GET", "/v1/availability?sku=A", None, "read"),
    ("GET", f"/v1/reservations/{RID}", None, "read"),
    ("POST", "/v1/reservations", {"lines": [{"sku": "A", "qty": 1}]}, "reserve"),
    ("POST", f"/v1/reservations/{RID}/commit", None, "reserve"),
    ("POST", f"/v1/reservations/{RID}/release", None, "reserve"),
    ("POST", f"/v1/reservations/{RID}/extend", {"ttl_seconds": 60}, "reserve"),
    ("POST", "/v1/skus/A/receipts", {"qty": 1}, "stock"),
    ("POST", "/v1/skus/A/adjustments", {"delta": 1, "reason": "r"}, "stock"),
    ("POST", f"/v1/reservations/{RID}/ship", None, "stock"),
]
HOLDERS = {"read": "reader", "reserve": "reserver", "stock": "stocker"}


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
async def test_each_scope_is_allowed_and_refused_as_specified(
    api: Api, method: str, path: str, body: object, scope: str
) -> None:
    headers = {"Idempotency-Key": "auth-test"}
    for name in ("reader", "reserver", "stocker", "admin"):
        client = api.clients[name]
        response = await client.request(method, path, json=body, headers=headers)
        allowed = name == "admin" or HOLDERS[scope] == name
        if allowed:
            assert response.status_code not in (401, 403), (name, response.text)
        else:
            assert problem_of(response, 403, "forbidden")["scope"] == scope
    missing = await api.anon.request(method, path, json=body, headers=headers)
    assert problem_of(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = {**headers, "Authorization": "Bearer em_not-a-key"}
    problem_of(await api.anon.request(method, path, json=body, headers=wrong), 401, "unauthorized")
    basic = {**headers, "Authorization": "Basic dXNlcjpwYXNz"}
    problem_of(await api.anon.request(method, path, json=body, headers=basic), 401, "unauthorized")


async def test_writes_record_the_key_name_as_actor(api: Api) -> None:
    await api.stocker.post("/v1/skus/A/receipts", json={"qty": 5})
    held = await api.reserver.post(
        "/v1/reservations",
        json={"lines": [{"sku": "A", "qty": 2}]},
        headers={"Idempotency-Key": "k"},
    )
    rid = held.json()["id"]
    await api.admin.post(f"/v1/reservations/{rid}/commit")
    actors = {e["type"]: e["actor"] for e in await api.events()}
    assert actors == {"received": "stocker", "reserved": "reserver", "committed": "admin"}


async def test_a_revoked_key_is_refused(api: Api) -> None:
    assert (await api.reader.get("/v1/availability?sku=A")).status_code == 200
    assert await api.revoke_key("reader")
    problem_of(await api.reader.get("/v1/availability?sku=A"), 401, "unauthorized")


async def test_without_any_key_auth_is_off_on_loopback(open_access: Api) -> None:
    response = await open_access.anon.post("/v1/skus/A/receipts", json={"qty": 5})
    assert response.status_code == 200
    (event,) = await open_access.events()
    assert event["actor"] == "anonymous"
    token = await open_access.create_key("first", frozenset({"read"}))
    # once a key exists, tokens are required
    problem_of(await open_access.anon.get("/v1/skus/A"), 401, "unauthorized")
    ok = await open_access.anon.get("/v1/skus/A", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


async def test_health_and_metrics_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await api.anon.get(path)).status_code == 200, path


# -- auth never opens by itself ------------------------------------------------------------


async def test_revoking_the_last_key_keeps_auth_on(api: Api) -> None:
    """A server that required tokens at start keeps requiring them: revoking every key
    leaves nobody authorized, it does not turn auth off (an unauthenticated adjustment
    used to be 200)."""
    for name in ("reader", "reserver", "stocker", "admin"):
        assert await api.revoke_key(name)
    assert await api.durable.api_keys() == []
    body = {"delta": 5, "reason": "free stock"}
    refused = await api.anon.post("/v1/skus/X/adjustments", json=body)
    problem_of(refused, 401, "unauthorized")
    assert await api.stream_lengths() == [0]


async def test_a_redis_loss_keeps_auth_on(api: Api) -> None:
    """The API keys live in the durable record, not in Redis: when Redis loses its data
    nobody is let in without a token (an empty Redis must never read as 'auth off')."""
    await api.engine.client.flushall()
    problem_of(await api.anon.get("/v1/skus/A"), 401, "unauthorized")
    problem_of(await api.anon.get("/v1/availability?sku=A"), 401, "unauthorized")


async def test_the_first_run_default_closes_for_good_once_a_key_exists(
    open_access: Api,
) -> None:
    await open_access.create_key("first", frozenset({"read"}))
    problem_of(await open_access.anon.get("/v1/skus/A"), 401, "unauthorized")
    assert await open_access.revoke_key("first")
    problem_of(await open_access.anon.get("/v1/skus/A"), 401, "unauthorized")
    problem_of(await open_access.anon.post("/v1/skus/A/receipts", json={"qty": 1}), 401,
               "unauthorized")  # fmt: skip


async def test_a_server_on_redis_without_keys_requires_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Open mode is never a server's default on a real Redis: without any key nobody is
    let in (until a key is created), and the log says how to create one or opt out."""
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")  # the engine is given
    with caplog.at_level(logging.WARNING, logger="earmark"):
        async with open_api(settings, keys=False) as served:
            problem_of(await served.anon.get("/v1/skus/A"), 401, "unauthorized")
            token = await served.create_key("late", frozenset({"stock"}))
            headers = {"Authorization": f"Bearer {token}"}
            created = await served.anon.post(
                "/v1/skus/A/receipts", json={"qty": 1}, headers=headers
            )
            assert created.status_code == 200
    assert "no API key exists" in caplog.text and "--no-auth" in caplog.text


async def test_no_auth_is_an_explicit_loopback_only_decision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`earmark serve --no-auth` (Settings.no_auth): open even though keys exist, logged
    loudly; refused anywhere but on loopback."""
    with caplog.at_level(logging.WARNING, logger="earmark"):
        async with open_api(make_settings(no_auth=True)) as served:
            response = await served.anon.post("/v1/skus/A/receipts", json={"qty": 1})
            assert response.status_code == 200
    assert "AUTH IS OFF" in caplog.text and "--no-auth" in caplog.text
    with pytest.raises(StartupRefused, match="--no-auth"):
        async with open_api(make_settings(no_auth=True, host="0.0.0.0")):
            pass


def test_serve_takes_no_auth_on_the_command_line() -> None:
    args = build_parser([add_serve]).parse_args(["serve", "--no-auth"])
    assert args.no_auth is True
    assert build_parser([add_serve]).parse_args(["serve"]).no_auth is False
