"""Redis clients for the URLs earmark accepts.

- ``redis://host:port/db`` (``rediss://`` with TLS): one Redis, through a blocking pool
  (callers beyond ``max_connections`` wait for a free connection).
- ``redis+sentinel://[user:password@]host:port,host:port/service_name[/db]``
  (``rediss+sentinel://`` with TLS): the primary Sentinel names for ``service_name``.
  redis-py's Sentinel pool asks the sentinels for the primary on every new connection and
  drops connections to a demoted one (READONLY), so a failover is followed without a
  restart; calls made during the switch fail with ``StoreUnavailable`` and are retried by
  the caller with the same idempotency key.
- With ``cluster=True`` the URL names one node of a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel

from earmark import limits
from earmark.engine.packing import hiredis_packed

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
SENTINEL_PORT_DEFAULT = 26379
SENTINELS_MAX = 16


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    ssl: bool

    def master_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"db": self.db, "decode_responses": True}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.ssl:
            kwargs["ssl"] = True
        return kwargs


def sentinel_url(url: str) -> SentinelUrl | None:
    """The parts of a ``redis+sentinel://`` URL; None for any other scheme. A malformed
    one raises ``ValueError`` naming what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES:
        return None
    split = urlsplit(f"sentinel://{rest}")
    credentials, _, hosts = split.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"{url!r}: a sentinel address is empty")
        if port and not port.isdigit():
            raise ValueError(f"{url!r}: {item!r} has no valid port")
        sentinels.append((host, int(port) if port else SENTINEL_PORT_DEFAULT))
    if not 1 <= len(sentinels) <= SENTINELS_MAX:
        raise ValueError(f"{url!r}: name 1 to {SENTINELS_MAX} sentinels")
    path = [part for part in split.path.split("/") if part]
    if not path or len(path) > 2:
        raise ValueError(f"{url!r}: the path must be /service_name or /service_name/db")
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"{url!r}: the database must be a number, not {db!r}")
    return SentinelUrl(
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=int(db),
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=SENTINEL_SCHEMES[scheme],
    )


def _function_slot(keyslot: Callable[[Any], int], args: tuple[Any, ...]) -> int | None:
    """The slot of ``FCALL function numkeys key...``: the first key's (a script's keys
    share one slot), or None to let redis-py decide (no keys)."""
    if len(args) > 3 and str(args[0]).upper() in ("FCALL", "FCALL_RO") and int(args[2]) > 0:
        return keyslot(args[3])
    return None


class Cluster(redis.cluster.RedisCluster):
    """redis-py's cluster client, routing FCALL by its first key as it routes EVALSHA
    (it would otherwise ask the server with COMMAND GETKEYS first: a round trip more)."""

    def determine_slot(self, *args: Any) -> int | None:
        slot = _function_slot(self.keyslot, args)
        return slot if slot is not None else super().determine_slot(*args)


class AsyncCluster(redis.asyncio.cluster.RedisCluster):
    """``Cluster`` for redis.asyncio, its connections packing with hiredis (every node it
    knows now and every node it learns of later)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        nodes = self.nodes_manager
        connection_class = nodes.connection_kwargs["connection_class"]
        nodes.connection_kwargs["connection_class"] = hiredis_packed(connection_class)
        for node in nodes.startup_nodes.values():
            node.connection_class = hiredis_packed(node.connection_class)

    async def _determine_slot(self, command: str, *args: Any) -> int:
        slot = _function_slot(self.keyslot, (command, *args))
        return slot if slot is not None else await super()._determine_slot(command, *args)


def blocking_client(url: str, *, cluster: bool, max_connections: int) -> Any:
    """A redis-py client for ``url`` (see the module's docstring)."""
    if cluster:
        return Cluster.from_url(url, decode_responses=True, max_connections=max_connections)
    found = sentinel_url(url)
    if found is not None:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(found.sentinels),
            socket_timeout=limits.CONNECTION_WAIT_S,
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            found.service, max_connections=max_connections, **found.master_kwargs()
        )
    pool = redis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        timeout=limits.CONNECTION_WAIT_S,
    )
    return redis.Redis.from_pool(pool)


def asyncio_client(url: str, *, cluster: bool, max_connections: int) -> Any:
    """A redis.asyncio client for ``url`` (see the module's docstring)."""
    if cluster:
        return AsyncCluster.from_url(url, decode_responses=True, max_connections=max_connections)
    found = sentinel_url(url)
    if found is not None:
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(found.sentinels),
            socket_timeout=limits.CONNECTION_WAIT_S,
        )
        client = sentinel.master_for(
            found.service, max_connections=max_connections, **found.master_kwargs()
        )
        pool = client.connection_pool
    else:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            timeout=limits.CONNECTION_WAIT_S,
        )
        client = redis.asyncio.Redis.from_pool(pool)
    pool.connection_class = hiredis_packed(pool.connection_class)
    return client


def needs_slots(url: str, *, cluster: bool) -> bool:
    """Whether the client fails (rather than waits) past its connection limit, so the
    engine must bound the operations in flight itself (a cluster, a Sentinel pool)."""
    return cluster or sentinel_url(url) is not None


async def aclose(client: Any) -> None:
    """Closes an asyncio client of ``asyncio_client``, and the connections its Sentinel
    pool keeps to the sentinels."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    await client.aclose()
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def close(client: Any) -> None:
    """Closes a blocking client of ``blocking_client`` (Sentinel connections included)."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    client.close()
    for sentinel in getattr(manager, "sentinels", ()):
        sentinel.close()
