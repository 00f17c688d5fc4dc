"""Reconciliation, discrepancy cases, reorder points and alerts over HTTP: the routes,
the problem codes of bad input (nothing written), and the resolver as actor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from earmark import limits
from earmark.durable.flusher import Flusher
from tests.support.api import Api, problem_of


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def put_reorder(api: Api, sku: str, body: dict[str, Any]) -> httpx.Response:
    """The reorder PUT with a fresh Idempotency-Key (it needs one, as every write does)."""
    key = {"Idempotency-Key": f"reorder-{uuid.uuid4().hex}"}
    return await api.stocker.put(f"/v1/skus/{sku}/reorder", json=body, headers=key)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


async def test_reconcile_assign_resolve_over_http(api: Api) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    ok(await api.admin.post("/v1/skus/B/receipts", json={"qty": 10}))
    counted_at = now()
    body = {
        "source": "3pl-east",
        "counted_at": counted_at,
        "counts": [{"sku": "A", "qty": 10}, {"sku": "B", "qty": 7}],
        "threshold_units": 1,
    }
    report = ok(await api.stocker.post("/v1/reconciliations", json=body), 201)
    assert (report["lines"], report["matched"], report["discrepancies"]) == (2, 1, 1)
    assert ok(await api.reader.get(f"/v1/reconciliations/{report['id']}")) == report
    case = report["cases"][0]
    page = ok(
        await api.reader.get("/v1/discrepancies", params={"status": "open", "source": "3pl-east"})
    )
    assert [c["id"] for c in page["items"]] == [case["id"]] and page["next_cursor"] is None
    assigned = ok(
        await api.stocker.post(f"/v1/discrepancies/{case['id']}/assign", json={"assignee": "dana"})
    )
    assert assigned["status"] == "investigating"
    resolved = ok(
        await api.stocker.post(
            f"/v1/discrepancies/{case['id']}/resolve",
            json={"action": "adjust", "reason": "recount", "root_cause": "mis-pick"},
        )
    )
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", "stocker")
    assert (await api.levels("B"))[0] == 7
    adjusted = [e for e in await api.events() if e["type"] == "adjusted"]
    assert [(e["sku"], e["actor"]) for e in adjusted] == [("B", "stocker")]
    again = await api.stocker.post(
        f"/v1/discrepancies/{case['id']}/resolve", json={"action": "dismiss", "reason": "x"}
    )
    problem_of(again, 409, "discrepancy_resolved")


async def test_bad_reconciliations_get_stable_codes_and_write_nothing(api: Api) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    flusher = Flusher.for_engine(api.engine, await api.durable.ledger_for_reads(), consumer="t")
    await flusher.drain(10)  # what a reconciliation drains first: the streams are empty
    await flusher.close()
    before = await api.stream_lengths()
    base = {"source": "wms", "counted_at": now(), "counts": [{"sku": "A", "qty": 1}]}
    too_many = {
        **base,
        "counts": [{"sku": f"S{i}", "qty": 1} for i in range(limits.RECONCILIATION_LINES_MAX + 1)],
    }
    problem_of(
        await api.stocker.post("/v1/reconciliations", json=too_many),
        413,
        "reconciliation_too_large",
    )
    twice = {**base, "counts": [{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]}
    problem_of(
        await api.stocker.post("/v1/reconciliations", json=twice), 422, "invalid_reconciliation"
    )
    future = {**base, "counted_at": "2999-01-01T00:00:00Z"}
    problem_of(
        await api.stocker.post("/v1/reconciliations", json=future), 422, "invalid_reconciliation"
    )
    negative = {**base, "counts": [{"sku": "A", "qty": -1}]}
    problem_of(await api.stocker.post("/v1/reconciliations", json=negative), 422, "invalid_request")
    problem_of(await api.reader.post("/v1/reconciliations", json=base), 403, "forbidden")
    problem_of(
        await api.reader.get("/v1/reconciliations/rec_nope"), 404, "reconciliation_not_found"
    )
    problem_of(await api.reader.get("/v1/discrepancies/dsc_nope"), 404, "discrepancy_not_found")
    assert ok(await api.reader.get("/v1/discrepancies"))["items"] == []
    assert await api.stream_lengths() == before


async def test_reorder_point_and_alerts_over_http(api: Api) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    before = await api.stream_lengths()
    for body, field in (
        ({"reorder_point": 5, "rearm_above": 5}, "rearm_above"),
        ({"reorder_point": 9, "rearm_above": 2}, "rearm_above"),
    ):
        problem = problem_of(await put_reorder(api, "A", body), 422, "invalid_reorder_point")
        assert problem["field"] == field
    problem_of(
        await put_reorder(api, "A", {"reorder_point": -1, "rearm_above": 2}),
        422,
        "invalid_request",
    )
    assert await api.stream_lengths() == before
    setting = ok(
        await put_reorder(api, "A", {"reorder_point": 4, "rearm_above": 8, "lead_time_days": 14})
    )
    assert (setting["reorder_point"], setting["low"]) == (4, False)
    assert ok(await api.reader.get("/v1/alerts", params={"status": "active"}))["items"] == []
    ok(await api.stocker.post("/v1/skus/A/damage", json={"qty": 6, "reason": "flood"}))
    (alert,) = ok(await api.reader.get("/v1/alerts"))["items"]
    assert (alert["sku"], alert["available"], alert["lead_time_days"]) == ("A", 4, 14)
    assert alert["low_since"]
    low = [e for e in await api.events() if e["type"] == "stock_low"]
    assert len(low) == 1 and low[0]["available"] == "4"
    (read,) = ok(await api.reader.get("/v1/skus/A/reorder"))["items"]
    assert (read["location"], read["reorder_point"], read["rearm_above"]) == ("default", 4, 8)
    assert (read["lead_time_days"], read["low"]) == (14, True)
    assert read["low_since"] == alert["low_since"]
    problem_of(await api.reader.get("/v1/skus/NOPE/reorder"), 404, "sku_not_found")


async def test_a_reorder_put_with_an_idempotency_key_is_replayed_not_written_again(
    api: Api,
) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    body = {"reorder_point": 10, "rearm_above": 12}  # available 10: low at once
    key = {"Idempotency-Key": "reorder-1"}
    first = await api.stocker.put("/v1/skus/A/reorder", json=body, headers=key)
    setting = ok(first)
    assert "idempotent-replayed" not in first.headers
    assert (setting["reorder_point"], setting["low"]) == (10, True)
    after_first = await api.stream_lengths()
    events = [e["type"] for e in await api.events()]
    assert events.count("stock_low") == 1

    again = await api.stocker.put("/v1/skus/A/reorder", json=body, headers=key)
    assert ok(again) == setting
    assert again.headers["idempotent-replayed"] == "true"
    other = {"reorder_point": 3, "rearm_above": 5}
    problem_of(
        await api.stocker.put("/v1/skus/A/reorder", json=other, headers=key),
        422,
        "idempotency_conflict",
    )
    assert await api.stream_lengths() == after_first  # neither the replay nor the refusal
    assert [e["type"] for e in await api.events()] == events
    (read,) = ok(await api.reader.get("/v1/skus/A/reorder"))["items"]
    assert (read["reorder_point"], read["rearm_above"]) == (10, 12)


async def test_a_reorder_put_without_a_key_is_refused_and_writes_nothing(api: Api) -> None:
    """It ignored the header before, so a retried PUT wrote (and could alert) again; now
    it needs a key as the channel and seat PUTs do: 400 before anything is written."""
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    before = await api.stream_lengths()
    body = {"reorder_point": 10, "rearm_above": 12}
    refused = await api.bare["stocker"].put("/v1/skus/A/reorder", json=body)
    assert "Idempotency-Key" in problem_of(refused, 400, "idempotency_key_required")["detail"]
    assert await api.stream_lengths() == before
    assert ok(await api.reader.get("/v1/skus/A/reorder"))["items"] == []
    assert ok(await api.reader.get("/v1/alerts"))["items"] == []
