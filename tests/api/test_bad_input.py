"""Bad input: each is a problem+json 4xx with its code, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api, problem_of

KEY = {"Idempotency-Key": "bad"}
RSV = "/v1/reservations"


def cart(*lines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"lines": list(lines), **extra}


# (id, path, body (bytes: raw), headers, status, code)
BAD: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    ("malformed json", RSV, b'{"lines": [', KEY, 400, "malformed_json"),
    ("malformed json receipt", "/v1/skus/A/receipts", b"{qty: 1}", {}, 400, "malformed_json"),
    ("body not an object", RSV, [1, 2], KEY, 422, "invalid_request"),
    ("qty as string", RSV, cart({"sku": "A", "qty": "1"}), KEY, 422, "invalid_request"),
    ("qty as float", RSV, cart({"sku": "A", "qty": 1.5}), KEY, 422, "invalid_request"),
    ("qty as bool", RSV, cart({"sku": "A", "qty": True}), KEY, 422, "invalid_request"),
    ("zero qty", RSV, cart({"sku": "A", "qty": 0}), KEY, 422, "invalid_request"),
    ("negative qty", RSV, cart({"sku": "A", "qty": -1}), KEY, 422, "invalid_request"),
    ("huge qty", RSV, cart({"sku": "A", "qty": 10**9}), KEY, 422, "invalid_request"),
    ("huge receipt", "/v1/skus/A/receipts", {"qty": 10**18}, {}, 422, "invalid_request"),
    ("empty sku", RSV, cart({"sku": "", "qty": 1}), KEY, 422, "invalid_request"),
    ("sku charset", RSV, cart({"sku": "A B", "qty": 1}), KEY, 422, "invalid_request"),
    ("path sku charset", "/v1/skus/A%20B/receipts", {"qty": 1}, {}, 422, "invalid_request"),
    ("path sku too long", f"/v1/skus/{'A' * 65}/receipts", {"qty": 1}, {}, 422,
     "invalid_request"),
    ("empty cart", RSV, cart(), KEY, 422, "invalid_request"),
    ("oversized cart", RSV, cart(*({"sku": f"S{i}", "qty": 1} for i in range(51))), KEY, 422,
     "invalid_request"),
    ("duplicate line", RSV, cart({"sku": "A", "qty": 1}, {"sku": "A", "qty": 1}), KEY, 422,
     "invalid_request"),
    ("unknown field", RSV, cart({"sku": "A", "qty": 1}, gift=True), KEY, 422, "invalid_request"),
    ("unknown line field", RSV, cart({"sku": "A", "qty": 1, "x": 1}), KEY, 422,
     "invalid_request"),
    ("missing idempotency key", RSV, cart({"sku": "A", "qty": 1}), {}, 400,
     "idempotency_key_required"),
    ("idempotency key too long", RSV, cart({"sku": "A", "qty": 1}),
     {"Idempotency-Key": "k" * 256}, 422, "invalid_request"),
    ("ttl too short", RSV, cart({"sku": "A", "qty": 1}, ttl_seconds=0.5), KEY, 422,
     "invalid_request"),
    ("ttl too long", RSV, cart({"sku": "A", "qty": 1}, ttl_seconds=10**7), KEY, 422,
     "invalid_request"),
    ("ttl as string", RSV, cart({"sku": "A", "qty": 1}, ttl_seconds="60"), KEY, 422,
     "invalid_request"),
    ("channel control char", RSV, cart({"sku": "A", "qty": 1}, channel="a\nb"), KEY, 422,
     "invalid_request"),
    ("zero delta", "/v1/skus/A/adjustments", {"delta": 0, "reason": "x"}, {}, 422,
     "invalid_request"),
    ("no reason", "/v1/skus/A/adjustments", {"delta": 1, "reason": ""}, {}, 422,
     "invalid_request"),
    ("force as string", "/v1/skus/A/adjustments", {"delta": 1, "reason": "x", "force": "yes"},
     {}, 422, "invalid_request"),
    ("extend without ttl", f"{RSV}/rsv_{'0' * 24}_0/extend", {}, {}, 422, "invalid_request"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
async def test_bad_input_is_refused_and_writes_nothing(
    api: Api, path: str, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 5})
    before = await api.stream_lengths(), await api.levels("A")
    client = api.bare["admin"]  # sends no Idempotency-Key unless the case names one
    headers = {"Idempotency-Key": "bad", **headers} if code != "idempotency_key_required" else {}
    if isinstance(body, bytes):
        headers = {**headers, "Content-Type": "application/json"}
        response = await client.post(path, content=body, headers=headers)
    else:
        response = await client.post(path, json=body, headers=headers)
    problem = problem_of(response, status, code)
    if code == "invalid_request":
        assert problem["detail"]
    assert (await api.stream_lengths(), await api.levels("A")) == before


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    problem_of(await api.admin.get("/nope"), 404, "not_found")
    problem_of(await api.admin.get("/v1/stocks"), 404, "not_found")  # /v1/skus lists
    wrong = await api.admin.delete("/v1/skus/A")
    problem_of(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET"
    problem_of(await api.admin.put("/v1/reservations"), 405, "method_not_allowed")


async def test_validation_errors_list_what_is_wrong(api: Api) -> None:
    response = await api.admin.post(RSV, json=cart({"sku": "A", "qty": 0}, extra=1), headers=KEY)
    body = problem_of(response, 422, "invalid_request")
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "lines", "0", "qty"),
        ("body", "extra"),
    }
    assert "detail" not in body["errors"][0]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/skus/A/receipts", b'{"qty": 1}'),
        (RSV, b'{"lines": [{"sku": "A", "qty": 1}]}'),
        ("/v1/skus/A/adjustments", b'{"delta": 1, "reason": "x"}'),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_json_sent_without_its_content_type_says_so(
    api: Api, path: str, body: bytes, content_type: str
) -> None:
    """curl -d sends form encoding: the answer names the header to send, not 'Input
    should be a valid dictionary'."""
    before = await api.stream_lengths(), await api.levels("A")
    response = await api.admin.post(path, content=body, headers={"Content-Type": content_type})
    problem = problem_of(response, 415, "unsupported_media_type")
    assert "Content-Type: application/json" in problem["detail"]
    assert content_type in problem["detail"]
    assert (await api.stream_lengths(), await api.levels("A")) == before


async def test_a_missing_body_names_the_fields(api: Api) -> None:
    before = await api.stream_lengths(), await api.levels("A")
    problem = problem_of(await api.admin.post("/v1/skus/A/receipts"), 422, "invalid_request")
    assert problem["detail"].startswith("this request needs a JSON body")
    assert "qty (required)" in problem["detail"] and problem["required"] == ["qty"]
    problem = problem_of(await api.admin.post("/v1/skus/A/adjustments"), 422, "invalid_request")
    assert problem["required"] == ["delta", "reason"]
    assert (await api.stream_lengths(), await api.levels("A")) == before
