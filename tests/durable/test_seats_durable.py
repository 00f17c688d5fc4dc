"""Seats in the durable record (docs/seats.md): the flusher records seat events like
stock events, ``verify`` and ``replay_check`` agree, and a rebuild of a lost Redis puts
back each tenant's settings and assigned users (pending invites are lost, as holds are)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from earmark import AsyncEngine, EngineConfig, SeatLimitReached, limits
from earmark.durable.rebuild import rebuild, replay_check, verify
from earmark.durable.seats import recorded_seats, restore_calls
from earmark.store.ledger import Ledger
from tests.support.backends import fresh_prefix
from tests.support.durable import lose_redis
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis_server


async def seat_history(engine: AsyncEngine) -> None:
    await engine.set_seat_cap("acme", 3)
    await engine.set_seat_cap("beta", 2, overage="2x", floating=True, lease_seconds=600)
    for user in ("ann", "bob", "cat"):
        await engine.assign_seat("acme", user)
    await engine.free_seat("acme", "bob")
    await engine.invite_seat("acme", "dan", 600)  # pending: lost by a rebuild
    await engine.invite_seat("beta", "eve", 600)
    await engine.accept_invite("beta", "eve")
    await engine.assign_seat("beta", "fay")
    await engine.set_seat_cap("acme", 1)  # over cap: 2 assigned + 1 invited > 1


async def test_the_record_agrees_and_replays_seat_events(
    aengine: AsyncEngine, sqlite_ledger: Ledger
) -> None:
    await seat_history(aengine)
    report = await verify(aengine, sqlite_ledger)
    assert report.ok, report.drift
    recorded = {(x.sku, x.location): x for x in await sqlite_ledger.stock_levels()}
    acme = recorded[("acme", limits.SEAT_LOCATION)]
    assert (acme.on_hand, acme.committed, acme.reserved) == (1, 2, 1)
    replayed = await replay_check(sqlite_ledger)
    assert replayed.ok and replayed.events > 0
    tenants = await recorded_seats(sqlite_ledger)
    assert tenants["acme"].users == {"ann", "cat"} and tenants["beta"].users == {"eve", "fay"}
    for call in restore_calls(aengine.keys, 4, tenants):
        assert len({key_slot(k.encode()) for k in call.keys}) == 1


async def test_a_rebuild_restores_settings_and_assigned_users(
    redis_server: RedisServer, sqlite_ledger: Ledger
) -> None:
    prefix = fresh_prefix()
    first = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=prefix, partitions=4))
    await first.start()
    await seat_history(first)
    engine = await lose_redis(first, redis_server.url, sqlite_ledger)
    try:
        await rebuild(engine, sqlite_ledger)
        acme = await engine.seats("acme")
        assert (acme.cap, acme.limit, acme.assigned, acme.invited) == (1, 1, 2, 0)
        assert acme.over_cap
        beta = await engine.seats("beta")
        assert (beta.limit, beta.floating, beta.lease_seconds, beta.assigned) == (4, True, 600, 2)
        users = await engine.seat_users("beta")
        assert [u.user for u in users.users] == ["eve", "fay"]
        assert all(u.lease_expires_at is not None for u in users.users)
        await engine.free_seat("acme", "ann")  # use falls to the limit
        assert not (await engine.seats("acme")).over_cap
        with pytest.raises(SeatLimitReached):
            await engine.assign_seat("acme", "gus")
        assert (await verify(engine, sqlite_ledger)).ok
        assert (await replay_check(sqlite_ledger)).ok
    finally:
        await engine.close()
