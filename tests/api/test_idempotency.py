"""Every POST: a replay of a success returns the original status and body, marked
`Idempotent-Replayed: true`; the same key with another body is refused with 422
idempotency_conflict, and writes nothing. A refusal binds nothing: a retry re-evaluates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import Api, problem_of


@dataclass(frozen=True)
class Post:
    name: str
    path: Callable[[str], str]  # reservation id -> path
    body: dict[str, Any] | None
    other: dict[str, Any] | None  # another body for the same key (None: another target)
    setup: Callable[[Api, str], Awaitable[None]] | None = None


async def commit(api: Api, rid: str) -> None:
    response = await api.admin.post(f"/v1/reservations/{rid}/commit")
    assert response.status_code == 200


POSTS = [
    Post("receipt", lambda _: "/v1/skus/A/receipts", {"qty": 3}, {"qty": 4}),
    Post("adjustment", lambda _: "/v1/skus/A/adjustments", {"delta": -1, "reason": "count"},
         {"delta": -2, "reason": "count"}),
    Post("reserve", lambda _: "/v1/reservations", {"lines": [{"sku": "A", "qty": 1}]},
         {"lines": [{"sku": "A", "qty": 2}]}),
    Post("commit", lambda rid: f"/v1/reservations/{rid}/commit", None, None),
    Post("release", lambda rid: f"/v1/reservations/{rid}/release", None, None),
    Post("extend", lambda rid: f"/v1/reservations/{rid}/extend", {"ttl_seconds": 120},
         {"ttl_seconds": 180}),
    Post("ship", lambda rid: f"/v1/reservations/{rid}/ship", None, None, setup=commit),
]  # fmt: skip


async def prepare(api: Api) -> tuple[str, str]:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 10})
    ids = []
    for key in ("one", "two"):
        response = await api.admin.post(
            "/v1/reservations",
            json={"lines": [{"sku": "A", "qty": 1}]},
            headers={"Idempotency-Key": key},
        )
        ids.append(response.json()["id"])
    return ids[0], ids[1]


@pytest.mark.parametrize("post", POSTS, ids=[p.name for p in POSTS])
async def test_a_replay_returns_the_original_and_a_conflict_is_refused(
    api: Api, post: Post
) -> None:
    rid, other_rid = await prepare(api)
    if post.setup is not None:
        await post.setup(api, rid)
    headers = {"Idempotency-Key": f"idem-{post.name}"}
    first = await api.admin.post(post.path(rid), json=post.body, headers=headers)
    assert first.status_code < 500
    written = await api.stream_lengths(), await api.levels("A")
    replay = await api.admin.post(post.path(rid), json=post.body, headers=headers)
    assert (replay.status_code, replay.headers["content-type"]) == (
        first.status_code,
        first.headers["content-type"],
    )
    assert replay.json() == first.json()
    assert replay.content == first.content
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    if post.other is not None:
        conflict = await api.admin.post(post.path(rid), json=post.other, headers=headers)
    else:
        conflict = await api.admin.post(post.path(other_rid), json=post.body, headers=headers)
    problem_of(conflict, 422, "idempotency_conflict")
    assert (await api.stream_lengths(), await api.levels("A")) == written


async def test_keys_are_scoped_per_api_key(api: Api) -> None:
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 10})
    body = {"lines": [{"sku": "A", "qty": 1}]}
    headers = {"Idempotency-Key": "same"}
    one = await api.admin.post("/v1/reservations", json=body, headers=headers)
    two = await api.reserver.post("/v1/reservations", json=body, headers=headers)
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] != two.json()["id"]


async def test_a_refusal_is_evaluated_again_not_replayed(api: Api) -> None:
    """A 409 wrote nothing, so it is not stored under its key: once stock frees, the same
    request with the same key holds (it was replayed as 409 for 24 hours before)."""
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    body, headers = {"lines": [{"sku": "A", "qty": 2}]}, {"Idempotency-Key": "once-short"}
    refused = await api.admin.post("/v1/reservations", json=body, headers=headers)
    problem_of(refused, 409, "insufficient_stock")
    assert "idempotent-replayed" not in refused.headers
    await api.admin.post("/v1/skus/A/receipts", json={"qty": 1})
    held = await api.admin.post("/v1/reservations", json=body, headers=headers)
    assert held.status_code == 201, held.text
    assert "idempotent-replayed" not in held.headers
    again = await api.admin.post("/v1/reservations", json=body, headers=headers)
    assert (again.status_code, again.content) == (201, held.content)
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_refused_transition_leaves_the_key_free(api: Api) -> None:
    rid, other_rid = await prepare(api)
    assert (await api.admin.post(f"/v1/reservations/{rid}/release")).status_code == 200
    headers = {"Idempotency-Key": "commit-late"}
    late = await api.admin.post(f"/v1/reservations/{rid}/commit", headers=headers)
    problem_of(late, 410, "reservation_released")
    other = await api.admin.post(f"/v1/reservations/{other_rid}/commit", headers=headers)
    assert (other.status_code, other.json()["status"]) == (200, "committed")


async def test_every_post_that_changes_stock_requires_a_key(api: Api) -> None:
    """Receipts and adjustments took no key, so a retried receipt counted twice; now every
    POST route answers 400 idempotency_key_required without one, before writing."""
    rid, _ = await prepare(api)
    before = await api.stream_lengths(), await api.levels("A")
    paths = api.app.openapi()["paths"]
    posts = [path for path, item in paths.items() if "post" in item]
    assert len(posts) >= 16
    for path in posts:  # the document says so too
        (key,) = [p for p in paths[path]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
        assert key["required"] is True, path
    for template in posts:
        path = template.format(
            sku="A", reservation_id=rid, transfer_id=f"trf_{'0' * 24}_0",
            po_id=f"po_{'0' * 24}_0", endpoint_id="wh_0", tenant="acme", user="ann",
            case_id="dsc_0", drop_id="launch", customer="ann", channel="market",
        )  # fmt: skip
        response = await api.bare["admin"].post(path, json={})
        body = problem_of(response, 400, "idempotency_key_required")
        assert "Idempotency-Key" in body["detail"], template
    assert (await api.stream_lengths(), await api.levels("A")) == before


async def test_a_retried_receipt_counts_once(api: Api) -> None:
    headers = {"Idempotency-Key": "delivery-1001"}
    for _ in range(3):
        response = await api.bare["stocker"].post(
            "/v1/skus/A/receipts", json={"qty": 5}, headers=headers
        )
        assert response.status_code == 200
    assert await api.levels("A") == (5, 0, 0, 5)
