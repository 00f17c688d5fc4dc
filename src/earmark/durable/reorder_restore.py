"""Reorder settings and low-stock alert state after a rebuild.

They live in the stock hashes (``lua/includes/alerts.lua``), which a rebuild writes
back from stock levels alone; the record keeps them as events with no deltas
(``reorder_set``, ``stock_low``, ``stock_rearmed``). ``restore_reorder`` folds those, in
event order, into each (sku, location)'s last setting and whether its alert had fired,
and writes them back with plain commands: no event is emitted, so a SKU that was low
does not alert a second time because Redis was rebuilt. The demand ring (units reserved
per hour) is not in the record and starts empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from earmark.engine.steps import Op, Pipeline
from earmark.keys import Keys, partition_of
from earmark.store.ledger import Ledger, PageQuery, every_event
from earmark.store.pages import PAGE_LIMIT_MAX

ALERT_EVENTS = ("reorder_set", "stock_low", "stock_rearmed")
WRITES_PER_PIPELINE_MAX = 500


@dataclass
class ReorderState:
    reorder_point: str
    rearm_above: str
    lead_time_days: str
    low_at: int | None = None  # ms the alert fired, while it waits to re-arm


async def reorder_states(ledger: Ledger) -> dict[tuple[str, str], ReorderState]:
    """The last reorder setting and alert state of every (sku, location) that has one."""
    states: dict[tuple[str, str], ReorderState] = {}
    query = PageQuery(types=ALERT_EVENTS, limit=PAGE_LIMIT_MAX)
    async for event in every_event(ledger, query):
        key, flags = (event.sku, event.location), event.flags
        if event.type == "reorder_set":
            states[key] = ReorderState(
                flags["reorder_point"], flags["rearm_above"], flags.get("lead_time_days", "")
            )
        elif key in states:
            states[key].low_at = event.occurred_at_ms if event.type == "stock_low" else None
    return states


def restore_reorder(
    keys: Keys, partitions: int, states: dict[tuple[str, str], ReorderState]
) -> Op[int]:
    """Writes ``states`` back into the stock hashes; returns how many."""
    commands: list[tuple[Any, ...]] = []
    for (sku, location), state in sorted(states.items()):
        stock = keys.stock(partition_of(sku, partitions), sku, location)
        fields: list[Any] = ["reorder_point", state.reorder_point, "rearm_above", state.rearm_above]
        if state.lead_time_days:
            fields += ["lead_time_days", state.lead_time_days]
        if state.low_at is not None:
            fields += ["alert_low", 1, "alert_at", state.low_at]
        commands.append(("HSET", stock, *fields))
        if state.low_at is None:
            commands.append(("HDEL", stock, "alert_low", "alert_at"))
        if not state.lead_time_days:
            commands.append(("HDEL", stock, "lead_time_days"))
    for start in range(0, len(commands), WRITES_PER_PIPELINE_MAX):
        yield Pipeline(commands[start : start + WRITES_PER_PIPELINE_MAX])
    return len(states)
