"""The asyncio clients pack commands with hiredis (earmark.engine.packing): the same
bytes as redis-py's Python packer, the same error for a value Redis cannot take, on
every kind of client earmark builds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions

from earmark import AsyncEngine, EngineConfig
from earmark.engine import connect
from earmark.engine.packing import _pack_command, hiredis_packed
from tests.support.servers import RedisServer

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("FCALL", "earmark_reserve_1234", 2, "m:{p0}:meta", "m:{p0}:events", 900_000, "", "é"),
    ("HSET", b"key", b"field", 1.5, -3, 10**20),
    ("CLIENT SETNAME", "earmark"),  # a command name of two words
    (b"CONFIG GET", b"maxmemory"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[str(c[0]) for c in COMMANDS])
def test_hiredis_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    python = redis.asyncio.Connection()
    packed = hiredis_packed(redis.asyncio.Connection)()
    assert b"".join(packed.pack_command(*command)) == b"".join(python.pack_command(*command))
    assert b"".join(packed.pack_commands([command, command])) == b"".join(
        python.pack_commands([command, command])
    )


def test_a_value_redis_cannot_take_is_the_same_data_error() -> None:
    packed = hiredis_packed(redis.asyncio.Connection)()
    with pytest.raises(redis.exceptions.DataError):
        packed.pack_command("SET", "k", None)
    with pytest.raises(redis.exceptions.DataError):
        redis.asyncio.Connection().pack_command("SET", "k", None)


def test_one_class_per_class_and_never_twice() -> None:
    once = hiredis_packed(redis.asyncio.Connection)
    assert hiredis_packed(redis.asyncio.Connection) is once
    assert hiredis_packed(once) is once
    assert issubclass(once, redis.asyncio.Connection)


def _packs_with_hiredis(connection_class: type[Any]) -> bool:
    return getattr(connection_class, "pack_command", None) is _pack_command


def test_every_asyncio_client_packs_with_hiredis() -> None:
    plain = connect.asyncio_client("redis://127.0.0.1:1/0", cluster=False, max_connections=4)
    assert _packs_with_hiredis(plain.connection_pool.connection_class)
    tls = connect.asyncio_client("rediss://127.0.0.1:1/0", cluster=False, max_connections=4)
    tls_class = tls.connection_pool.connection_class
    assert _packs_with_hiredis(tls_class) and issubclass(tls_class, redis.asyncio.SSLConnection)
    sentinel = connect.asyncio_client(
        "redis+sentinel://127.0.0.1:1/primary", cluster=False, max_connections=4
    )
    managed = sentinel.connection_pool.connection_class
    assert _packs_with_hiredis(managed)
    assert issubclass(managed, redis.asyncio.sentinel.SentinelManagedConnection)
    cluster = connect.asyncio_client("redis://127.0.0.1:1/0", cluster=True, max_connections=4)
    nodes = cluster.nodes_manager
    assert _packs_with_hiredis(nodes.connection_kwargs["connection_class"])
    assert all(_packs_with_hiredis(n.connection_class) for n in nodes.startup_nodes.values())


async def test_an_engine_reserves_through_hiredis_packing(redis_server: RedisServer) -> None:
    """A batch of concurrent reserves (one call carrying every cart) on a real Redis."""
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix="packing"))
    await engine.start()
    assert _packs_with_hiredis(engine.client.connection_pool.connection_class)
    try:
        await engine.receive("P", 100, idempotency_key="r")
        held = await asyncio.gather(
            *(engine.reserve([("P", 1)], idempotency_key=f"k{i}") for i in range(50))
        )
        assert len({h.id for h in held}) == 50
        stock = await engine.stock("P")
        assert (stock.reserved, stock.available) == (50, 50)
    finally:
        await engine.close()
