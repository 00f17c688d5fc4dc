"""The whole path on real servers: engine (redis-server) -> flusher -> PostgreSQL ledger
-> dispatcher -> worker -> receivers. A storm of changes to one SKU, and a worker
process killed with SIGKILL in the middle of its deliveries."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from earmark import AsyncEngine, Line
from earmark.durable.flusher import Flusher
from earmark.store.ledger import Ledger
from earmark.store.webhooks import webhook_store
from earmark.webhooks import endpoints, verify
from earmark.webhooks.service import WebhookService
from tests.support.durable import caught_up, eventually, recorded_levels
from tests.support.receivers import Receiver, Reply, always
from tests.support.webhooks import Writer, short_config

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]

STORM = 5_000
SKU = "STORM"


def latest_states(secret: str, receiver: Receiver) -> dict[tuple[str, str], dict[str, Any]]:
    """What a receiver keeps: per (sku, location), the stock.changed of the highest seq."""
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for request in receiver.received():
        event = verify(secret, request.headers, request.body)
        data = event["data"]
        key = (data["sku"], data["location"])
        if key not in kept or data["seq"] > kept[key]["seq"]:
            kept[key] = data
    return kept


async def test_a_storm_of_changes_to_one_sku_is_delivered_coalesced(
    aengine: AsyncEngine, pg_ledger: Ledger
) -> None:
    """5,000 reserve/release changes to one SKU: a slow receiver of stock.changed ends on
    the engine's state after far fewer deliveries; reservation events stay one per change."""
    await aengine.receive(SKU, 1_000)
    config = short_config(concurrency=16)
    service = WebhookService(pg_ledger, config)
    stock = Receiver(lambda _: Reply(200, delay_seconds=0.01)).start()
    reservations = Receiver(always(200)).start()
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="storm")
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        watching = await endpoints.create(service.store, config, stock.url, ["stock.changed"])
        holds = await endpoints.create(service.store, config, reservations.url, ["reservation.*"])
        tasks += [asyncio.create_task(flusher.run(stop)), asyncio.create_task(service.run(stop))]
        ids: list[str] = []
        for _ in range(STORM // 100):  # 50 rounds of 50 holds, then their 50 releases
            held = await asyncio.gather(
                *(aengine.reserve([Line(sku=SKU, qty=1)], idempotency_key=uuid.uuid4().hex)
                  for _ in range(50))
            )  # fmt: skip
            ids += [r.id for r in held]
            await asyncio.gather(*(aengine.release(r.id) for r in held))
        await eventually(lambda: caught_up(aengine), 60, "the flusher")
        store = webhook_store(pg_ledger)

        async def delivered() -> bool:
            backlog = await store.backlog()
            return backlog.dispatch_behind == 0 and backlog.messages == 0

        await eventually(delivered, 120, "every webhook delivered")
        stop.set()
        await asyncio.gather(*tasks)
        (level,) = await aengine.availability([(SKU, "default")])
        final = latest_states(watching.secret, stock)[(SKU, "default")]
        assert {k: final[k] for k in ("on_hand", "reserved", "committed", "available")} == {
            "on_hand": level.on_hand, "reserved": level.reserved,
            "committed": level.committed, "available": level.available,
        }  # fmt: skip
        recorded = (await recorded_levels(pg_ledger))[(SKU, "default")]
        assert final["seq"] == STORM + 1 and final["reserved"] == recorded["reserved"] == 0
        sent = len(stock.received())
        assert sent < STORM // 2, f"{sent} stock.changed deliveries: not coalesced"
        messages = await store.messages(holds.id)
        assert len(messages) == STORM and {m.status for m in messages} == {"delivered"}
        assert len(set(reservations.ids())) == STORM  # one per change, none coalesced
        print(f"\nstorm: {STORM} changes -> {sent} stock.changed deliveries (coalesced)")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await flusher.close()
        await service.close()
        stock.close()
        reservations.close()


def deliver_process(database_url: str, log: Path, *, once: bool = False) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    env.update(
        EARMARK_DATABASE_URL=database_url,
        EARMARK_WEBHOOKS_ALLOW_PRIVATE="true",
        EARMARK_WEBHOOKS_TIMEOUT_SECONDS="2",
        EARMARK_WEBHOOKS_LEASE_SECONDS="3",
        EARMARK_WEBHOOKS_SCHEDULE_SECONDS="0,1,1,1,1,1,1,1",
        EARMARK_WEBHOOKS_CONCURRENCY="8",
    )
    argv = [sys.executable, "-m", "earmark", "webhooks", "deliver", *(["--once"] if once else [])]
    with log.open("a") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out, text=True)


async def test_a_worker_killed_mid_delivery_loses_nothing_and_keeps_the_ids(
    pg_url: str, pg_ledger: Ledger, tmp_path: Path
) -> None:
    receiver = Receiver(lambda _: Reply(200, delay_seconds=0.15)).start()
    worker = restarted = None
    try:
        store = webhook_store(pg_ledger)
        config = short_config()
        ep = await endpoints.create(store, config, receiver.url, ["adjustment.*"])
        writer = Writer(pg_ledger)
        for _ in range(10):
            await writer.receipts(20)
        log = tmp_path / "worker.log"
        worker = deliver_process(pg_url, log)
        await asyncio.to_thread(receiver.wait_for, 20, 60)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        before = await store.messages(ep.id)
        in_flight = [m for m in before if m.status == "pending" and m.attempts == 0]
        got = set(receiver.ids())
        assert any(m.id in got for m in in_flight), "the kill landed between deliveries"
        restarted = deliver_process(pg_url, log)

        async def all_delivered() -> bool:
            return {m.status for m in await store.messages(ep.id)} == {"delivered"}

        await eventually(all_delivered, 60, "every message delivered after the restart")
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(20) == 0, log.read_text()
        messages = await store.messages(ep.id)
        assert len(messages) == 200
        received = receiver.received()
        assert {r.id for r in received} == {m.id for m in messages}  # every one, no stranger
        bodies: dict[str, bytes] = {}
        for r in received:  # a duplicate is the same message: same id, same body
            assert bodies.setdefault(r.id, r.body) == r.body
            verify(ep.secret, r.headers, r.body)
        duplicates = len(received) - len(bodies)
        print(f"\nkill -9: {len(bodies)} messages delivered, {duplicates} sent twice (same id)")
    finally:
        for process in (worker, restarted):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        receiver.close()


def test_deliver_once_exits_when_nothing_is_due(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "once.log"
    process = deliver_process(pg_url, log, once=True)
    assert process.wait(60) == 0, log.read_text()
    assert "dispatched 0 ledger rows; 0 attempts" in log.read_text()
