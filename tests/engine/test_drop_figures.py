"""``drop_figures`` (the per-drop gauges of /metrics): every drop once, its sold and held
units in total and per SKU over every location, open on the Redis clock; on every
backend (the cluster has 4 partitions, so the drops land in different ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from earmark import Engine


def test_every_drop_with_its_figures(engine: Engine) -> None:
    seconds, _ = engine.client.time()
    now = datetime.fromtimestamp(int(seconds), tz=UTC)
    assert engine.drop_figures() == []
    engine.receive("TEE", 10)
    engine.receive("TEE", 5, location="berlin")
    engine.receive("MUG", 4)
    engine.create_drop("a-open", ["TEE"], opens_at=now - timedelta(minutes=1))
    engine.create_drop("b-later", ["MUG"], opens_at=now + timedelta(hours=1))
    engine.reserve([("TEE", 2), ("TEE", 1, "berlin")], customer="ann", idempotency_key="r1")
    sold = engine.reserve([("TEE", 4)], customer="bob", idempotency_key="r2")
    engine.commit(sold.id)
    opened, later = engine.drop_figures()
    assert (opened.id, opened.open, opened.sold, opened.held) == ("a-open", True, 4, 3)
    assert [(s.sku, s.sold, s.held) for s in opened.skus] == [("TEE", 4, 3)]
    assert (later.id, later.open, later.sold, later.held) == ("b-later", False, 0, 0)
