"""A rebuild keeps reorder settings and alert state (earmark.durable.reorder_restore),
on a real redis-server and PostgreSQL: a SKU that was low stays low without alerting
again, an armed one still fires, and replay still agrees."""

from __future__ import annotations

from earmark import AsyncEngine
from earmark.durable.flusher import Flusher
from earmark.durable.rebuild import rebuild, replay_check, verify
from earmark.store.ledger import Ledger, PageQuery


async def low_events(ledger: Ledger) -> list[str]:
    page = await ledger.page(PageQuery(types=("stock_low",), limit=100))
    return [e.sku for e in page.events]


async def test_reorder_settings_and_alert_state_survive_a_rebuild(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    await aengine.receive("LOW", 10)
    await aengine.receive("ARMED", 10)
    await aengine.set_reorder("LOW", 5, 8, lead_time_days=3)
    await aengine.set_reorder("ARMED", 5, 8)
    await aengine.damage("LOW", 6, "wet")  # 4: fires
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="t")
    await flusher.drain(30)
    await flusher.close()
    assert await low_events(pg_ledger) == ["LOW"]
    for sku in ("LOW", "ARMED"):  # the stock hashes are lost
        await aengine.client.delete(aengine.keys.stock(aengine.partition_of(sku), sku, "default"))

    await rebuild(aengine, pg_ledger, force=True)
    (alert,) = await aengine.alerts()
    assert (alert.sku, alert.available, alert.reorder_point, alert.lead_time_days) == (
        "LOW", 4, 5, 3,
    )  # fmt: skip
    await aengine.adjust("LOW", -1, "still low")  # no second alert for the same crossing
    await aengine.damage("ARMED", 5, "cut")  # 5: the armed one fires
    await aengine.receive("LOW", 5)  # 8: not above rearm_above
    assert [a.sku for a in await aengine.alerts()] == ["ARMED", "LOW"]
    await aengine.receive("LOW", 1)  # 9: re-armed
    assert [a.sku for a in await aengine.alerts()] == ["ARMED"]
    assert (await verify(aengine, pg_ledger)).ok
    assert await low_events(pg_ledger) == ["LOW", "ARMED"]
    assert (await replay_check(pg_ledger)).ok
