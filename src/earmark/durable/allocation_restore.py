"""Channel allocations after a rebuild.

An allocation is the field ``alloc:<channel>`` of a (sku, location)'s stock hash, its
units counted in ``reserved`` (docs/channels.md). A rebuild sets ``reserved`` to 0 for
the holds that did not survive; without this module the fences went with them, and
every other channel could sell the units a marketplace had been promised.

The record keeps every change of an allocation with the units it left: an ``allocated``
event (a fence, a give-back, a release) and a ``reserved`` event of a hold that drew the
allocation down carry ``allocation`` (the channel's units after). ``recorded_allocations``
reads the ``allocated`` events, then, for each (sku, location) that ever had one, its
``allocated`` and ``reserved`` events from the first allocation on, and keeps each
channel's last figure. ``restore_stock`` then writes them back with the stock: reserved
= the allocations, and the ``holds_lost`` event gives back only the rest.
"""

from __future__ import annotations

import logging

from earmark.models import StockLevel
from earmark.store.events import Event
from earmark.store.ledger import Ledger, PageQuery, every_event
from earmark.store.pages import PAGE_LIMIT_MAX

log = logging.getLogger("earmark.durable.rebuild")

# (sku, location) -> channel -> units ring-fenced
Allocations = dict[tuple[str, str], dict[str, int]]


async def recorded_allocations(ledger: Ledger) -> Allocations:
    """Every channel's last allocation of every (sku, location), 0s left out."""
    first: dict[tuple[str, str], Event] = {}
    async for event in every_event(ledger, PageQuery(types=("allocated",), limit=PAGE_LIMIT_MAX)):
        first.setdefault((event.sku, event.location), event)
    found: Allocations = {}
    for (sku, location), start in sorted(first.items()):
        units = {start.channel: int(start.flags["allocation"])}
        query = PageQuery(
            sku=sku,
            location=location,
            types=("allocated", "reserved"),
            after=start.key,
            limit=PAGE_LIMIT_MAX,
        )
        async for event in every_event(ledger, query):
            if "allocation" in event.flags:
                units[event.channel] = int(event.flags["allocation"])
        kept = {channel: n for channel, n in units.items() if n > 0}
        if kept:
            found[(sku, location)] = kept
    return found


def fitted(level: StockLevel, allocations: dict[str, int]) -> dict[str, int]:
    """The allocations of ``level`` that its recorded ``reserved`` covers. They always fit
    (every allocated unit is counted in reserved); should the record say otherwise, the
    fences are cut, in channel order, to what reserved holds, and the cut is logged."""
    room, kept = level.reserved, {}
    for channel, units in sorted(allocations.items()):
        take = max(0, min(units, room))
        if take:
            kept[channel] = take
        room -= take
    if kept != allocations:
        log.warning(
            "%s at %s: the record's reserved (%d) does not cover the allocations %s; restoring %s",
            level.sku,
            level.location,
            level.reserved,
            allocations,
            kept,
        )
    return kept
