"""Every POST: a replay returns the original status and body; the same key with another
body is refused with 422 idempotency_conflict, and writes nothing."""

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
    Post("reserve refused", lambda _: "/v1/reservations", {"lines": [{"sku": "A", "qty": 99}]},
         {"lines": [{"sku": "A", "qty": 98}]}),
    Post("commit", lambda rid: f"/v1/reservations/{rid}/commit", None, None),
    Post("release", lambda rid: f"/v1/reservations/{rid}/release", None, None),
    Post("extend", lambda rid: f"/v1/reservations/{rid}/extend", {"ttl_seconds": 120},
         {"ttl_seconds": 180}),
    Post("ship", lambda rid: f"/v1/reservations/{rid}/ship", None, None, setup=commit),
    Post("commit refused", lambda rid: f"/v1/reservations/{rid}/commit", None, None,
         setup=lambda api, rid: commit_after_release(api, rid)),
]  # fmt: skip


async def commit_after_release(api: Api, rid: str) -> None:
    assert (await api.admin.post(f"/v1/reservations/{rid}/release")).status_code == 200


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
