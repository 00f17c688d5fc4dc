"""The ledger never drops an event silently: a redelivered event (same key, same
content) is harmless; an event with a recorded key and other content is a collision that
stops the write loudly (LedgerConflict), whatever the store."""

from __future__ import annotations

import dataclasses

import pytest

from earmark import LedgerConflict
from earmark.store.events import Event
from earmark.store.ledger import Ledger


def event(**changes: object) -> Event:
    base = Event.from_stream(
        0,
        "1700000000000-0",
        {"type": "received", "sku": "A", "location": "default", "qty": "5",
         "deltas": '{"on_hand": 5}', "actor": "t", "at": "1700000000000"},
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


async def test_on_sqlite_a_redelivery_is_harmless_and_a_collision_is_refused(
    sqlite_ledger: Ledger,
) -> None:
    await redelivery_and_collision(sqlite_ledger)


@pytest.mark.postgres
async def test_on_postgres_a_redelivery_is_harmless_and_a_collision_is_refused(
    pg_ledger: Ledger,
) -> None:
    await redelivery_and_collision(pg_ledger)


async def redelivery_and_collision(ledger: Ledger) -> None:
    assert await ledger.persist([event()]) == 1
    assert await ledger.persist([event()]) == 0  # the same event again: nothing applied
    other = event(qty=7, deltas={"on_hand": 7})
    with pytest.raises(LedgerConflict, match="collides"):
        await ledger.persist([event(stream_seq=1), other])
    (level,) = await ledger.stock_levels()
    assert level.on_hand == 5  # the batch with the collision wrote nothing
    assert (await ledger.newest_event_ids(1)) == {0: (1_700_000_000_000, 0)}
