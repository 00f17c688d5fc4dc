"""Self-tests for the throwaway-server helpers in tests/support/servers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
import redis
import redis.cluster

from tests.support.servers import (
    PostgresServer,
    RedisCluster,
    RedisServer,
    ServerUnavailable,
    free_cluster_port,
    free_port,
    unavailable,
)

SYSTEM_PORTS = {6379, 5432}


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
    except ServerUnavailable as e:
        server.close()
        unavailable(str(e))
    try:
        yield server
    finally:
        server.close()


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)


def test_free_ports_avoid_system_services() -> None:
    assert free_port() not in SYSTEM_PORTS
    port = free_cluster_port()
    assert port not in SYSTEM_PORTS
    assert port + 10000 <= 65535


@pytest.mark.redis_server
def test_redis_start_ping_set_get(fresh_redis: RedisServer) -> None:
    assert fresh_redis.port not in SYSTEM_PORTS
    assert fresh_redis.url == f"redis://127.0.0.1:{fresh_redis.port}/0"
    client = _client(fresh_redis)
    try:
        assert client.ping() is True
        client.set("sku:1", "42")
        assert client.get("sku:1") == "42"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()


@pytest.mark.redis_server
def test_redis_kill_and_restart_loses_data_without_persistence(
    fresh_redis: RedisServer,
) -> None:
    port = fresh_redis.port
    client = _client(fresh_redis)
    try:
        client.set("k", "v")
        fresh_redis.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        fresh_redis.restart()
        assert fresh_redis.port == port
        assert client.ping() is True
        assert client.get("k") is None
    finally:
        client.close()


@pytest.mark.redis_server
def test_redis_appendonly_survives_stop_and_restart() -> None:
    server = RedisServer(appendonly=True)
    try:
        server.start()
    except ServerUnavailable as e:
        server.close()
        unavailable(str(e))
    try:
        client = _client(server)
        try:
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert client.config_get("appendfsync")["appendfsync"] == "everysec"
            client.set("durable", "yes")
            server.stop()
            with pytest.raises(redis.ConnectionError):
                client.ping()
            server.restart()
            assert client.get("durable") == "yes"
        finally:
            client.close()
    finally:
        server.close()


@pytest.mark.cluster
def test_redis_cluster_ok_and_keys_in_different_slots() -> None:
    try:
        cluster = RedisCluster().start()
    except ServerUnavailable as e:
        unavailable(str(e))
    try:
        assert len(cluster.ports) == 3
        assert not SYSTEM_PORTS & set(cluster.ports)
        assert cluster.url == f"redis://127.0.0.1:{cluster.ports[0]}"
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in cluster.startup_nodes]
        rc = redis.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True)
        try:
            assert rc.cluster_info()["cluster_state"] == "ok"
            # find keys that land on all three masters
            keys_by_node: dict[str, str] = {}
            for i in range(1000):
                key = f"sku:{i}"
                keys_by_node.setdefault(rc.get_node_from_key(key).name, key)
                if len(keys_by_node) == 3:
                    break
            assert len(keys_by_node) == 3
            keys = list(keys_by_node.values())
            assert len({rc.keyslot(k) for k in keys}) == 3
            for key in keys:
                rc.set(key, f"value-of-{key}")
            for key in keys:
                assert rc.get(key) == f"value-of-{key}"
        finally:
            rc.close()
    finally:
        cluster.close()
    for port in cluster.startup_nodes:
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host=port[0], port=port[1], socket_connect_timeout=1).ping()


async def _fetch(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


@pytest.mark.postgres
def test_postgres_create_database_kill_and_recover() -> None:
    server = PostgresServer()
    try:
        server.start()
    except ServerUnavailable as e:
        server.close()
        unavailable(str(e))
    try:
        assert server.port not in SYSTEM_PORTS
        assert server.dsn == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        dsn = server.create_database("earmark_test")
        assert dsn == f"postgresql://postgres@127.0.0.1:{server.port}/earmark_test"
        assert server.create_database("earmark_test") == dsn  # idempotent
        assert asyncio.run(_fetch(dsn, "select 1")) == 1

        async def create_table() -> None:
            conn = await asyncpg.connect(dsn, timeout=5)
            try:
                # synchronous_commit=off (server default here) may lose the last ~0.6s of
                # commits on kill(); make this one durable before crashing the server.
                await conn.execute("set synchronous_commit = on")
                await conn.execute("create table stock (sku text primary key, qty int)")
                await conn.execute("insert into stock values ('a', 7)")
            finally:
                await conn.close()

        asyncio.run(create_table())

        server.kill()
        with pytest.raises((OSError, asyncpg.PostgresError, TimeoutError)):
            asyncio.run(_fetch(dsn, "select 1"))

        server.start()  # same port + data dir; crash recovery
        assert asyncio.run(_fetch(dsn, "select 1")) == 1
        assert asyncio.run(_fetch(dsn, "select qty from stock where sku = 'a'")) == 7
        server.stop()
        with pytest.raises((OSError, asyncpg.PostgresError, TimeoutError)):
            asyncio.run(_fetch(dsn, "select 1"))
    finally:
        server.close()
