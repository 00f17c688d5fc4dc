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
