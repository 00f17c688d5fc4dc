"""``list_drops`` (``GET /v1/drops``, the console's Drops page): every drop once over
the pages, by id, with the figures ``get_drop`` reads; on every backend (the cluster has
4 partitions, so drops live in different partitions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from earmark import Drop, Engine, InvalidRequest, limits


def make_drops(engine: Engine, count: int) -> None:
    opens = datetime.now(UTC) - timedelta(minutes=1)
    for n in range(count):
        engine.receive(f"SKU-{n}", 10)
        engine.create_drop(f"drop-{n:02d}", [f"SKU-{n}"], opens_at=opens)


def walk(engine: Engine, limit: int) -> list[Drop]:
    found: list[Drop] = []
    cursor = None
    for _ in range(100):
        page = engine.list_drops(cursor=cursor, limit=limit)
        assert len(page.items) <= limit
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


def test_every_drop_once_by_id_with_its_figures(engine: Engine) -> None:
    assert engine.list_drops().items == []
    make_drops(engine, 7)
    engine.reserve([("SKU-3", 2)], customer="ann", idempotency_key="r1")
    found = walk(engine, limit=3)
    assert [d.id for d in found] == [f"drop-{n:02d}" for n in range(7)]
    assert found[3] == engine.get_drop("drop-03")
    assert (found[3].held, found[3].sold, found[3].open) == (2, 0, True)
    assert engine.list_drops(limit=7).next_cursor is None


def test_a_drop_of_several_skus_is_listed_once(engine: Engine) -> None:
    engine.receive("A", 1)
    engine.receive("B", 1)
    skus = ["A"] if engine.partition_of("A") != engine.partition_of("B") else ["A", "B"]
    engine.create_drop("pair", skus, opens_at=datetime.now(UTC) + timedelta(hours=1))
    assert [d.id for d in engine.list_drops().items] == ["pair"]


@pytest.mark.parametrize(
    ("cursor", "limit"),
    [("x y", 10), (None, 0), (None, limits.DROP_PAGE_LIMIT_MAX + 1)],
)
def test_bad_cursor_or_limit_refused(engine: Engine, cursor: str | None, limit: int) -> None:
    with pytest.raises(InvalidRequest):
        engine.list_drops(cursor=cursor, limit=limit)
