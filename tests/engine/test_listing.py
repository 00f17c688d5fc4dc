"""``stock_page`` (``GET /v1/skus``): every stock record exactly once over the pages,
filtered by SKU prefix and location, on every backend (the cluster has 4 partitions)."""

from __future__ import annotations

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
