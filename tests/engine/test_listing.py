"""``stock_page`` (``GET /v1/skus``): every stock record exactly once over the pages,
filtered by SKU prefix and location, on every backend (the cluster has 4 partitions)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from earmark import Engine, InvalidRequest, StockLevel


def walk(engine: Engine, **filters: object) -> list[StockLevel]:
    found: list[StockLevel] = []
    cursor = None
    for _ in range(1000):  # a bound, far above what these stores need
        page = engine.stock_page(cursor=cursor, **filters)  # type: ignore[arg-type]
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


def seed(engine: Engine) -> None:
    for n in range(30):
        engine.receive(f"TEE-{n:02d}", n + 1)
    engine.receive("CAP-1", 5, location="berlin")
    engine.receive("CAP-1", 2)


def test_every_record_once_in_small_pages(engine: Engine) -> None:
    seed(engine)
    found = walk(engine, limit=7)
    pairs = sorted((x.sku, x.location) for x in found)
    assert len(set(pairs)) == 32 and len(pairs) == 32  # none missing, none twice here
    by_pair = {(x.sku, x.location): x for x in found}
    assert by_pair[("TEE-04", "default")].on_hand == 5
    assert by_pair[("CAP-1", "berlin")].available == 5


def test_prefix_and_location_filter(engine: Engine) -> None:
    seed(engine)
    tees = walk(engine, prefix="TEE-1", limit=3)
    assert sorted(x.sku for x in tees) == [f"TEE-1{n}" for n in range(10)]
    assert [(x.sku, x.location) for x in walk(engine, location="berlin")] == [("CAP-1", "berlin")]
    assert sorted(x.location for x in walk(engine, prefix="CAP")) == ["berlin", "default"]
    assert walk(engine, prefix="NOPE") == []


def test_low_stock_filter_agrees_with_the_alerts(engine: Engine) -> None:
    seed(engine)
    engine.set_reorder("TEE-02", 5, 8)  # on_hand 3: low at once
    engine.set_reorder("TEE-20", 5, 8)  # 21: not low
    engine.set_reorder("CAP-1", 4, 6, location="berlin")  # 5: not low yet
    engine.reserve([("CAP-1", 1, "berlin")], idempotency_key=key())  # 4: fires
    engine.receive("CAP-1", 1, location="berlin")  # 5: still low (not above rearm_above)
    low = sorted((x.sku, x.location) for x in walk(engine, low_stock=True, limit=4))
    assert low == [("CAP-1", "berlin"), ("TEE-02", "default")]
    assert low == [(a.sku, a.location) for a in engine.alerts()]
    assert [x.sku for x in walk(engine, low_stock=True, location="default")] == ["TEE-02"]
    assert walk(engine, low_stock=True, prefix="TEE-2") == []
    engine.receive("CAP-1", 2, location="berlin")  # 7 > 6: re-armed, no longer low
    assert [x.sku for x in walk(engine, low_stock=True)] == ["TEE-02"]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"limit": 0}, "limit must be between 1 and 500"),
        ({"limit": 501}, "limit must be between 1 and 500"),
        ({"cursor": "x"}, "is not a cursor"),
        ({"cursor": "99.0"}, "is not a cursor"),
        ({"prefix": "a b"}, "may hold only"),
        ({"prefix": "T*"}, "may hold only"),  # no glob reaches MATCH
    ],
)
def test_bad_input_is_refused(engine: Engine, filters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        engine.stock_page(**filters)  # type: ignore[arg-type]


def key() -> str:
    return f"cart-{uuid.uuid4().hex}"


def hold(engine: Engine, sku: str, ttl_seconds: int) -> str:
    return engine.reserve([(sku, 1)], ttl_seconds=ttl_seconds, idempotency_key=key()).id


def walk_holds(engine: Engine, **filters: object) -> list[str]:
    found: list[str] = []
    cursor = None
    for _ in range(1000):
        page = engine.held_reservations(cursor=cursor, **filters)  # type: ignore[arg-type]
        assert all(r.status == "held" for r in page.items)
        found += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


def test_held_reservations_soonest_first_by_sku(engine: Engine) -> None:
    engine.receive("A", 50)
    engine.receive("B", 50)
    on_a = [
        engine.reserve([("A", 1)], ttl_seconds=600 - n, idempotency_key=key()).id for n in range(7)
    ]
    on_b = [engine.reserve([("B", 1)], ttl_seconds=300, idempotency_key=key()).id for _ in range(3)]
    engine.commit(on_a[0])
    engine.release(on_b[0])
    assert walk_holds(engine, sku="A", limit=2) == on_a[:0:-1]  # soonest expiry first
    assert sorted(walk_holds(engine, sku="B", limit=1)) == sorted(on_b[1:])
    assert sorted(walk_holds(engine, limit=3)) == sorted(on_a[1:] + on_b[1:])
    assert walk_holds(engine, sku="A", location="berlin") == []


def test_ties_on_expiry_are_paged_without_loss(engine: Engine, clock: Any) -> None:
    clock(0)  # one frozen instant: every hold expires in the same millisecond
    engine.receive("A", 50)
    held = {hold(engine, "A", 60) for _ in range(9)}
    assert sorted(walk_holds(engine, sku="A", limit=2)) == sorted(held)
    assert sorted(walk_holds(engine, limit=4)) == sorted(held)


def test_held_reservations_of_a_customer(engine: Engine) -> None:
    seconds, _ = engine.client.time()
    engine.receive("TEE", 20)
    engine.receive("PLAIN", 20)
    opened = datetime.fromtimestamp(int(seconds) - 60, tz=UTC)
    engine.create_drop("launch", ["TEE"], opens_at=opened, per_customer_limit=5)

    def drop_hold(customer: str, lines: list[tuple[str, int]]) -> str:
        return engine.reserve(lines, customer=customer, idempotency_key=key()).id

    ann = [drop_hold(" Ann@X ", [("TEE", 1)]), drop_hold("ann@x", [("TEE", 2), ("PLAIN", 1)])]
    bob = drop_hold("bob", [("TEE", 1)])
    engine.reserve([("PLAIN", 1)], customer="ann@x", idempotency_key=key())  # no drop: unrecorded
    engine.release(ann[0])
    assert walk_holds(engine, customer="ANN@x ", limit=1) == ann[1:]
    assert walk_holds(engine, customer="ann@x", sku="TEE") == ann[1:]
    assert walk_holds(engine, customer="bob") == [bob]
    assert walk_holds(engine, customer="carl") == []


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"customer": "  "}, "customer must not be empty"),
        ({"customer": "x" * 129}, "customer is longer than"),
        ({"status": "committed"}, "only held reservations are indexed"),
        ({"limit": 101}, "limit must be between 1 and 100"),
        ({"cursor": "1.2"}, "is not a cursor"),
        ({"sku": "a b"}, "may hold only"),
    ],
)
def test_bad_listing_input(engine: Engine, filters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        engine.held_reservations(**filters)  # type: ignore[arg-type]
