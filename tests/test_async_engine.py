"""AsyncEngine runs the same operations as Engine (one implementation, two drivers)."""

from __future__ import annotations

import fakeredis
import pytest

from earmark import AsyncEngine, EngineConfig, InsufficientStock, ReservationReleased


async def test_the_async_engine_covers_every_operation() -> None:
    engine = AsyncEngine.embedded(EngineConfig(partitions=2), server=fakeredis.FakeServer())
    async with engine:
        assert (await engine.receive("A", 5)).on_hand == 5
        assert (await engine.adjust("A", 1, "found")).on_hand == 6
        await engine.receive("B", 2)
        held = await engine.reserve([("A", 2), ("B", 1)], idempotency_key="c")
        assert (await engine.reserve([("A", 2), ("B", 1)], idempotency_key="c")).id == held.id
        with pytest.raises(InsufficientStock):
            await engine.reserve([("B", 2)], idempotency_key="d")
        assert (await engine.extend(held.id, 60)).status == "held"
        assert (await engine.commit(held.id)).status == "committed"
        assert (await engine.ship(held.id)).status == "shipped"
        other = await engine.reserve([("A", 1)], idempotency_key="e")
        assert (await engine.release(other.id)).status == "released"
        with pytest.raises(ReservationReleased):
            await engine.commit(other.id)
        a, b = await engine.availability(["A", "B"])
        assert (a.on_hand, a.available, b.on_hand, b.available) == (4, 4, 1, 1)
        assert (await engine.get_reservation(held.id)).status == "shipped"
        assert (await engine.stock("A")).version > 0
        assert (await engine.sweep()).expired == 0
