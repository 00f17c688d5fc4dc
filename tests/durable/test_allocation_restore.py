"""How a rebuild carries channel allocations (earmark.durable.allocation_restore): they
must fit the recorded reserved, and no restore call carries more than its bound."""

from __future__ import annotations

import logging

import orjson
import pytest

from earmark.durable.allocation_restore import fitted
from earmark.durable.rebuild import RESTORE_ITEMS_PER_CALL_MAX, _Restore
from earmark.keys import Keys
from earmark.models import StockLevel


def test_allocations_fit_the_recorded_reserved(caplog: pytest.LogCaptureFixture) -> None:
    level = StockLevel(sku="TEE", location="default", on_hand=10, reserved=4)
    assert fitted(level, {"a": 1, "b": 3}) == {"a": 1, "b": 3}
    with caplog.at_level(logging.WARNING, logger="earmark.durable.rebuild"):
        assert fitted(level, {"b": 3, "a": 3}) == {"a": 3, "b": 1}  # cut, in channel order
    assert "does not cover the allocations" in caplog.text


def test_a_call_carries_at_most_its_bound_of_allocations() -> None:
    count = RESTORE_ITEMS_PER_CALL_MAX + 100
    levels = [
        StockLevel(sku=f"S{i:04}", location="default", on_hand=5, reserved=2) for i in range(count)
    ]
    allocations = {(x.sku, x.location): {"a": 1, "b": 1} for x in levels}
    restore = _Restore(Keys("em"), 0, 1, "g", "0-0", 1_000, levels, [], [], allocations)
    calls = list(restore.calls())
    per_call = [int(call.args[8]) for call in calls]  # ARGV[9]: the allocations it carries
    assert all(n <= RESTORE_ITEMS_PER_CALL_MAX for n in per_call)
    assert sum(per_call) == 2 * count
    records = [int(call.args[4]) for call in calls]
    assert sum(records) == count and len(calls) == 3  # 250 records of 2 fences each per call
    first = calls[0]
    tail = first.args[9 + 11 * records[0] :]  # after the records (no parts in this call)
    assert tail[:6] == [1, "a", 1, 1, "b", 1]
    assert orjson.dumps(first.args)  # every argument is plain data


def test_the_script_refuses_allocations_beyond_the_recorded_reserved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python fits the fences first; restore_stock checks again and writes nothing."""
    import redis.exceptions

    from earmark import Engine, EngineConfig
    from earmark.durable import rebuild

    monkeypatch.setattr(rebuild, "fitted", lambda level, allocations: allocations)
    engine = Engine.embedded(EngineConfig(prefix="fit", partitions=1)).start(initialize=False)
    try:
        level = StockLevel(sku="TEE", location="default", on_hand=10, reserved=2)
        restore = _Restore(engine.keys, 0, 1, "g", "0-0", 1_000, [level], [], [],
                           {("TEE", "default"): {"a": 3}})  # fmt: skip
        (call,) = restore.calls()
        with pytest.raises(redis.exceptions.ResponseError, match="exceed its recorded reserved"):
            engine.run(rebuild._run_call(call))
        assert engine.client.exists(engine.keys.stock(0, "TEE", "default")) == 0
        assert engine.client.exists(engine.keys.meta(0)) == 0  # no marker: still fenced
    finally:
        engine.close()
