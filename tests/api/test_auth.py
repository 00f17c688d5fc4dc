"""API keys: 401 without a valid token, 403 without the scope, the key's name as actor."""

from __future__ import annotations

import pytest

from tests.support.api import Api, problem_of

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
