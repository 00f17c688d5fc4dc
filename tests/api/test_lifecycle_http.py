"""The stock lifecycle over HTTP (docs/design/lifecycle.md): transfers, returns and their
disposal, damage, write-offs, cycle counts and purchase orders. For each operation: the
happy path, its refusals (each with its code, nothing written), an idempotent replay and
a conflict, bad input, and the scope it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from earmark.api.app import create_app
from tests.support.api import BASE_URL, KEYED_HOOKS, Api, make_settings, problem_of

NO_TRANSFER = f"trf_{'0' * 24}_0"
NO_RESERVATION = f"rsv_{'0' * 24}_0"
NO_PO = f"po_{'0' * 24}_0"
WATCHED = [("A", "default"), ("A", "b"), ("B", "default")]


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


async def sale(api: Api, sku: str, qty: int, key: str, *, ship: bool) -> str:
    body = {"lines": [{"sku": sku, "qty": qty}]}
    held = ok(
        await api.admin.post("/v1/reservations", json=body, headers={"Idempotency-Key": key}), 201
    )
    ok(await api.admin.post(f"/v1/reservations/{held['id']}/commit"))
    if ship:
        ok(await api.admin.post(f"/v1/reservations/{held['id']}/ship"))
    return str(held["id"])


def po_body(*lines: tuple[str, int], **extra: Any) -> dict[str, Any]:
    items = [{"sku": sku, "qty": qty} for sku, qty in lines]
    return {"lines": items, "supplier": "ACME", "expected_date": "2026-03-01", **extra}


async def create_po(api: Api, key: str, *lines: tuple[str, int]) -> str:
    response = await api.admin.post(
        "/v1/purchase-orders", json=po_body(*lines), headers={"Idempotency-Key": key}
    )
    return str((ok(response, 201))["id"])


@dataclass
class World:
    """A store with some history: A 20 and B 10 received, then a transfer of 2 A to b
    (received), one of 1 A still in transit, 3 A sold and shipped (1 came back), 2 B sold
    (committed), 2 A held, an open purchase order (A 5, B 4) and a closed one. A at
    default: on_hand 14, available 12."""

    received: str
    in_transit: str
    shipped: str
    committed: str
    po: str
    closed_po: str
    version: int  # of A at default


async def world(api: Api) -> World:
    a = api.admin
    ok(await a.post("/v1/skus/A/receipts", json={"qty": 20}))
    ok(await a.post("/v1/skus/B/receipts", json={"qty": 10}))
    ids = []
    for qty in (2, 1):
        body = {"qty": qty, "from_location": "default", "to_location": "b"}
        ids.append((ok(await a.post("/v1/skus/A/transfers", json=body), 201))["id"])
    ok(await a.post(f"/v1/transfers/{ids[0]}/receipt", json={"qty_received": 2}))
    shipped = await sale(api, "A", 3, "sold-a", ship=True)
    committed = await sale(api, "B", 2, "sold-b", ship=False)
    back = {"sku": "A", "qty": 1}
    ok(await a.post(f"/v1/reservations/{shipped}/returns", json=back), 201)
    hold = {"lines": [{"sku": "A", "qty": 2}]}
    ok(await a.post("/v1/reservations", json=hold, headers={"Idempotency-Key": "h"}), 201)
    po = await create_po(api, "po-open", ("A", 5), ("B", 4))
    closed = await create_po(api, "po-closed", ("A", 1))
    ok(await a.post(f"/v1/purchase-orders/{closed}/close"))
    level = ok(await a.get("/v1/skus/A", params={"location": "default"}))
    return World(ids[0], ids[1], shipped, committed, po, closed, level["version"])


async def snapshot(api: Api) -> tuple[list[int], list[Any]]:
    """Every stream length and every bucket of the watched stock: what 'nothing was
    written' compares."""
    return await api.stream_lengths(), await api.engine.availability(WATCHED)


# -- happy paths -----------------------------------------------------------------------


async def test_a_transfer_is_sent_read_and_received_short(api: Api) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    body = {"qty": 4, "from_location": "default", "to_location": "b", "reference": "T-1"}
    response = await api.stocker.post("/v1/skus/A/transfers", json={**body, "reason": "rebalance"})
    sent = ok(response, 201)
    assert response.headers["location"] == f"/v1/transfers/{sent['id']}"
    assert (sent["status"], sent["qty_shipped"], sent["reference"]) == ("in_transit", 4, "T-1")
    assert ok(await api.reader.get(f"/v1/transfers/{sent['id']}")) == sent
    network = ok(await api.reader.get("/v1/skus/A"))
    assert (network["on_hand"], network["in_transit"]) == (6, 4)
    path = f"/v1/transfers/{sent['id']}/receipt"
    received = ok(await api.stocker.post(path, json={"qty_received": 3, "reason": "1 lost"}))
    assert (received["status"], received["qty_received"]) == ("received", 3)
    assert ok(await api.stocker.post(path, json={"qty_received": 3})) == received
    at_b = ok(await api.reader.get("/v1/skus/A", params={"location": "b"}))
    assert (at_b["on_hand"], at_b["in_transit"], at_b["written_off"]) == (3, 0, 1)
    kinds = {e["type"]: e for e in await api.events()}
    assert kinds.keys() >= {"transfer_out", "transfer_in", "transfer_received"}
    assert kinds["transfer_discrepancy"]["reason"] == "1 lost"
    assert {kinds[t]["actor"] for t in ("transfer_out", "transfer_discrepancy")} == {"stocker"}


async def test_a_return_is_received_and_disposed_of(api: Api) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    rid = await sale(api, "A", 4, "sale", ship=True)
    path = f"/v1/reservations/{rid}/returns"
    receipt = ok(await api.stocker.post(path, json={"sku": "A", "qty": 3}), 201)
    assert (receipt["location"], receipt["returned"], receipt["shipped"]) == ("default", 3, 4)
    assert receipt["stock"]["returned"] == 3
    dispose = "/v1/skus/A/returned/dispositions"
    for disposition, bucket in (("restock", "on_hand"), ("damaged", "damaged")):
        body = {"qty": 1, "disposition": disposition, "reason": "inspected"}
        level = ok(await api.stocker.post(dispose, json=body))
        assert level[bucket] == (7 if bucket == "on_hand" else 1)
    level = ok(await api.stocker.post(dispose, json={"qty": 1, "disposition": "write_off"}))
    assert (level["returned"], level["written_off"], level["on_hand"]) == (0, 1, 7)
    types = [e["type"] for e in await api.events()]
    assert types[-4:] == ["returned", "return_restocked", "return_damaged", "return_written_off"]


async def test_damage_write_offs_and_a_count(api: Api) -> None:
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 10}))
    body: dict[str, Any] = {"qty": 2, "reason": "wet"}
    damaged = ok(await api.stocker.post("/v1/skus/A/damage", json=body))
    assert (damaged["on_hand"], damaged["damaged"]) == (8, 2)
    body = {"qty": 2, "reason": "mould", "source": "damaged"}
    gone = ok(await api.stocker.post("/v1/skus/A/write-offs", json=body))
    assert (gone["damaged"], gone["written_off"]) == (0, 2)
    body = {"qty": 1, "reason": "stolen"}
    gone = ok(await api.stocker.post("/v1/skus/A/write-offs", json=body))
    assert (gone["on_hand"], gone["written_off"]) == (7, 3)
    read = ok(await api.reader.get("/v1/skus/A", params={"location": "default"}))
    ok(await api.admin.post("/v1/skus/A/receipts", json={"qty": 5}))  # after the read
    body = {"counted": 6, "version": read["version"], "reason": "aisle 4"}
    counted = ok(await api.stocker.post("/v1/skus/A/counts", json=body))
    assert (counted["expected"], counted["delta"], counted["exposure"]) == (7, -1, 0)
    assert counted["stock"]["on_hand"] == 11
    event = [e for e in await api.events() if e["type"] == "counted"][-1]
    assert (event["actor"], event["reason"], event["counted"]) == ("stocker", "aisle 4", "6")
    reasons = {e["type"]: e["reason"] for e in await api.events() if e["type"] == "damaged"}
    assert reasons == {"damaged": "wet"}


async def test_a_purchase_order_is_created_received_and_closed(api: Api) -> None:
    body = po_body(("A", 10), ("B", 4), reference="PO-77", reason="spring")
    response = await api.stocker.post(
        "/v1/purchase-orders", json=body, headers={"Idempotency-Key": "po"}
    )
    po = ok(response, 201)
    assert response.headers["location"] == f"/v1/purchase-orders/{po['id']}"
    assert (po["status"], po["supplier"], po["expected_date"]) == ("open", "ACME", "2026-03-01")
    assert (ok(await api.reader.get("/v1/skus/A")))["inbound"] == 10
    path = f"/v1/purchase-orders/{po['id']}"
    delivery = {"lines": [{"sku": "A", "qty": 12}, {"sku": "B", "qty": 1}]}
    received = ok(await api.stocker.post(f"{path}/receipts", json=delivery))
    lines = {x["sku"]: (x["expected"], x["received"], x["outstanding"]) for x in received["lines"]}
    assert lines == {"A": (10, 12, 0), "B": (4, 1, 3)}
    assert ok(await api.reader.get(path)) == received
    closed = ok(await api.stocker.post(f"{path}/close", json={"reason": "done"}))
    assert closed["status"] == "closed"
    assert [x["outstanding"] for x in closed["lines"]] == [0, 0]
    assert ok(await api.stocker.post(f"{path}/close")) == closed  # twice: a no-op
    a, b = await api.engine.availability([("A", "default"), ("B", "default")])
    assert (a.on_hand, a.inbound, b.on_hand, b.inbound) == (12, 0, 1, 0)
    types = [e["type"] for e in await api.events()]
    assert types.count("supplier_discrepancy") == 2  # A over, B short


async def test_a_purchase_order_is_cancelled(api: Api) -> None:
    po = await create_po(api, "po", ("A", 3))
    path = f"/v1/purchase-orders/{po}/close"
    cancelled = ok(await api.stocker.post(path, json={"cancel": True}))
    assert cancelled["status"] == "cancelled"
    assert "po_cancelled" in [e["type"] for e in await api.events()]


async def test_the_network_view_survives_an_embedded_restart(tmp_path: Path) -> None:
    """Embedded, every start rebuilds Redis from the record: the rebuild restores each
    SKU's set of locations, which the all-locations view reads."""
    settings = make_settings(database_url=f"sqlite:///{tmp_path}/earmark.db")
    views = []
    for receipts in ([{"qty": 5, "location": "berlin"}, {"qty": 2}], []):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, event_hooks=KEYED_HOOKS
            ) as client:
                for body in receipts:
                    ok(await client.post("/v1/skus/A/receipts", json=body))
                views.append(ok(await client.get("/v1/skus/A")))
    assert views[1] == views[0]
    assert [x["location"] for x in views[1]["locations"]] == ["berlin", "default"]


# -- refusals ------------------------------------------------------------------------

IdPath = Callable[[World], str]


@dataclass(frozen=True)
class Refusal:
    name: str
    path: IdPath
    body: dict[str, Any] | None
    status: int
    code: str
    members: dict[str, Any]
    method: str = "POST"


REFUSALS = [
    Refusal("transfer beyond available", lambda w: "/v1/skus/A/transfers",
            {"qty": 13, "from_location": "default", "to_location": "b"}, 409,
            "insufficient_stock",
            {"lines": [{"sku": "A", "location": "default", "requested": 13, "available": 12}]}),
    Refusal("transfer received with another qty", lambda w: f"/v1/transfers/{w.received}/receipt",
            {"qty_received": 1}, 409, "transfer_already_received", {}),
    Refusal("receive an unknown transfer", lambda w: f"/v1/transfers/{NO_TRANSFER}/receipt",
            {"qty_received": 1}, 404, "transfer_not_found", {"id": NO_TRANSFER}),
    Refusal("receive a malformed transfer id", lambda w: "/v1/transfers/nope/receipt",
            {"qty_received": 1}, 404, "transfer_not_found", {"id": "nope"}),
    Refusal("read an unknown transfer", lambda w: f"/v1/transfers/{NO_TRANSFER}", None, 404,
            "transfer_not_found", {}, "GET"),
    Refusal("return beyond shipped", lambda w: f"/v1/reservations/{w.shipped}/returns",
            {"sku": "A", "qty": 3}, 409, "return_exceeds_shipped",
            {"shipped": 3, "returned": 1, "requested": 3}),
    Refusal("return of an unshipped sale", lambda w: f"/v1/reservations/{w.committed}/returns",
            {"sku": "B", "qty": 1}, 409, "invalid_transition",
            {"reservation_status": "committed"}),
    Refusal("return of an unknown sale", lambda w: f"/v1/reservations/{NO_RESERVATION}/returns",
            {"sku": "A", "qty": 1}, 404, "reservation_not_found", {}),
    Refusal("return of a line the sale lacks", lambda w: f"/v1/reservations/{w.shipped}/returns",
            {"sku": "B", "qty": 1}, 422, "invalid_request", {"field": "sku"}),
    Refusal("dispose of more than returned", lambda w: "/v1/skus/A/returned/dispositions",
            {"qty": 2, "disposition": "restock"}, 409, "insufficient_units",
            {"bucket": "returned", "available": 1, "requested": 2}),
    Refusal("damage below available", lambda w: "/v1/skus/A/damage",
            {"qty": 13, "reason": "x"}, 409, "would_oversell",
            {"available": 12, "requested": 13}),
    Refusal("forced damage beyond on hand", lambda w: "/v1/skus/A/damage",
            {"qty": 15, "reason": "x", "force": True}, 409, "insufficient_on_hand", {}),
    Refusal("write-off below available", lambda w: "/v1/skus/A/write-offs",
            {"qty": 14, "reason": "x"}, 409, "would_oversell", {}),
    Refusal("write-off of more than damaged", lambda w: "/v1/skus/A/write-offs",
            {"qty": 1, "reason": "x", "source": "damaged"}, 409, "insufficient_units",
            {"bucket": "damaged"}),
    Refusal("count against a future version", lambda w: "/v1/skus/A/counts",
            {"counted": 1, "version": 1_000_000}, 409, "stale_count", {"version": 1_000_000}),
    Refusal("read an unknown purchase order", lambda w: f"/v1/purchase-orders/{NO_PO}", None,
            404, "purchase_order_not_found", {}, "GET"),
    Refusal("deliver to an unknown purchase order",
            lambda w: f"/v1/purchase-orders/{NO_PO}/receipts",
            {"lines": [{"sku": "A", "qty": 1}]}, 404, "purchase_order_not_found", {}),
    Refusal("deliver to a closed purchase order",
            lambda w: f"/v1/purchase-orders/{w.closed_po}/receipts",
            {"lines": [{"sku": "A", "qty": 1}]}, 409, "purchase_order_closed",
            {"purchase_order_status": "closed"}),
    Refusal("cancel a closed purchase order",
            lambda w: f"/v1/purchase-orders/{w.closed_po}/close", {"cancel": True}, 409,
            "purchase_order_closed", {"purchase_order_status": "closed"}),
    Refusal("deliver a line the order lacks", lambda w: f"/v1/purchase-orders/{w.po}/receipts",
            {"lines": [{"sku": "C", "qty": 1}]}, 422, "invalid_request", {}),
    Refusal("close an unknown purchase order", lambda w: f"/v1/purchase-orders/{NO_PO}/close",
            None, 404, "purchase_order_not_found", {}),
]  # fmt: skip


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
async def test_a_refusal_has_its_code_and_writes_nothing(api: Api, refusal: Refusal) -> None:
    w = await world(api)
    before = await snapshot(api)
    client = api.admin if refusal.method == "POST" else api.reader
    response = await client.request(refusal.method, refusal.path(w), json=refusal.body)
    body = problem_of(response, refusal.status, refusal.code)
    assert refusal.members.items() <= body.items(), body
    assert await snapshot(api) == before


async def test_a_transfer_received_again_names_the_first_receipt(api: Api) -> None:
    w = await world(api)
    path = f"/v1/transfers/{w.received}/receipt"
    body = problem_of(await api.admin.post(path, json={"qty_received": 1}), 409,
                      "transfer_already_received")  # fmt: skip
    assert (body["transfer"]["id"], body["transfer"]["qty_received"]) == (w.received, 2)


# -- idempotency -----------------------------------------------------------------------

Body = Callable[[World], dict[str, Any] | None]


@dataclass(frozen=True)
class Replay:
    name: str
    path: IdPath
    body: Body
    other: Body
    status: int
    setup: Callable[[Api, World], Any] | None = None


async def return_two(api: Api, w: World) -> None:
    path = f"/v1/reservations/{w.shipped}/returns"
    ok(await api.admin.post(path, json={"sku": "A", "qty": 2}), 201)


def transfer(qty: int) -> Body:
    return lambda w: {"qty": qty, "from_location": "default", "to_location": "b"}


REPLAYS = [
    Replay("transfer", lambda w: "/v1/skus/A/transfers", transfer(1), transfer(2), 201),
    Replay("transfer refused", lambda w: "/v1/skus/A/transfers", transfer(99), transfer(98), 409),
    Replay("transfer receipt", lambda w: f"/v1/transfers/{w.in_transit}/receipt",
           lambda w: {"qty_received": 1}, lambda w: {"qty_received": 0}, 200),
    Replay("return", lambda w: f"/v1/reservations/{w.shipped}/returns",
           lambda w: {"sku": "A", "qty": 1}, lambda w: {"sku": "A", "qty": 2}, 201),
    Replay("disposition", lambda w: "/v1/skus/A/returned/dispositions",
           lambda w: {"qty": 1, "disposition": "restock"},
           lambda w: {"qty": 1, "disposition": "damaged"}, 200, return_two),
    Replay("damage", lambda w: "/v1/skus/A/damage", lambda w: {"qty": 1, "reason": "x"},
           lambda w: {"qty": 2, "reason": "x"}, 200),
    Replay("damage refused", lambda w: "/v1/skus/A/damage", lambda w: {"qty": 99, "reason": "x"},
           lambda w: {"qty": 98, "reason": "x"}, 409),
    Replay("write-off", lambda w: "/v1/skus/A/write-offs", lambda w: {"qty": 1, "reason": "x"},
           lambda w: {"qty": 1, "reason": "y"}, 200),
    Replay("count", lambda w: "/v1/skus/A/counts",
           lambda w: {"counted": 10, "version": w.version},
           lambda w: {"counted": 9, "version": w.version}, 200),
    Replay("count refused", lambda w: "/v1/skus/A/counts",
           lambda w: {"counted": 10, "version": w.version + 5},
           lambda w: {"counted": 10, "version": w.version + 6}, 409),
    Replay("purchase order", lambda w: "/v1/purchase-orders", lambda w: po_body(("A", 3)),
           lambda w: po_body(("A", 4)), 201),
    Replay("purchase order receipt", lambda w: f"/v1/purchase-orders/{w.po}/receipts",
           lambda w: {"lines": [{"sku": "A", "qty": 2}]},
           lambda w: {"lines": [{"sku": "A", "qty": 3}]}, 200),
    Replay("purchase order close", lambda w: f"/v1/purchase-orders/{w.po}/close",
           lambda w: None, lambda w: {"cancel": True}, 200),
    Replay("purchase order close refused", lambda w: f"/v1/purchase-orders/{w.closed_po}/close",
           lambda w: {"cancel": True}, lambda w: {"cancel": True, "reason": "x"}, 409),
]  # fmt: skip


@pytest.mark.parametrize("case", REPLAYS, ids=[r.name for r in REPLAYS])
async def test_a_replay_returns_the_original_and_a_conflict_is_refused(
    api: Api, case: Replay
) -> None:
    w = await world(api)
    if case.setup is not None:
        await case.setup(api, w)
    headers = {"Idempotency-Key": f"idem-{case.name}"}
    first = await api.admin.post(case.path(w), json=case.body(w), headers=headers)
    assert first.status_code == case.status, first.text
    written = await snapshot(api)
    replay = await api.admin.post(case.path(w), json=case.body(w), headers=headers)
    assert (replay.status_code, replay.headers["content-type"], replay.content) == (
        first.status_code,
        first.headers["content-type"],
        first.content,
    )
    other = await api.admin.post(case.path(w), json=case.other(w), headers=headers)
    if case.status < 300:
        assert replay.headers["idempotent-replayed"] == "true"
        problem_of(other, 422, "idempotency_conflict")
        assert await snapshot(api) == written
    else:
        # A refusal is not stored: the retry was evaluated again (the same answer, not a
        # replay), and the key is free for another request (deliberately no conflict).
        assert "idempotent-replayed" not in replay.headers
        assert other.status_code != 422, other.text


async def test_a_purchase_order_needs_an_idempotency_key(api: Api) -> None:
    response = await api.bare["admin"].post("/v1/purchase-orders", json=po_body(("A", 1)))
    problem_of(response, 400, "idempotency_key_required")
    assert await api.stream_lengths() == [0]


# -- bad input -------------------------------------------------------------------------

KEY = {"Idempotency-Key": "bad"}
MOVE = {"from_location": "default", "to_location": "b"}
PO_LINE = [{"sku": "A", "qty": 1}]

# (id, path, body (bytes: raw), headers)
BAD: list[tuple[str, IdPath, Any, dict[str, str]]] = [
    ("transfer malformed json", lambda w: "/v1/skus/A/transfers", b'{"qty": ', {}),
    ("transfer to itself", lambda w: "/v1/skus/A/transfers",
     {"qty": 1, "from_location": "b", "to_location": "b"}, {}),
    ("transfer zero", lambda w: "/v1/skus/A/transfers", {"qty": 0, **MOVE}, {}),
    ("transfer qty as string", lambda w: "/v1/skus/A/transfers", {"qty": "1", **MOVE}, {}),
    ("transfer without from", lambda w: "/v1/skus/A/transfers", {"qty": 1, "to_location": "b"},
     {}),
    ("transfer location charset", lambda w: "/v1/skus/A/transfers",
     {"qty": 1, "from_location": "default", "to_location": "b c"}, {}),
    ("transfer reference control char", lambda w: "/v1/skus/A/transfers",
     {"qty": 1, **MOVE, "reference": "a\nb"}, {}),
    ("transfer unknown field", lambda w: "/v1/skus/A/transfers", {"qty": 1, **MOVE, "x": 1}, {}),
    ("transfer path sku charset", lambda w: "/v1/skus/A%20B/transfers", {"qty": 1, **MOVE}, {}),
    ("transfer receipt negative", lambda w: f"/v1/transfers/{w.in_transit}/receipt",
     {"qty_received": -1}, {}),
    ("transfer receipt too many", lambda w: f"/v1/transfers/{w.in_transit}/receipt",
     {"qty_received": 1_000_001}, {}),
    ("return zero", lambda w: f"/v1/reservations/{w.shipped}/returns", {"sku": "A", "qty": 0},
     {}),
    ("return without sku", lambda w: f"/v1/reservations/{w.shipped}/returns", {"qty": 1}, {}),
    ("return reason too long", lambda w: f"/v1/reservations/{w.shipped}/returns",
     {"sku": "A", "qty": 1, "reason": "r" * 257}, {}),
    ("disposition unknown", lambda w: "/v1/skus/A/returned/dispositions",
     {"qty": 1, "disposition": "lost"}, {}),
    ("damage without reason", lambda w: "/v1/skus/A/damage", {"qty": 1}, {}),
    ("damage empty reason", lambda w: "/v1/skus/A/damage", {"qty": 1, "reason": ""}, {}),
    ("damage force as string", lambda w: "/v1/skus/A/damage",
     {"qty": 1, "reason": "x", "force": "yes"}, {}),
    ("write-off unknown source", lambda w: "/v1/skus/A/write-offs",
     {"qty": 1, "reason": "x", "source": "shelf"}, {}),
    ("write-off huge", lambda w: "/v1/skus/A/write-offs", {"qty": 10**7, "reason": "x"}, {}),
    ("count negative", lambda w: "/v1/skus/A/counts", {"counted": -1, "version": 1}, {}),
    ("count version too big", lambda w: "/v1/skus/A/counts",
     {"counted": 1, "version": 2**50 + 1}, {}),
    ("count version as float", lambda w: "/v1/skus/A/counts", {"counted": 1, "version": 1.5},
     {}),
    ("count without version", lambda w: "/v1/skus/A/counts", {"counted": 1}, {}),
    ("po without lines", lambda w: "/v1/purchase-orders", po_body(), KEY),
    ("po oversized", lambda w: "/v1/purchase-orders",
     po_body(*((f"S{i}", 1) for i in range(51))), KEY),
    ("po duplicate line", lambda w: "/v1/purchase-orders", po_body(("A", 1), ("A", 2)), KEY),
    ("po impossible date", lambda w: "/v1/purchase-orders",
     {"lines": PO_LINE, "supplier": "S", "expected_date": "2026-02-30"}, KEY),
    ("po date format", lambda w: "/v1/purchase-orders",
     {"lines": PO_LINE, "supplier": "S", "expected_date": "1/3/2026"}, KEY),
    ("po empty supplier", lambda w: "/v1/purchase-orders",
     {"lines": PO_LINE, "supplier": "", "expected_date": "2026-03-01"}, KEY),
    ("po receipt without lines", lambda w: f"/v1/purchase-orders/{w.po}/receipts",
     {"lines": []}, {}),
    ("po close cancel as string", lambda w: f"/v1/purchase-orders/{w.po}/close",
     {"cancel": "yes"}, {}),
    ("po close unknown field", lambda w: f"/v1/purchase-orders/{w.po}/close", {"now": True}, {}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "headers"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_and_writes_nothing(
    api: Api, path: IdPath, body: Any, headers: dict[str, str]
) -> None:
    w = await world(api)
    before = await snapshot(api)
    if isinstance(body, bytes):
        headers = {**headers, "Content-Type": "application/json"}
        response = await api.admin.post(path(w), content=body, headers=headers)
        problem_of(response, 400, "malformed_json")
    else:
        response = await api.admin.post(path(w), json=body, headers=headers)
        assert problem_of(response, 422, "invalid_request")["detail"]
    assert await snapshot(api) == before


# -- scopes ----------------------------------------------------------------------------

SCOPED: list[tuple[str, IdPath, dict[str, Any] | None, str]] = [
    ("POST", lambda w: "/v1/skus/A/transfers", {"qty": 1, **MOVE}, "stock"),
    ("GET", lambda w: f"/v1/transfers/{w.received}", None, "read"),
    ("POST", lambda w: f"/v1/transfers/{w.in_transit}/receipt", {"qty_received": 1}, "stock"),
    ("POST", lambda w: f"/v1/reservations/{w.shipped}/returns", {"sku": "A", "qty": 1}, "stock"),
    ("POST", lambda w: "/v1/skus/A/returned/dispositions",
     {"qty": 1, "disposition": "restock"}, "stock"),
    ("POST", lambda w: "/v1/skus/A/damage", {"qty": 1, "reason": "x"}, "stock"),
    ("POST", lambda w: "/v1/skus/A/write-offs", {"qty": 1, "reason": "x"}, "stock"),
    ("POST", lambda w: "/v1/skus/A/counts", {"counted": 20, "version": 1}, "stock"),
    ("POST", lambda w: "/v1/purchase-orders", po_body(("A", 1)), "stock"),
    ("GET", lambda w: f"/v1/purchase-orders/{w.po}", None, "read"),
    ("POST", lambda w: f"/v1/purchase-orders/{w.po}/receipts", {"lines": PO_LINE}, "stock"),
    ("POST", lambda w: f"/v1/purchase-orders/{w.po}/close", None, "stock"),
    ("GET", lambda w: "/v1/skus/A", None, "read"),
    ("GET", lambda w: "/v1/ledger", None, "read"),
]  # fmt: skip
HOLDERS = {"read": "reader", "stock": "stocker"}


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), SCOPED, ids=[f"{s[0]} {i}" for i, s in enumerate(SCOPED)]
)
async def test_each_route_needs_its_scope(
    api: Api, method: str, path: IdPath, body: dict[str, Any] | None, scope: str
) -> None:
    w = await world(api)
    headers = {"Idempotency-Key": "scope-test"}
    before = await snapshot(api)
    for name in ("reader", "reserver", "stocker"):
        if HOLDERS[scope] != name:
            response = await api.clients[name].request(method, path(w), json=body, headers=headers)
            assert problem_of(response, 403, "forbidden")["scope"] == scope
    response = await api.anon.request(method, path(w), json=body, headers=headers)
    problem_of(response, 401, "unauthorized")
    assert await snapshot(api) == before
    holder = api.clients[HOLDERS[scope]]
    allowed = await holder.request(method, path(w), json=body, headers=headers)
    assert allowed.status_code < 300, allowed.text
