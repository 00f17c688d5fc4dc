"""``GET /v1/overview``: what the console's overview polls. Its cost does not grow with
the SKUs in the store: it reads per-partition counters and indexes, never the stock
index, so one read costs the same Redis commands with one SKU or hundreds."""

from __future__ import annotations

from typing import Any

import pytest

from earmark.engine.steps import Batch, Call, Op, Pipeline
from tests.support.api import Api


def counting(op: Op[Any], tally: list[int]) -> Op[Any]:
    """``op`` as it is, adding to ``tally`` the Redis commands of each step it yields."""
    reply: Any = None
    while True:
        try:
            step = op.send(reply)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, Pipeline):
            tally.append(len(step.commands))
        elif isinstance(step, Batch):
            tally.append(len(step.calls))
        elif isinstance(step, Call):
            tally.append(1)
        reply = yield step


async def overview_cost(api: Api, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any]]:
    tally: list[int] = []
    drive = api.engine._drive
    with monkeypatch.context() as patch:
        patch.setattr(api.engine, "_drive", lambda op: drive(counting(op, tally)))
        response = await api.reader.get("/v1/overview")
    assert response.status_code == 200, response.text
    return sum(tally), response.json()


async def test_the_overview_costs_the_same_with_many_skus(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.admin.post("/v1/skus/ONE/receipts", json={"qty": 1})
    alone, first = await overview_cost(api, monkeypatch)
    assert alone > 0 and first["holds"]["live"] == 0
    for start in range(0, 600, 100):
        for n in range(start, start + 100):
            await api.engine.receive(f"MANY-{n:04d}", 3, idempotency_key=f"seed-{n}")
    many, later = await overview_cost(api, monkeypatch)
    assert (await api.reader.get("/v1/skus", params={"prefix": "MANY-0599"})).json()["items"]
    assert many == alone, f"{alone} Redis commands with one SKU, {many} with 601"
    assert later["holds"] == first["holds"]
