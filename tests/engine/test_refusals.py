"""Redis's own refusals are typed 503s, never 500s; Sentinel URLs parse or say why not;
a fence refuses reads and writes alike."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis

from earmark import (
    AsyncEngine,
    Engine,
    EngineConfig,
    StoreFull,
    StoreNotReady,
    StoreReadOnly,
)
from earmark.api.app import create_app
from earmark.engine.connect import sentinel_url
from tests.support.api import BASE_URL, Api, make_settings, problem_of
from tests.support.backends import fresh_prefix
from tests.support.servers import HOST, RedisServer, ServerUnavailable, replica_in_sync, unavailable


@pytest.mark.redis_server
async def test_a_full_redis_answers_503_store_full_and_writes_nothing() -> None:
    try:
        server = RedisServer(extra_args=["--maxmemory-policy", "noeviction"]).start()
    except ServerUnavailable as error:
        unavailable(f"redis-server: {error}")
    config = EngineConfig(prefix=fresh_prefix())
    engine = AsyncEngine.from_url(server.url, config)
    filler = redis.Redis.from_url(server.url)
    try:
        await engine.start()
        await engine.receive("A", 5, idempotency_key="stock")
        for i in range(300):  # about 3 MB, then a limit well below it
            filler.set(f"filler:{i}", "x" * 10_000)
        filler.config_set("maxmemory", "1mb")
        before = await engine.stock("A")  # reads still answer
        with pytest.raises(StoreFull):
            await engine.reserve([("A", 1)], idempotency_key="cart")
        app = create_app(make_settings(), engine)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                sent = await client.post(
                    "/v1/reservations",
                    json={"lines": [{"sku": "A", "qty": 1}]},
                    headers={"Idempotency-Key": "http"},
                )
        problem_of(sent, 503, "store_full")
        assert int(sent.headers["Retry-After"]) > 0
        assert await engine.stock("A") == before
    finally:
        filler.close()
        await engine.close()
        server.close()


@pytest.mark.redis_server
def test_a_replica_answers_store_read_only(redis_server: RedisServer) -> None:
    try:
        replica = RedisServer(extra_args=["--replicaof", HOST, str(redis_server.port)]).start()
        replica_in_sync(replica)
    except ServerUnavailable as error:
        unavailable(f"replica: {error}")
    config = EngineConfig(prefix=fresh_prefix())
    try:
        with Engine.from_url(redis_server.url, config) as primary:
            primary.receive("A", 5, idempotency_key="stock")
        replica_in_sync(replica)
        demoted = Engine.from_url(replica.url, config).start(initialize=False)
        try:
            assert demoted.stock("A").on_hand == 5  # reads answer on a replica
            with pytest.raises(StoreReadOnly):
                demoted.reserve([("A", 1)], idempotency_key="cart")
        finally:
            demoted.close()
    finally:
        replica.close()


def test_a_fence_refuses_reads_and_writes(fake_engine: Engine) -> None:
    fake_engine.receive("A", 5, idempotency_key="stock")
    held = fake_engine.reserve([("A", 1)], idempotency_key="cart")
    assert fake_engine.fence("lost writes (test)") == fake_engine.partitions
    assert fake_engine.fence("again") == 0  # the first reason stays
    assert fake_engine.fences() == ["lost writes (test)"] * fake_engine.partitions
    for call in (
        lambda: fake_engine.stock("A"),
        lambda: fake_engine.get_reservation(held.id),
        lambda: fake_engine.locations("A"),
        lambda: fake_engine.commit(held.id),
        lambda: fake_engine.receive("A", 1, idempotency_key="more"),
    ):
        with pytest.raises(StoreNotReady, match="lost writes"):
            call()


async def test_readyz_reports_a_fence(api: Api) -> None:
    await api.engine.fence("lost writes (test)")
    body = problem_of(await api.anon.get("/readyz"), 503, "not_ready")
    assert body["checks"]["fence"] == {
        "ok": False,
        "detail": "lost writes (test)",
        "required": True,
    }


@pytest.mark.parametrize(
    ("url", "sentinels", "service", "db", "password"),
    [
        (
            "redis+sentinel://h1:26379,h2:26380/shop",
            [("h1", 26379), ("h2", 26380)],
            "shop",
            0,
            None,
        ),
        ("redis+sentinel://:s3cret@h1/shop/2", [("h1", 26379)], "shop", 2, "s3cret"),
        ("rediss+sentinel://h1:1/shop", [("h1", 1)], "shop", 0, None),
    ],
)
def test_sentinel_urls_parse(
    url: str, sentinels: list[tuple[str, int]], service: str, db: int, password: str | None
) -> None:
    found = sentinel_url(url)
    assert found is not None
    assert (list(found.sentinels), found.service, found.db, found.password) == (
        sentinels,
        service,
        db,
        password,
    )
    assert found.ssl == url.startswith("rediss")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1:26379",  # no service
        "redis+sentinel://h1:port/shop",
        "redis+sentinel://h1/shop/db/extra",
        "redis+sentinel://,/shop",
        "redis+sentinel://h1/shop/x",
    ],
)
def test_malformed_sentinel_urls_say_what_is_wrong(url: str) -> None:
    with pytest.raises(ValueError, match="redis\\+sentinel"):
        sentinel_url(url)


def test_other_urls_are_not_sentinel_urls() -> None:
    assert sentinel_url("redis://127.0.0.1:6379/0") is None


@pytest.mark.redis_server
async def test_a_primary_not_vouched_for_is_refused_until_the_verifier_vouches(
    redis_server: RedisServer,
) -> None:
    """After a failover the primary's replication id is not the one the record vouched
    for: scripts refuse it ('unverified') and the engine's verifier runs once, for all
    concurrent callers, before they run again."""
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    try:
        await engine.start()
        await engine.receive("A", 50, idempotency_key="stock")
        assert (await engine.vouch())[0]  # vouched for this server's replication id
        await engine.reserve([("A", 1)], idempotency_key="vouched")  # served
        await engine.client.hset(engine.keys.meta(0), "replid", "f" * 40)  # another primary's
        with pytest.raises(StoreNotReady, match="unverified") as refused:
            await engine.reserve([("A", 1)], idempotency_key="cart")
        assert refused.value.unverified
        with pytest.raises(StoreNotReady, match="unverified"):
            await engine.stock("A")  # reads are refused too
        calls = []

        async def verifier() -> None:
            calls.append(1)
            await engine.vouch()

        engine.verifier = verifier
        held = await asyncio.gather(
            *(engine.reserve([("A", 1)], idempotency_key=f"c{i}") for i in range(20))
        )
        assert len(held) == 20 and len(calls) == 1
        assert (await engine.stock("A")).reserved == 21
    finally:
        await engine.close()
