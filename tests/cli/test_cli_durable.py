"""``earmark migrate | flush | rebuild | verify`` and the status lag section, against a
real redis-server and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import redis

from earmark import Engine, EngineConfig
from earmark import console as cli
from earmark.keys import Keys, partition_of
from earmark.settings import get_settings
from earmark.store.ledger import migrations
from tests.support.backends import fresh_prefix
from tests.support.servers import RedisServer, ServerUnavailable, _run_async, unavailable

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]

PARTITIONS = 2
FLUSH_TIMEOUT_SECONDS = 15.0


@dataclass
class Store:
    redis: RedisServer
    keys: Keys
    config: EngineConfig

    def engine(self) -> Engine:
        return Engine.from_url(self.redis.url, self.config)

    def stock(self, sku: str) -> dict[str, int]:
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            key = self.keys.stock(partition_of(sku, PARTITIONS), sku, "default")
            return {k: int(v) for k, v in client.hgetall(key).items()}
        finally:
            client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of its own, without persistence: the test restarts it empty."""
    server = RedisServer()
    try:
        server.start()
    except ServerUnavailable as error:
        server.close()
        unavailable(str(error))
    yield server
    server.close()


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, own_redis: RedisServer, pg_url: str) -> Iterator[Store]:
    prefix = fresh_prefix()
    for name in [n for n in os.environ if n.startswith("EARMARK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EARMARK_REDIS_URL", own_redis.url)
    monkeypatch.setenv("EARMARK_PREFIX", prefix)
    monkeypatch.setenv("EARMARK_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    yield Store(own_redis, Keys(prefix), EngineConfig(prefix=prefix, partitions=PARTITIONS))
    get_settings.cache_clear()


def earmark(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_flush_verify_and_rebuild_a_lost_redis(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = earmark(capsys, "migrate")
    every = ", ".join(str(m.version) for m in migrations("postgres"))
    assert (code, out.startswith(f"applied migrations {every} to postgresql://")) == (0, True), out
    assert earmark(capsys, "migrate")[1].endswith("is up to date\n")

    with store.engine() as engine:
        engine.receive("A", 10)
        engine.receive("B", 6)
        sold = engine.reserve([("A", 3)], idempotency_key="sold")
        engine.commit(sold.id)
        engine.reserve([("B", 2)], idempotency_key="held", ttl_seconds=600)

    code, out, _ = earmark(capsys, "status")
    assert code == 0
    assert "== Durable record ==" in out
    assert "flusher lag: 5 events waiting" in out
    assert "PARTITION  WAITING  OLDEST_SECONDS" in out  # one row per partition

    code, out, _ = earmark(capsys, "flush", "--once")
    assert (code, out.split()[:2]) == (0, ["flushed", "5"])
    assert "flusher lag: 0 events waiting, the oldest 0.000s old" in earmark(capsys, "status")[1]

    code, out, _ = earmark(capsys, "verify")
    assert code == 0 and "Redis agrees with postgresql://" in out, out
    code, out, _ = earmark(capsys, "verify", "--replay")
    assert code == 0 and out.startswith("replayed 5 events over 2 (sku, location)"), out

    # Drift: a bucket changed behind the engine's back (no event, so the record cannot know).
    client = redis.Redis.from_url(store.redis.url, decode_responses=True)
    try:
        client.hincrby(
            store.keys.stock(partition_of("A", PARTITIONS), "A", "default"), "on_hand", 5
        )
    finally:
        client.close()
    code, out, _ = earmark(capsys, "verify")
    assert code == 1, out
    assert "Redis DRIFTED from postgresql://" in out
    drift = [line.split() for line in out.splitlines() if line.startswith("A ")]
    assert drift == [["A", "default", "on_hand", "15", "10", "-5"]]  # RECORD-REDIS last

    code, _, err = earmark(capsys, "rebuild")  # Redis was not lost: refused
    assert code == 1
    assert "refused: Redis still has generation markers on partitions 0, 1" in err
    assert "--force" in err

    store.redis.kill()
    store.redis.restart()  # empty: no AOF, no RDB
    assert "generation markers: missing in partitions 0" in earmark(capsys, "status")[1]
    code, out, err = earmark(capsys, "rebuild")
    assert code == 0, err
    assert out.startswith("rebuilt Redis from postgresql://")
    assert "2 stock records and 1 committed reservation parts in 2 partitions" in out
    assert "2 held units released" in out
    assert store.stock("A")["on_hand"] == 10  # as recorded: the untracked +5 is gone
    assert (store.stock("B")["on_hand"], store.stock("B")["reserved"]) == (6, 0)

    code, out, _ = earmark(capsys, "verify")
    assert code == 0, out
    assert earmark(capsys, "verify", "--replay")[0] == 0

    # --force rebuilds a live Redis (markers present); selling goes on afterwards.
    code, out, err = earmark(capsys, "rebuild", "--force")
    assert code == 0, err
    with store.engine() as engine:
        engine.ship(sold.id)  # the committed reservation survived both rebuilds
    assert earmark(capsys, "flush", "--once")[0] == 0
    assert earmark(capsys, "verify")[0] == 0
    assert store.stock("A")["on_hand"] == 7


def test_flush_runs_until_sigterm(redis_server: RedisServer, pg_url: str) -> None:
    config = EngineConfig(prefix=fresh_prefix())
    with Engine.from_url(redis_server.url, config) as engine:
        engine.receive("A", 4)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    env = {
        **inherited,
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": config.prefix,
        "EARMARK_DATABASE_URL": pg_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "earmark", "flush"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
        while recorded_on_hand(pg_url) != 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "earmark flush recorded nothing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=FLUSH_TIMEOUT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "flushing until interrupted" in err
    assert out.startswith("flushed 1 events into postgresql://")


def recorded_on_hand(pg_url: str) -> int | None:
    async def read() -> int | None:
        conn = await asyncpg.connect(pg_url)
        try:
            exists = await conn.fetchval("SELECT to_regclass('stock_levels') IS NOT NULL")
            if not exists:
                return None
            value = await conn.fetchval("SELECT on_hand FROM stock_levels WHERE sku = 'A'")
            return None if value is None else int(value)
        finally:
            await conn.close()

    result: int | None = _run_async(read)
    return result
