"""``earmark.client`` answers every route with a model, against a real ``earmark serve``
(flusher and webhook worker in-process): health, readiness and the overview, the ledger,
reconciliations and discrepancy cases, webhook endpoints, their replays and deliveries,
and reorder points with an Idempotency-Key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from earmark import apikeys
from earmark.client import Client
from earmark.durable import service as durable
from earmark.errors import IdempotencyConflict, WebhookEndpointNotFound
from earmark.models import (
    Check,
    CreatedWebhookEndpoint,
    DeliveryAttempt,
    DeliveryAttempts,
    DiscrepancyCase,
    DiscrepancyPage,
    DurableBacklog,
    Health,
    HoldCounts,
    LedgerEntry,
    LedgerPage,
    Overview,
    Readiness,
    ReconciliationReport,
    ReorderSetting,
    RotatedSecret,
    WebhookBacklog,
    WebhookEndpoint,
    WebhookReplay,
)
from tests.support.backends import fresh_prefix
from tests.support.receivers import Receiver
from tests.support.serve import Serve
from tests.support.servers import RedisServer

ACTOR = "client-typed"
WAIT_SECONDS = 20.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def sidecar(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serve, str]]:
    """``earmark serve`` with a durable record; webhook URLs may name 127.0.0.1 (the
    receivers)."""
    prefix = fresh_prefix()
    tmp = tmp_path_factory.mktemp("client-typed")
    database_url = f"sqlite:///{tmp / 'earmark.db'}"
    scopes = frozenset(apikeys.SCOPES)
    token, _ = asyncio.run(durable.create_api_key(database_url, ACTOR, scopes))
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_DATABASE_URL": database_url,
        "EARMARK_API_KEY_CACHE_SECONDS": "0",
        "EARMARK_WEBHOOKS_ALLOW_PRIVATE": "true",
    }
    server = Serve(Path(tmp), env)
    try:
        server.wait_ready()
        yield server, token
    finally:
        assert server.stopped_cleanly(), server.output()


@pytest.fixture
def client(sidecar: tuple[Serve, str]) -> Iterator[Client]:
    server, token = sidecar
    with Client(server.url, api_key=token) as opened:
        yield opened


def waited(read: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """Reads until ``done`` holds (the flusher and the webhook worker run in the
    background); fails after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = read()
        if done(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {found!r}")
        time.sleep(0.05)


def test_health_readiness_and_the_overview_are_models(client: Client) -> None:
    health = client.health()
    assert isinstance(health, Health) and health.status == "ok"
    ready = client.readiness()
    assert isinstance(ready, Readiness) and ready.status == "ready"
    assert all(isinstance(check, Check) for check in ready.checks.values())
    assert ready.checks["redis"].ok and ready.checks["redis"].required
    assert ready.checks["database"].ok and not ready.checks["database"].required

    client.receive("OVERVIEW", 2)
    client.reserve([("OVERVIEW", 1)], ttl_seconds=30)
    seen = client.overview()
    assert isinstance(seen, Overview)
    assert isinstance(seen.holds, HoldCounts) and seen.holds.live >= 1
    assert seen.holds.expiring_next_minute <= seen.holds.live
    assert isinstance(seen.durable, DurableBacklog) and seen.durable.waiting_events >= 0
    assert isinstance(seen.webhooks, WebhookBacklog)  # the record is up
    assert seen.checks["redis"] == Check(ok=True)
    assert seen.checks["database"].ok and not seen.checks["database"].required


def test_the_ledger_answers_pages_of_entries(client: Client) -> None:
    client.receive("LEDGER", 3, reference="dn-1", idempotency_key="ledger-receive-1")
    client.damage("LEDGER", 1, "dropped")
    page = waited(
        lambda: client.ledger(sku="LEDGER"), lambda p: len(p.items) == 2, "two recorded events"
    )
    assert isinstance(page, LedgerPage) and page.next_cursor is None
    received, damaged = page.items
    assert isinstance(received, LedgerEntry)
    assert (received.type, received.sku, received.location, received.qty) == (
        "received",
        "LEDGER",
        "default",
        3,
    )
    assert received.deltas == {"on_hand": 3}
    assert (received.actor, received.idempotency_key) == (ACTOR, "ledger-receive-1")
    assert received.occurred_at.tzinfo is not None
    assert received.occurred_at <= datetime.now(UTC)
    assert (damaged.type, damaged.reason, damaged.deltas) == (
        "damaged",
        "dropped",
        {"on_hand": -1, "damaged": 1},
    )
    first = client.ledger(sku="LEDGER", limit=1)
    assert first.items == [received] and isinstance(first.next_cursor, str)
    rest = client.ledger(sku="LEDGER", cursor=first.next_cursor)
    assert rest.items == [damaged] and rest.next_cursor is None
    only = client.ledger(sku="LEDGER", types=["damaged"])
    assert only.items == [damaged]


def test_a_reconciliation_and_its_cases_are_models(client: Client) -> None:
    for sku in ("RECON-A", "RECON-B"):
        client.receive(sku, 10)
    for sku in ("RECON-A", "RECON-B"):
        waited(lambda s=sku: client.ledger(sku=s).items, bool, f"{sku}'s receipt recorded")
    body = {
        "source": "client-3pl",
        "counted_at": datetime.now(UTC).isoformat(),
        "counts": [{"sku": "RECON-A", "qty": 10}, {"sku": "RECON-B", "qty": 7}],
        "threshold_units": 1,
    }
    report = client.reconcile(body)
    assert isinstance(report, ReconciliationReport)
    assert (report.source, report.lines, report.matched, report.discrepancies) == (
        "client-3pl",
        2,
        1,
        1,
    )
    (case,) = report.cases
    assert isinstance(case, DiscrepancyCase)
    assert (case.sku, case.expected, case.counted, case.difference) == ("RECON-B", 10, 7, -3)
    assert (case.status, case.reconciliation_id, report.created_by) == ("open", report.id, ACTOR)
    assert client.get_reconciliation(report.id) == report

    page = client.discrepancies(source="client-3pl", status="open")
    assert isinstance(page, DiscrepancyPage)
    assert page.items == [case] and page.next_cursor is None
    assert client.get_discrepancy(case.id) == case
    assigned = client.assign_discrepancy(case.id, "dana")
    assert isinstance(assigned, DiscrepancyCase)
    assert (assigned.id, assigned.status, assigned.assignee) == (case.id, "investigating", "dana")
    resolved = client.resolve_discrepancy(case.id, "dismiss", "recounted", root_cause="mis-scan")
    assert isinstance(resolved, DiscrepancyCase)
    assert (resolved.status, resolved.resolution, resolved.resolved_by) == (
        "resolved",
        "dismiss",
        ACTOR,
    )
    assert (resolved.reason, resolved.root_cause) == ("recounted", "mis-scan")
    assert isinstance(resolved.resolved_at, datetime)
    assert client.discrepancies(source="client-3pl", status="open").items == []


def test_webhook_endpoints_replays_and_deliveries_are_models(client: Client) -> None:
    receiver = Receiver().start()
    try:
        created = client.create_webhook_endpoint(
            receiver.url, events=["stock.changed"], description="client test"
        )
        assert isinstance(created, CreatedWebhookEndpoint)
        assert created.secret.startswith("whsec_")
        assert (created.url, created.events, created.disabled) == (
            receiver.url,
            ["stock.changed"],
            False,
        )
        shown = client.get_webhook_endpoint(created.id)
        assert isinstance(shown, WebhookEndpoint) and not isinstance(shown, CreatedWebhookEndpoint)
        assert shown == WebhookEndpoint(**created.model_dump(exclude={"secret"}))
        listed = client.list_webhook_endpoints()
        assert all(isinstance(e, WebhookEndpoint) for e in listed)
        assert shown in listed

        changed = client.update_webhook_endpoint(created.id, description="renamed")
        assert isinstance(changed, WebhookEndpoint)
        assert (changed.description, changed.url) == ("renamed", receiver.url)
        assert changed.updated_at >= created.updated_at

        client.receive("HOOKED", 1)
        attempts = waited(
            lambda: client.webhook_deliveries(created.id),
            lambda page: any(a.outcome == "delivered" for a in page.items),
            "a delivered attempt",
        )
        assert isinstance(attempts, DeliveryAttempts) and attempts.next_cursor is None
        attempt = attempts.items[0]
        assert isinstance(attempt, DeliveryAttempt)
        assert (attempt.type, attempt.status_code, attempt.attempt) == ("stock.changed", 200, 1)
        assert attempt.message_id.startswith("msg_") and attempt.error is None
        assert attempt.message_id in {r.id for r in receiver.requests}

        rotated = client.rotate_webhook_secret(created.id, grace_seconds=60)
        assert isinstance(rotated, RotatedSecret)
        assert rotated.id == created.id and rotated.secret.startswith("whsec_")
        assert rotated.secret != created.secret
        assert rotated.previous_secret_expires_at > datetime.now(UTC)

        replay = client.replay_webhooks(created.id, after_seq=0)
        assert isinstance(replay, WebhookReplay)
        assert (replay.endpoint_id, replay.after_seq, replay.since) == (created.id, 0, None)
        assert replay.until_seq >= 1 and replay.status in ("running", "done")

        assert client.delete_webhook_endpoint(created.id) is None
        with pytest.raises(WebhookEndpointNotFound):
            client.get_webhook_endpoint(created.id)
    finally:
        receiver.close()


def test_a_reorder_point_set_with_a_key_is_replayed_and_a_reused_key_refused(
    client: Client,
) -> None:
    client.receive("REORDER", 10)
    setting = client.set_reorder("REORDER", 4, 8, idempotency_key="reorder-typed-1")
    assert isinstance(setting, ReorderSetting)
    assert (setting.reorder_point, setting.rearm_above, setting.low) == (4, 8, False)
    again = client.set_reorder("REORDER", 4, 8, idempotency_key="reorder-typed-1")
    assert again == setting
    with pytest.raises(IdempotencyConflict):
        client.set_reorder("REORDER", 5, 8, idempotency_key="reorder-typed-1")
    assert client.reorder_settings("REORDER") == [setting]
    client.receive("REORDER", 1, idempotency_key="reorder-typed-marker")
    waited(  # the SKU's events are recorded in order: once this one is, so are the earlier
        lambda: client.ledger(sku="REORDER", types=["received"]).items,
        lambda items: len(items) == 2,
        "the marker receipt recorded",
    )
    recorded = client.ledger(sku="REORDER", types=["reorder_set"]).items
    assert [(e.type, e.idempotency_key) for e in recorded] == [("reorder_set", "reorder-typed-1")]
