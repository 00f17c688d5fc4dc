"""The ledger's own rules (event parsing, order-insensitive reservation folding, URLs) and
the same flusher code against SQLite: the embedded default, where Redis is fakeredis
and every process restart is a Redis loss that rebuild repairs."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
from pathlib import Path

import fakeredis
import pytest

from earmark import AsyncEngine, EngineConfig, StoreNotReady
from earmark.durable.flusher import Flusher
from earmark.durable.rebuild import rebuild, replay_check, start_engine, verify
from earmark.durable.service import DurableService
from earmark.store.ledger import (
    Event,
    Ledger,
    ReservationRecord,
    migrate,
    open_ledger,
)
from earmark.store.sqlite import SqliteLedger
from tests.support.backends import alevel_of, fresh_prefix
from tests.support.durable import ALL_MIGRATIONS, caught_up, eventually, raw_levels, recorded_levels

RID = "rsv_" + "0" * 24 + "_0-1"


def event(seq: int, kind: str, partition: int, sku: str, qty: int, **flags: str) -> Event:
    deltas = {
        "reserved": {"reserved": qty},
        "committed": {"reserved": -qty, "committed": qty},
        "shipped": {"committed": -qty, "on_hand": -qty},
    }[kind]
    return Event(
        partition=partition,
        stream_ms=1_000 + seq,
        stream_seq=0,
        type=kind,
        sku=sku,
        location="default",
        qty=qty,
        deltas=deltas,
        occurred_at_ms=1_000 + seq,
        reservation_id=RID,
        flags=flags,
    )


# -- rules -------------------------------------------------------------------------------


def test_a_reservation_folds_to_the_same_record_in_any_order() -> None:
    history = [
        event(1, "reserved", 0, "A", 2, expires_at="9000"),
        event(2, "reserved", 1, "B", 1, expires_at="9000"),
        event(3, "committed", 0, "A", 2),
        event(4, "committed", 1, "B", 1),
        event(5, "shipped", 0, "A", 2),
    ]
    expected = ReservationRecord(RID)
    for e in history:
        expected.apply(e)
    assert expected.status == "committed"  # one part shipped, one committed
    assert expected.parts == {"0": "shipped", "1": "committed"}
    rng = random.Random(7)
    for _ in range(20):
        shuffled = ReservationRecord(RID)
        for e in rng.sample(history, len(history)):
            shuffled.apply(e)
        assert shuffled == expected


def test_parts_that_disagree_combine_like_the_engine() -> None:
    record = ReservationRecord(RID)
    record.apply(event(1, "reserved", 0, "A", 2))
    record.apply(event(2, "reserved", 1, "B", 1))
    assert (record.status, record.open_parts) == ("held", 2)
    record.apply(event(3, "committed", 1, "B", 1))
    assert (record.status, record.open_parts) == ("committed", 1)
    record.lose_holds(5_000)
    assert record.parts == {"0": "expired", "1": "committed"}
    assert (record.status, record.expired_at_ms) == ("committed", 5_000)


def test_an_empty_delta_list_from_lua_is_no_change() -> None:
    parsed = Event.from_stream(
        2, "17-3", {"type": "extended", "sku": "A", "location": "x", "deltas": "[]", "at": "17"}
    )
    assert (parsed.key, parsed.deltas, parsed.event_id) == ((2, 17, 3), {}, "2/17-3")


def test_urls_choose_the_store() -> None:
    assert isinstance(open_ledger("sqlite:///relative.db"), SqliteLedger)
    assert SqliteLedger.from_url("sqlite:////abs/path.db").path == "/abs/path.db"
    assert SqliteLedger.from_url("sqlite:///relative.db").path == "relative.db"
    assert open_ledger("postgresql://u@h/db").dialect == "postgres"
    with pytest.raises(ValueError, match="unsupported"):
        open_ledger("mysql://u@h/db")


# -- SQLite ----------------------------------------------------------------------------


def embedded(server: fakeredis.FakeServer, prefix: str, partitions: int | None = 2) -> AsyncEngine:
    return AsyncEngine.embedded(EngineConfig(prefix=prefix, partitions=partitions), server=server)


async def test_migrating_sqlite_twice_applies_once_in_wal_mode(sqlite_url: str) -> None:
    assert await migrate(sqlite_url) == ALL_MIGRATIONS
    assert await migrate(sqlite_url) == []
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = db.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v in ALL_MIGRATIONS]


async def test_the_embedded_engine_flushes_into_sqlite(sqlite_ledger: Ledger) -> None:
    engine = embedded(fakeredis.FakeServer(), fresh_prefix())
    await start_engine(engine, sqlite_ledger)
    await engine.receive("A", 10)
    await engine.receive("D", 10, location="x")
    held = await engine.reserve([("A", 2), ("D", 3, "x")], idempotency_key="k", channel="pos")
    await engine.commit(held.id)
    await engine.ship(held.id)
    flusher = Flusher.for_engine(engine, sqlite_ledger, consumer="f1", batch_size_max=2)
    assert await flusher.drain() == 2 + 2 * 3
    assert await recorded_levels(sqlite_ledger) == await raw_levels(engine)
    recorded = await sqlite_ledger.reservation(held.id)
    assert recorded is not None
    assert (recorded.status, recorded.channel, len(recorded.lines)) == ("shipped", "pos", 2)
    assert (await replay_check(sqlite_ledger)).ok
    await flusher.close()
    await engine.close()


async def test_a_restarted_embedded_store_is_rebuilt_from_its_sqlite_file(
    sqlite_url: str,
) -> None:
    """The embedded default loses Redis at every restart: the file brings stock back."""
    prefix, ledger = fresh_prefix(), open_ledger(sqlite_url)
    await ledger.migrate()
    before = embedded(fakeredis.FakeServer(), prefix, partitions=2)
    await start_engine(before, ledger)
    await before.receive("A", 10)
    committed = await before.reserve([("A", 4)], idempotency_key="c")
    await before.commit(committed.id)
    await before.reserve([("A", 1)], idempotency_key="h")  # a hold: lost at restart
    await Flusher.for_engine(before, ledger, consumer="f1").drain()
    await before.close()
    await ledger.close()

    ledger = open_ledger(sqlite_url)  # a new process: same file, empty fakeredis
    after = embedded(fakeredis.FakeServer(), prefix, partitions=None)
    await start_engine(after, ledger)
    with pytest.raises(StoreNotReady):
        await after.receive("A", 1)
    report = await rebuild(after, ledger)
    assert (report.partitions, report.units_released) == (2, 1)
    level = await alevel_of(after, "A")
    assert (level.on_hand, level.reserved, level.committed) == (10, 0, 4)
    assert (await after.ship(committed.id)).status == "shipped"
    verified = await verify(after, ledger)
    assert verified.ok, verified.drift
    assert (await replay_check(ledger)).ok
    await after.close()
    await ledger.close()


async def test_two_flushers_on_one_sqlite_file_apply_every_event_once(sqlite_url: str) -> None:
    ledgers = [open_ledger(sqlite_url), open_ledger(sqlite_url)]  # as two processes would
    await ledgers[0].migrate()
    engine = embedded(fakeredis.FakeServer(), fresh_prefix())
    await engine.start()
    for sku in ("A", "D", "TEE"):
        await engine.receive(sku, 200)
    for i in range(60):
        held = await engine.reserve([("A", 1), ("D", 2)], idempotency_key=f"k{i}")
        await (engine.commit(held.id) if i % 2 else engine.release(held.id))
    flushers = [
        Flusher.for_engine(engine, ledger, consumer=f"f{n}", batch_size_max=5, claim_idle_ms=10)
        for n, ledger in enumerate(ledgers)
    ]
    await asyncio.gather(*(f.drain() for f in flushers))
    assert sum(f.stats.inserted for f in flushers) == 3 + 60 * 4
    assert await recorded_levels(ledgers[0]) == await raw_levels(engine)
    assert (await replay_check(ledgers[1])).ok
    for flusher, ledger in zip(flushers, ledgers, strict=True):
        await flusher.close()
        await ledger.close()
    await engine.close()


def test_a_sqlite_path_that_cannot_be_opened_fails_loudly(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/missing-dir/x.db")
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(ledger.migrate())


async def test_the_service_rebuilds_an_embedded_store_at_start_and_flushes_in_process(
    sqlite_url: str,
) -> None:
    prefix = fresh_prefix()
    service = DurableService(sqlite_url, rebuild_on_start=True, block_ms=5)
    engine = embedded(fakeredis.FakeServer(), prefix)
    await engine.start(initialize=await service.prepare(engine))  # an empty record: True
    await service.start(engine)
    await engine.receive("A", 5)
    committed = await engine.reserve([("A", 2)], idempotency_key="c")
    await engine.commit(committed.id)
    await eventually(lambda: caught_up(engine), what="the in-process flusher")
    await service.stop()
    await engine.close()

    restarted = DurableService(sqlite_url, rebuild_on_start=True)
    engine = embedded(fakeredis.FakeServer(), prefix, partitions=None)  # Redis lost
    initialize = await restarted.prepare(engine)
    assert initialize is False
    await engine.start(initialize=initialize)
    assert engine.state is not None
    assert engine.state.ready
    level = await alevel_of(engine, "A")
    assert (level.on_hand, level.committed) == (5, 2)
    await restarted.start(engine)
    lag_source = restarted.lag_source()
    assert lag_source is not None
    assert await lag_source() >= 0.0
    assert (await engine.ship(committed.id)).status == "shipped"
    await restarted.stop()  # drains on the way out
    assert (await engine.durable_lag()).events == 0
    await engine.close()


def test_every_restore_call_stays_in_its_partitions_slot() -> None:
    """Redis Cluster runs a script only if all its keys share a slot."""
    from redis.crc import key_slot

    from earmark.durable.rebuild import _Restore
    from earmark.keys import Keys, partition_of
    from earmark.models import StockLevel

    keys, partitions = Keys("em"), 4
    levels = [StockLevel(sku=f"S{i}", location="default", on_hand=1) for i in range(40)]
    for p in range(partitions):
        mine = [x for x in levels if partition_of(x.sku, partitions) == p]
        record = ReservationRecord(f"rsv_{'a' * 24}_{p}", parts={str(p): "committed"})
        restore = _Restore(keys, p, partitions, "g", "0-0", 1_000, mine, [(record, [])], ["r"])
        for call in restore.calls():
            assert call.script == "restore_stock"
            assert len({key_slot(k.encode()) for k in call.keys}) == 1


async def test_the_sqlite_record_answers_while_the_default_executor_is_busy(
    sqlite_url: str,
) -> None:
    """The embedded record runs on its own thread: with every thread of the event loop's
    default executor blocked (webhook DNS lookups that hang for seconds do this), the
    record still answers at once instead of queueing behind them."""
    loop = asyncio.get_running_loop()
    await migrate(sqlite_url)
    ledger = SqliteLedger.from_url(sqlite_url)
    blocked = threading.Event()
    workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size
    hogs = [loop.run_in_executor(None, blocked.wait, 30) for _ in range(workers + 2)]
    try:
        async with asyncio.timeout(5):
            assert await ledger.api_keys() == []
    finally:
        blocked.set()
        await asyncio.gather(*hogs)
        await ledger.close()
