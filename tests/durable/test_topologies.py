"""The durability promises that need real processes besides failover: API keys survive
a Redis loss, a stopped PostgreSQL is buffered up to a bound then refused, a crashed
server does not make the others unready, and replica acknowledgements retry exactly."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis

from earmark import (
    AsyncEngine,
    DurabilityBacklog,
    EngineConfig,
    ReplicationTimeout,
)
from earmark.api.app import create_app
from earmark.durable import service as durable_service
from earmark.durable.rebuild import rebuild, verify
from earmark.durable.service import DurableService
from earmark.keys import FLUSHER_GROUP, Keys
from earmark.settings import Settings
from earmark.store.ledger import open_ledger
from tests.support.api import BASE_URL, make_settings, problem_of
from tests.support.backends import fresh_prefix
from tests.support.durable import eventually
from tests.support.serve import Serve
from tests.support.servers import (
    HOST,
    PostgresServer,
    RedisServer,
    ServerUnavailable,
    TcpProxy,
    replica_in_sync,
    unavailable,
)

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]


@contextlib.asynccontextmanager
async def served(
    settings: Settings, engine: AsyncEngine, durable: DurableService
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ``engine`` and ``durable``, its lifespan run as uvicorn runs it."""
    await engine.start(initialize=await durable.prepare(engine))
    app = create_app(settings, engine, durable=durable)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


async def test_api_keys_survive_a_redis_loss_and_a_rebuild(
    redis_server: RedisServer, pg_url: str
) -> None:
    token, _ = await durable_service.create_api_key(pg_url, "shop", frozenset({"read", "stock"}))
    settings = make_settings(database_url=pg_url, api_key_cache_seconds=0)
    config = EngineConfig(prefix=fresh_prefix())
    bearer = {"Authorization": f"Bearer {token}"}
    engine = AsyncEngine.from_url(redis_server.url, config)
    async with served(settings, engine, DurableService(pg_url, flusher_in_process=True)) as api:
        keyed = {**bearer, "Idempotency-Key": "r1"}
        assert (
            await api.post("/v1/skus/A/receipts", json={"qty": 5}, headers=keyed)
        ).status_code == 200
        assert (await api.get("/v1/skus/A", headers=bearer)).status_code == 200
    await engine.close()
    # Redis loses everything (a restart without persistence).
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    ledger = open_ledger(pg_url)
    restored = AsyncEngine.from_url(redis_server.url, config)
    try:
        await restored.start(initialize=False)
        await rebuild(restored, ledger)
    finally:
        await restored.close()
        await ledger.close()
    engine = AsyncEngine.from_url(redis_server.url, config)
    async with served(settings, engine, DurableService(pg_url)) as api:
        level = await api.get("/v1/skus/A", headers=bearer)
        assert (level.status_code, level.json()["on_hand"]) == (200, 5)
        problem_of(await api.get("/v1/skus/A"), 401, "unauthorized")
        wrong = {"Authorization": "Bearer em_not-a-key"}
        problem_of(await api.get("/v1/skus/A", headers=wrong), 401, "unauthorized")
    await engine.close()


def test_an_embedded_server_requires_the_keys_the_cli_created(tmp_path: Path) -> None:
    """`earmark keys create` on the embedded store's SQLite file, then `earmark serve`
    with no Redis: the server requires that token (auth on), and accepts it."""
    database = f"sqlite:///{tmp_path}/earmark.db"
    token, _ = asyncio.run(durable_service.create_api_key(database, "till", frozenset({"read"})))
    server = Serve(tmp_path, {"EARMARK_DATABASE_URL": database})
    try:
        server.wait_ready()
        assert httpx.get(f"{server.url}/v1/skus/A").status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.url}/v1/skus/A", headers=bearer).status_code == 404
    finally:
        assert server.stopped_cleanly(), server.output()


@pytest.fixture
def own_postgres() -> PostgresServer:
    """A PostgreSQL of this test's own, to stop and start (the session one is shared)."""
    server = PostgresServer()
    try:
        server.start()
    except ServerUnavailable as error:
        server.close()
        unavailable(f"PostgreSQL: {error}")
    return server


async def test_a_stopped_database_is_buffered_up_to_the_bound_then_refused(
    redis_server: RedisServer, own_postgres: PostgresServer
) -> None:
    pg_url = own_postgres.create_database("backlog")
    bound = 120  # events waiting, one partition
    settings = make_settings(database_url=pg_url, durability_backlog_max=bound)
    config = EngineConfig(prefix=fresh_prefix(), partitions=1, durability_backlog_max=bound)
    engine = AsyncEngine.from_url(redis_server.url, config)
    durable = DurableService(pg_url, flusher_in_process=True, block_ms=10)
    held: list[str] = []
    try:
        async with served(settings, engine, durable) as api:
            await engine.receive("A", 1_000, idempotency_key="stock")
            for i in range(20):
                held.append((await engine.reserve([("A", 1)], idempotency_key=f"a{i}")).id)
            await eventually(lambda: flushed(engine), what="the flusher")
            own_postgres.stop()
            # The record is down: selling goes on, events wait in Redis, still ready.
            sold_while_down = 0
            refused = None
            for i in range(bound + 20):
                try:
                    held.append((await engine.reserve([("A", 1)], idempotency_key=f"b{i}")).id)
                    sold_while_down += 1
                except DurabilityBacklog as error:
                    refused = error
                    break
                if i == bound // 2:
                    ready = await api.get("/readyz")
                    assert ready.status_code == 200, ready.text
                    checks = ready.json()["checks"]
                    assert checks["database"]["ok"] is False and checks["backlog"]["ok"] is True
            assert refused is not None and 0 < sold_while_down <= bound
            sent = await api.post(
                "/v1/reservations",
                json={"lines": [{"sku": "A", "qty": 1}]},
                headers={"Idempotency-Key": "over"},
            )
            body = problem_of(sent, 503, "durability_backlog")
            assert sent.headers["Retry-After"]
            assert body["detail"]
            not_ready = problem_of(await api.get("/readyz"), 503, "not_ready")
            assert not_ready["checks"]["backlog"]["ok"] is False
            # Finishing existing holds still goes on (the bound only refuses new demand).
            committed = await engine.commit(held[0], idempotency_key="c0")
            assert committed.status == "committed"
            own_postgres.start()
            await eventually(lambda: flushed(engine), timeout_seconds=60, what="the catch-up")
            assert (await api.get("/readyz")).status_code == 200
            ledger = open_ledger(pg_url)
            try:
                report = await verify(engine, ledger)
                assert report.ok, report
                recorded = next(x for x in await ledger.stock_levels() if x.sku == "A")
                assert (recorded.reserved, recorded.committed) == (len(held) - 1, 1)
            finally:
                await ledger.close()
            print(
                f"\nPostgreSQL down: {sold_while_down} reservations buffered, then 503 "
                f"durability_backlog at {refused.details.get('waiting')} events waiting "
                f"(bound {bound}); nothing lost after it came back"
            )
    finally:
        await engine.close()
        own_postgres.close()


async def flushed(engine: AsyncEngine) -> bool:
    return (await engine.durable_lag()).events == 0


def test_a_server_killed_mid_batch_leaves_the_others_ready(
    redis_server: RedisServer, pg_url: str, tmp_path: Path
) -> None:
    """Two servers flush the same streams. One is SIGKILLed while it holds read but
    unrecorded entries (stopped with SIGSTOP until it does, then killed): the other
    takes them over after the 5 s claim window and stays ready throughout, with the
    readiness bound on lag at 8 s (with the former 30 s claim window it went unready)."""
    prefix = fresh_prefix()
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_DATABASE_URL": pg_url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_FLUSHER_LAG_SECONDS_MAX": "8",
    }
    scopes = frozenset({"reserve", "stock"})
    token, _ = asyncio.run(durable_service.create_api_key(pg_url, "w", scopes))
    bearer = {"Authorization": f"Bearer {token}"}
    doomed, survivor = Serve(tmp_path, env), Serve(tmp_path, env)
    stop = threading.Event()

    def write() -> None:
        with httpx.Client(timeout=5) as client:
            for i in itertools.count():
                if stop.is_set():
                    return
                client.post(
                    f"{survivor.url}/v1/reservations",
                    json={"lines": [{"sku": "A", "qty": 1}]},
                    headers={**bearer, "Idempotency-Key": f"w{i}"},
                )

    writer = threading.Thread(target=write)
    try:
        doomed.wait_ready()
        survivor.wait_ready()
        stocked = httpx.post(
            f"{survivor.url}/v1/skus/A/receipts",
            json={"qty": 1_000_000},
            headers={**bearer, "Idempotency-Key": "stock"},
        )
        assert stocked.status_code == 200
        writer.start()
        pending = kill_while_holding_entries(redis_server, prefix, doomed)
        statuses = []
        deadline = time.monotonic() + 12  # past the claim window and the 8 s lag bound
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                statuses.append(client.get(f"{survivor.url}/readyz").status_code)
                time.sleep(0.1)
        assert set(statuses) == {200}, statuses
        assert left_pending(redis_server, prefix, doomed.proc.pid) == 0  # taken over
        print(
            f"\nkilled with {pending} entries pending; the other server stayed ready "
            f"({len(statuses)} probes over 12 s) and took them over"
        )
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(10)
        doomed.stop()
        assert survivor.stopped_cleanly(), survivor.output()


def left_pending(redis_server: RedisServer, prefix: str, pid: int) -> int:
    """Entries still pending under the consumer of process ``pid``."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        key = Keys(prefix).events(0)
        consumers = client.xinfo_consumers(key, FLUSHER_GROUP)
        return sum(int(c["pending"]) for c in consumers if c["name"].endswith(f"-{pid}"))
    finally:
        client.close()


def kill_while_holding_entries(redis_server: RedisServer, prefix: str, doomed: Serve) -> int:
    """Freezes ``doomed`` (SIGSTOP) at random moments until its flusher holds read but
    unacknowledged entries, then SIGKILLs it: a crash mid-batch, every time."""
    pid = doomed.proc.pid
    for _ in range(2_000):
        os.kill(pid, signal.SIGSTOP)
        pending = left_pending(redis_server, prefix, pid)
        if pending:
            os.kill(pid, signal.SIGKILL)
            assert doomed.proc.wait(5) == -signal.SIGKILL
            return pending
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError("the doomed server never held pending entries")


async def test_a_write_not_replicated_in_time_is_retried_exactly(pg_url: str) -> None:
    """EARMARK_MIN_REPLICAS_ACK=1 with the replication link frozen: 503
    replication_timeout; once the link resumes, a retry with the same key returns the
    original result (one hold, not two)."""
    try:
        primary = RedisServer().start()
        proxy = TcpProxy(primary.port)
        replica = RedisServer(extra_args=["--replicaof", HOST, str(proxy.port)]).start()
        replica_in_sync(replica)
    except ServerUnavailable as error:
        unavailable(f"primary + replica: {error}")
    config = EngineConfig(prefix=fresh_prefix(), min_replicas_ack=1, replica_ack_timeout_ms=200)
    engine = AsyncEngine.from_url(primary.url, config)
    try:
        await engine.start()
        await engine.receive("A", 10, idempotency_key="stock")
        proxy.freeze()
        with pytest.raises(ReplicationTimeout):
            await engine.reserve([("A", 2)], idempotency_key="cart")
        proxy.resume()
        replica_in_sync(replica)
        again = await engine.reserve([("A", 2)], idempotency_key="cart")
        assert again.status == "held"
        level = await engine.stock("A")
        assert (level.reserved, level.available) == (2, 8)
    finally:
        await engine.close()
        replica.close()
        proxy.close()
        primary.close()
