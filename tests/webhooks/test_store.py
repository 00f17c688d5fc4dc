"""The webhook tables on both stores (``[sqlite]`` and ``[postgres]``): the ledger as the
outbox (no row skipped, none planned twice), leases, coalescing, endpoints, migration."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from earmark.store.ledger import Ledger, migrations, open_ledger
from earmark.store.sqlite import statements
from earmark.store.webhooks import AttemptResult, EndpointChanges, webhook_store
from earmark.webhooks import endpoints
from earmark.webhooks.config import WebhookConfig
from earmark.webhooks.planning import plan
from tests.support.durable import recorded_levels
from tests.support.webhooks import FakeClock, Writer, short_config

CONFIG = short_config()


async def endpoint_for(ledger: Ledger, *events: str, url: str = "http://127.0.0.1:9/hook") -> Any:
    return await endpoints.create(webhook_store(ledger), CONFIG, url, events or ("*",))


async def mirror(ledger: Ledger) -> dict[tuple[str, str], dict[str, int]]:
    store: Any = webhook_store(ledger)
    if ledger.dialect == "postgres":
        async with store.ledger.connection() as conn:
            rows = await conn.fetch("SELECT * FROM webhook_stock")
    else:
        rows = await store._read(lambda db: db.execute("SELECT * FROM webhook_stock").fetchall())
    buckets = ("on_hand", "reserved", "committed", "in_transit", "returned", "damaged",
               "written_off", "inbound")  # fmt: skip
    return {(r["sku"], r["location"]): {b: int(r[b]) for b in buckets} for r in rows}


def url_of(ledger: Ledger, tmp: Path) -> str:
    if ledger.dialect == "postgres":
        return str(ledger.url)  # type: ignore[attr-defined]
    return f"sqlite:///{ledger.path}"  # type: ignore[attr-defined]


async def test_no_recorded_event_is_skipped_while_writers_commit_concurrently(
    record: Ledger, tmp_path: Path
) -> None:
    """Four writers on their own connections commit batches of different partitions in
    any order while a dispatcher runs: every event becomes its message, once."""
    await endpoint_for(record, "adjustment.*")
    url = url_of(record, tmp_path)
    writers = [open_ledger(url) for _ in range(4)]
    store = webhook_store(record)
    done = asyncio.Event()

    async def write(n: int, ledger: Ledger) -> None:
        w = Writer(ledger, partition=n)
        for _ in range(25):
            await w.write(*(w.event("received", f"S{n}") for _ in range(4)))
            await asyncio.sleep(0)

    async def dispatch() -> None:
        while not done.is_set():
            await store.dispatch(7, plan, 0, coalesce=True)
            await asyncio.sleep(0)

    dispatcher = asyncio.create_task(dispatch())
    try:
        await asyncio.gather(*(write(n, w) for n, w in enumerate(writers)))
    finally:
        done.set()
        await dispatcher
        for w in writers:
            await w.close()
    while (await store.dispatch(50, plan, 0, coalesce=True)).events:
        pass
    messages = await store.messages()
    assert len(messages) == 4 * 25 * 4
    assert len({m.event_id for m in messages}) == 400
    assert await mirror(record) == await recorded_levels(record)


async def test_two_dispatchers_plan_each_row_once(record: Ledger, tmp_path: Path) -> None:
    await endpoint_for(record, "stock.changed", "adjustment.*")
    writer = Writer(record)
    for _ in range(10):
        await writer.receipts(20, sku="B")
    second = open_ledger(url_of(record, tmp_path))
    stores = [webhook_store(record), webhook_store(second)]

    async def drain(n: int) -> int:
        total = 0
        while done := (await stores[n].dispatch(9, plan, 0, coalesce=False)).events:
            total += done
        return total

    try:
        counts = await asyncio.gather(drain(0), drain(1))
    finally:
        await second.close()
    assert sum(counts) == 200
    messages = await stores[0].messages()
    assert len(messages) == 400 and len({m.id for m in messages}) == 400
    assert await mirror(record) == await recorded_levels(record)


async def test_an_endpoint_hears_only_of_events_recorded_after_it(record: Ledger) -> None:
    writer = Writer(record)
    await writer.receipts(3)
    store = webhook_store(record)
    await store.dispatch(100, plan, 0, coalesce=True)  # the dispatcher had caught up
    await writer.receipts(2)  # recorded, not dispatched yet
    ep = await endpoint_for(record, "adjustment.received")
    await writer.receipts(1)
    await store.dispatch(100, plan, 0, coalesce=True)
    assert [m.record_seq for m in await store.messages()] == [6]
    assert ep.start_seq == 5


async def test_leases_keep_two_workers_apart_until_they_run_out(record: Ledger) -> None:
    clock = FakeClock()
    ep = await endpoint_for(record, "adjustment.*")
    await Writer(record).receipts(6)
    store = webhook_store(record)
    await store.dispatch(100, plan, clock(), coalesce=True)
    claim = {"per_endpoint": 4, "exclude": (), "lease_ms": 2_000}
    first = await store.claim(clock(), 10, owner="a", **claim)
    assert len(first) == 4  # per endpoint
    second = await store.claim(clock(), 10, owner="b", **claim)
    assert len(second) == 2 and not {c.id for c in first} & {c.id for c in second}
    assert await store.claim(clock(), 10, owner="b", **claim) == []
    clock.advance(2.5)  # a died: its leases run out (and b's)
    again = await store.claim(clock(), 10, owner="b", **{**claim, "per_endpoint": 10})
    assert {c.id for c in again} == {c.id for c in first} | {c.id for c in second}
    assert all(c.url == ep.url and c.secrets == (ep.secret,) for c in again)
    await store.release([c.id for c in again], "b")
    excluded = await store.claim(clock(), 10, owner="c", **{**claim, "exclude": (ep.id,)})
    assert excluded == []


async def test_an_endpoint_deleted_while_its_messages_are_in_flight(record: Ledger) -> None:
    clock = FakeClock()
    ep = await endpoint_for(record, "adjustment.*")
    await Writer(record).receipts(2)
    store = webhook_store(record)
    await store.dispatch(100, plan, clock(), coalesce=True)
    claim = {"per_endpoint": 4, "exclude": (), "lease_ms": 2_000, "owner": "a"}
    in_flight = await store.claim(clock(), 10, **claim)
    await endpoints.delete(store, ep.id)
    results = [
        AttemptResult(
            message_id=c.id, endpoint_id=c.endpoint_id, type=c.type, record_seq=c.record_seq,
            attempt=1, attempted_at_ms=clock(), latency_ms=3, outcome="delivered",
            effect="success", status_code=200,
        )
        for c in in_flight
    ]  # fmt: skip
    await store.finish(results, "a", clock(), disable_after_ms=1, coalesce=True)
    assert await store.attempts(ep.id, None, 10) == []
    assert await store.messages() == []


async def test_paused_and_disabled_endpoints_are_not_claimed(record: Ledger) -> None:
    clock = FakeClock()
    ep = await endpoint_for(record, "adjustment.*")
    await Writer(record).receipts(1)
    store = webhook_store(record)
    await store.dispatch(100, plan, clock(), coalesce=True)
    await store.update_endpoint(ep.id, EndpointChanges(disabled=True), clock())
    claim = {"per_endpoint": 4, "exclude": (), "lease_ms": 2_000, "owner": "a"}
    assert await store.claim(clock(), 10, **claim) == []
    row = await store.update_endpoint(ep.id, EndpointChanges(disabled=False), clock())
    assert row is not None and not row.disabled and row.disabled_reason is None
    assert len(await store.claim(clock(), 10, **claim)) == 1


async def test_pending_stock_changed_collapse_to_the_newest_but_not_one_in_flight(
    record: Ledger,
) -> None:
    clock = FakeClock()
    await endpoint_for(record, "stock.changed")
    writer = Writer(record)
    store = webhook_store(record)
    claim = {"per_endpoint": 4, "exclude": (), "lease_ms": 2_000, "owner": "a"}
    await writer.receipts(1)
    await store.dispatch(100, plan, clock(), coalesce=True)
    in_flight = await store.claim(clock(), 10, **claim)
    for _ in range(3):  # three batches while the first is being sent
        await writer.receipts(2)
        report = await store.dispatch(100, plan, clock(), coalesce=True)
        assert report.messages == 1
    messages = {m.id: m for m in await store.messages()}
    statuses = sorted((m.record_seq, m.status) for m in messages.values())
    assert statuses == [(1, "pending"), (3, "coalesced"), (5, "coalesced"), (7, "pending")]
    by_seq = {m.record_seq: m for m in messages.values()}
    assert by_seq[3].superseded_by == by_seq[5].id  # each newer state replaced the last
    assert by_seq[5].superseded_by == by_seq[7].id
    assert in_flight[0].record_seq == 1


async def test_endpoints_rotate_and_delete_with_their_rows(record: Ledger) -> None:
    clock = FakeClock()
    store = webhook_store(record)
    ep = await endpoint_for(record)
    await Writer(record).receipts(2)
    await store.dispatch(100, plan, clock(), coalesce=True)
    rotated = await endpoints.rotate_secret(store, CONFIG, ep.id, 60, clock=clock)
    assert rotated.secret != ep.secret and rotated.previous_secret == ep.secret
    assert rotated.signing_secrets(clock()) == (rotated.secret, ep.secret)
    assert rotated.signing_secrets(clock() + 61_000) == (rotated.secret,)
    await endpoints.delete(store, ep.id)
    assert await store.endpoint(ep.id) is None
    assert await store.messages() == []


async def _apply_first_migration_only(ledger: Ledger) -> None:
    first = migrations(ledger.dialect)[0]
    if ledger.dialect == "postgres":
        conn = await asyncpg.connect(ledger.url)  # type: ignore[attr-defined]
        try:
            await conn.execute(
                "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(first.sql)
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (1, $1)", first.name
            )
            for i, (p, sku) in enumerate([(1, "B"), (0, "A"), (0, "A")]):
                await conn.execute(
                    "INSERT INTO ledger (partition, stream_ms, stream_seq, type, sku, location,"
                    " qty, deltas, occurred_at) VALUES ($1, $2, 0, 'received', $3, 'default', 1,"
                    " '{\"on_hand\": 1}', now())",
                    p, 100 + i, sku,
                )  # fmt: skip
            await conn.execute(
                "INSERT INTO stock_levels (sku, location, on_hand, version) VALUES"
                " ('A', 'default', 2, 2), ('B', 'default', 1, 1)"
            )
        finally:
            await conn.close()
        return
    db = sqlite3.connect(ledger.path)  # type: ignore[attr-defined]
    with db:
        db.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at_ms INTEGER NOT NULL)"
        )
        for statement in statements(first.sql):
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (1, ?, 0)", (first.name,))
        for i, (p, sku) in enumerate([(1, "B"), (0, "A"), (0, "A")]):
            db.execute(
                "INSERT INTO ledger (partition, stream_ms, stream_seq, type, sku, location, qty,"
                " deltas, occurred_at_ms, flushed_at_ms) VALUES (?, ?, 0, 'received', ?,"
                " 'default', 1, '{\"on_hand\": 1}', 0, 0)",
                (p, 100 + i, sku),
            )
        db.execute(
            "INSERT INTO stock_levels (sku, location, on_hand, version, updated_at_ms) VALUES"
            " ('A', 'default', 2, 2, 0), ('B', 'default', 1, 1, 0)"
        )
    db.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_migrating_a_record_that_already_holds_events(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """record_seq is numbered in event-id order, the dispatcher starts after the newest
    row (webhooks announce what comes next) with the stock as recorded."""
    if dialect == "postgres":
        request.applymarker(pytest.mark.postgres)
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path}/old.db"
    ledger = open_ledger(url)
    try:
        await _apply_first_migration_only(ledger)
        assert await ledger.migrate() == [m.version for m in migrations(dialect)][1:]
        store = webhook_store(ledger)
        assert await store.newest_record_seq() == 3
        events = await ledger.events(None, 10)
        assert [e.key for e in events] == [(0, 101, 0), (0, 102, 0), (1, 100, 0)]
        assert await mirror(ledger) == await recorded_levels(ledger)
        ep = await endpoint_for(ledger, "stock.changed")
        await Writer(ledger).receipts(1)
        assert (await store.dispatch(10, plan, 0, coalesce=True)).events == 1
        (message,) = await store.messages(ep.id)
        assert '"seq":3' in message.payload and '"on_hand":3' in message.payload
    finally:
        await ledger.close()


def test_the_config_refuses_a_lease_shorter_than_the_timeout() -> None:
    with pytest.raises(ValueError, match="lease"):
        WebhookConfig(timeout_seconds=15, lease_seconds=10)
