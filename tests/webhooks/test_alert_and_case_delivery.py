"""A low-stock alert and a discrepancy case's events, delivered to a real HTTP receiver:
engine (redis-server) -> flusher -> PostgreSQL ledger -> dispatcher -> worker ->
receiver. What the receiver got is printed and saved under ``EARMARK_SAMPLES_DIR`` (the
test's tmp dir otherwise), verified with the endpoint's secret."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from earmark import AsyncEngine
from earmark.durable.flusher import Flusher
from earmark.durable.reconciliation import CountLine, ReconciliationService
from earmark.store.ledger import Ledger
from earmark.webhooks import endpoints, verify
from earmark.webhooks.service import WebhookService
from tests.support.receivers import Receiver, always
from tests.support.webhooks import short_config

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


async def test_stock_low_and_discrepancy_events_reach_a_receiver(
    aengine: AsyncEngine, pg_ledger: Ledger, tmp_path: Path
) -> None:
    config = short_config()
    service = WebhookService(pg_ledger, config)
    receiver = Receiver(always(200)).start()
    flusher = Flusher.for_engine(aengine, pg_ledger, consumer="alerts")
    stop = asyncio.Event()
    try:
        endpoint = await endpoints.create(
            service.store, config, receiver.url, ["stock.low", "discrepancy.*"]
        )
        tasks = [asyncio.create_task(flusher.run(stop)), asyncio.create_task(service.run(stop))]
        await aengine.receive("TEE-M", 40)
        await aengine.set_reorder("TEE-M", 10, 20, lead_time_days=14)
        await aengine.reserve([("TEE-M", 31)], idempotency_key="big-order")  # 9 left: low
        seconds, micros = await aengine.client.time()
        counted_at = int(seconds) * 1000 + int(micros) // 1000
        cases = ReconciliationService(aengine, pg_ledger, clock=lambda: counted_at + 60_000)
        report = await cases.reconcile(
            "3pl-east", counted_at, [CountLine("TEE-M", "default", 36)], threshold_units=2
        )
        await cases.resolve(report.cases[0].id, "adjust", "recounted", actor="ops-lead")
        got = await asyncio.to_thread(receiver.wait_for, 3, 30.0)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        receiver.close()
        await flusher.close()
        await service.close()
    events = [verify(endpoint.secret, r.headers, r.body) for r in got]
    assert sorted(e["type"] for e in events) == [
        "discrepancy.opened",
        "discrepancy.resolved",
        "stock.low",
    ]
    low = next(e for e in events if e["type"] == "stock.low")["data"]
    assert low["attributes"]["available"] == "9"
    assert low["attributes"]["reorder_point"] == "10"
    assert low["attributes"]["demand_24h"] == "31"
    opened = next(e for e in events if e["type"] == "discrepancy.opened")["data"]
    assert opened["attributes"]["difference"] == "-4"
    samples = Path(os.environ.get("EARMARK_SAMPLES_DIR", tmp_path))
    samples.mkdir(parents=True, exist_ok=True)
    received = [{"headers": dict(r.headers), "body": json.loads(r.body)} for r in got]
    (samples / "webhooks_received.json").write_text(json.dumps(received, indent=2))
    report_json = report.model_dump_json(indent=2)
    (samples / "reconciliation_report.json").write_text(report_json)
    print(json.dumps(received, indent=2))
    print(report_json)
