"""The asyncio engine: the same operations as ``Engine``, driven over redis.asyncio."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.commands.core import AsyncScript

from earmark import limits
from earmark.engine.bootstrap import StoreState, bootstrap
from earmark.engine.coalesce import CallCoalescer
from earmark.engine.config import EngineConfig
from earmark.engine.operation import AsyncDriver
from earmark.engine.ops import Operations
from earmark.engine.scripts import load_scripts
from earmark.engine.steps import Batch, Call, Op
from earmark.keys import Keys

T = TypeVar("T")


class AsyncEngine(AsyncDriver, Operations):
    """Asyncio access to the reservation engine: the operations of ``Engine``, each a
    coroutine function (written once, in ``earmark.engine.ops``).

    Concurrent calls issued in one event-loop turn share a pipeline (``coalesce``)."""

    def __init__(
        self,
        client: Any,
        config: EngineConfig | None = None,
        *,
        cluster: bool = False,
        coalesce: bool = True,
        max_connections: int = limits.CONNECTIONS_MAX,
    ) -> None:
        self.client = client
        self.config = config or EngineConfig()
        self.keys = Keys(self.config.prefix)
        self._scripts: dict[str, AsyncScript] = {}
        self.state: StoreState | None = None
        self.cluster = cluster
        # Concurrent calls share pipelines on one Redis (a cluster routes each call itself).
        self._coalescer = CallCoalescer(client) if coalesce and not cluster else None
        # Without coalescing every operation holds a connection. A cluster client fails
        # past its per-node limit, and redis-py's blocking pool lets newcomers overtake
        # waiters (some starve for its whole timeout): bound the operations in flight
        # with a FIFO semaphore instead, so callers queue fairly.
        self._slots: Any = (
            asyncio.Semaphore(max_connections)
            if self._coalescer is None
            else contextlib.nullcontext()
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        config: EngineConfig | None = None,
        *,
        cluster: bool = False,
        max_connections: int = limits.CONNECTIONS_MAX,
        coalesce: bool = True,
    ) -> Self:
        if cluster:
            client: Any = redis.asyncio.cluster.RedisCluster.from_url(
                url, decode_responses=True, max_connections=max_connections
            )
        else:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url,
                decode_responses=True,
                max_connections=max_connections,
                timeout=limits.CONNECTION_WAIT_S,
            )
            client = redis.asyncio.Redis.from_pool(pool)
        return cls(
            client, config, cluster=cluster, coalesce=coalesce, max_connections=max_connections
        )

    @classmethod
    def embedded(cls, config: EngineConfig | None = None, server: Any = None) -> Self:
        """In-process fakeredis with Lua (see ``Engine.embedded``)."""
        import fakeredis

        return cls(fakeredis.FakeAsyncRedis(server=server, decode_responses=True), config)

    async def start(self, *, initialize: bool = True) -> Self:
        """Loads the scripts and reads the store's partitions and generation markers
        (see ``Engine.start``)."""
        for name, script in load_scripts().items():
            registered = self.client.register_script(script.source)
            await self.client.script_load(script.source)
            self._scripts[name] = registered
        self.state = await self.run(bootstrap(self.keys, self.config, initialize=initialize))
        return self

    async def close(self) -> None:
        """Closes the connections."""
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return await self.start() if self.state is None else self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def run(self, op: Op[T]) -> T:
        """Drives one operation: executes each step it yields and sends back the reply."""
        async with self._slots:
            return await self._drive(op)

    async def _drive(self, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, Call):
                    reply = await self._call(step)
                elif isinstance(step, Batch):
                    reply = await self._batch(step)
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for command in step.commands:
                        pipe.execute_command(*command)
                    reply = await pipe.execute()
                step = op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            op.close()

    async def _call(self, call: Call) -> Any:
        script = self._scripts[call.script]
        if self._coalescer is not None:
            return await self._coalescer.call(script, call.keys, call.args)
        return await script(keys=call.keys, args=call.args)

    async def _batch(self, batch: Batch) -> list[Any]:
        """One pipeline through the coalescer (it handles NOSCRIPT); one by one on a
        cluster or without coalescing."""
        if self._coalescer is None:
            return [await self._call(c) for c in batch.calls]
        return list(await asyncio.gather(*(self._call(c) for c in batch.calls)))
