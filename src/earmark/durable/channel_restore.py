"""Channel rules after a rebuild.

Each partition keeps its own copy of a channel's rules (``keys.channel``; the default
copied to every partition, a SKU's override in the SKU's partition), which a rebuild
would otherwise lose: a channel would then see plain availability, its buffer gone. The
record keeps every change as an event with no deltas (``channel_set``,
``channel_removed``) in the partition it was written to; ``channel_rules`` folds them, in
event order, into each partition's last rules, and ``restore_channels`` writes them back
with plain commands (no event: nothing changed). Allocations are not restored: they are
counted in ``reserved``, which a rebuild sets to 0 with the holds (docs/channels.md).
"""

from __future__ import annotations

from typing import Any

from earmark.engine.steps import Op, Pipeline
from earmark.keys import Keys
from earmark.store.ledger import Ledger, PageQuery, every_event
from earmark.store.pages import PAGE_LIMIT_MAX

CHANNEL_EVENTS = ("channel_set", "channel_removed")
WRITES_PER_PIPELINE_MAX = 500

# (partition, channel) -> field ('*' or 'sku:<sku>') -> rule ('units:percent:floor')
Rules = dict[tuple[int, str], dict[str, str]]


async def channel_rules(ledger: Ledger) -> Rules:
    """The rules every partition's copy of every channel held at the last event."""
    rules: Rules = {}
    query = PageQuery(types=CHANNEL_EVENTS, limit=PAGE_LIMIT_MAX)
    async for event in every_event(ledger, query):
        held = rules.setdefault((event.partition, event.channel), {})
        field = "sku:" + event.sku if event.flags.get("scope") == "sku" else "*"
        if event.type == "channel_set":
            held[field] = str(event.flags["rule"])
        else:
            held.pop(field, None)
    return rules


def restore_channels(keys: Keys, partitions: int, rules: Rules) -> Op[int]:
    """Writes ``rules`` back into each partition's copy; returns how many rules."""
    commands: list[tuple[Any, ...]] = []
    for (p, channel), fields in sorted(rules.items()):
        if fields and p < partitions:
            pairs = [x for field in sorted(fields) for x in (field, fields[field])]
            commands.append(("HSET", keys.channel(p, channel), *pairs))
    for start in range(0, len(commands), WRITES_PER_PIPELINE_MAX):
        yield Pipeline(commands[start : start + WRITES_PER_PIPELINE_MAX])
    return sum(len(fields) for fields in rules.values())
