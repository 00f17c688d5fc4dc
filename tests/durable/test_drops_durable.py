"""A drop's rule changes and its holds reach the durable record: verify and verify
--replay agree with Redis (real redis-server and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from earmark import AsyncEngine, EngineConfig
from earmark.durable.flusher import Flusher
from earmark.durable.rebuild import replay_check, start_engine, verify
from earmark.store.ledger import Ledger
from tests.support.backends import fresh_prefix
from tests.support.durable import caught_up, eventually, run_flusher, stop_flusher
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


async def test_drop_events_verify_and_replay(redis_server: RedisServer, pg_ledger: Ledger) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    await start_engine(engine, pg_ledger)
    flusher = Flusher.for_engine(engine, pg_ledger, consumer="f1", block_ms=10)
    stop, task = await run_flusher(flusher)
    await engine.receive("TEE", 5, location="berlin")
    seconds, _ = await engine.client.time()
    opens = datetime.fromtimestamp(int(seconds), tz=UTC) + timedelta(seconds=-1)
    await engine.create_drop("launch", ["TEE"], opens_at=opens, per_customer_limit=2)
    held = await engine.reserve([("TEE", 2, "berlin")], idempotency_key="a", customer="ann")
    await engine.commit(held.id)
    await eventually(lambda: caught_up(engine), what="the flush")
    await stop_flusher(stop, task)
    report = await verify(engine, pg_ledger)
    assert report.ok, report.drift
    replay = await replay_check(pg_ledger)
    assert replay.ok, replay.drift
    await engine.close()
    await flusher.close()


async def test_offers_verify_and_replay(redis_server: RedisServer, pg_ledger: Ledger) -> None:
    """Offers are holds: their 'reserved' events and the pass-ons (a decline, a receipt,
    a commit) replay to the levels Redis holds, and every waitlist event is recorded with
    its actor."""
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    await start_engine(engine, pg_ledger)
    flusher = Flusher.for_engine(engine, pg_ledger, consumer="f1", block_ms=10)
    stop, task = await run_flusher(flusher)
    await engine.receive("TEE", 1)
    seconds, _ = await engine.client.time()
    opens = datetime.fromtimestamp(int(seconds), tz=UTC) + timedelta(seconds=-1)
    await engine.create_drop("launch", ["TEE"], opens_at=opens, per_customer_limit=1, waitlist=True)
    held = await engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    for who in ("bob", "cy", "dee"):
        await engine.join_waitlist("launch", who, "TEE", actor="checkout")
    await engine.release(held.id, actor="shop")  # offered to bob
    await engine.decline_waitlist("launch", "bob", actor="checkout")  # passed on to cy
    cy = await engine.get_waitlist_entry("launch", "cy")
    assert cy.offer is not None
    await engine.commit(cy.offer.reservation_id, actor="checkout")
    await engine.receive("TEE", 1, actor="warehouse")  # offered to dee
    assert (await engine.get_waitlist_entry("launch", "dee")).status == "offered"
    await eventually(lambda: caught_up(engine), what="the flush")
    await stop_flusher(stop, task)
    report = await verify(engine, pg_ledger)
    assert report.ok, report.drift
    replay = await replay_check(pg_ledger)
    assert replay.ok, replay.drift
    events = await pg_ledger.events(None, 1000)
    waitlist = [(e.type, e.actor) for e in events if e.type.startswith("waitlist_")]
    assert waitlist[3:] == [
        ("waitlist_offered", "shop"),
        ("waitlist_declined", "checkout"),
        ("waitlist_offered", "checkout"),
        ("waitlist_converted", "checkout"),
        ("waitlist_offered", "warehouse"),
    ]
    offers = [e for e in events if e.type == "reserved" and e.actor != "library"]
    assert [e.actor for e in offers] == ["shop", "checkout", "warehouse"]
    await engine.close()
    await flusher.close()
