"""The asyncio engine: the same operations as ``Engine``, driven over redis.asyncio."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import redis.asyncio
import redis.asyncio.cluster
import redis.exceptions

from earmark import limits
from earmark.engine import connect
from earmark.engine.bootstrap import StoreState, bootstrap
from earmark.engine.coalesce import CallCoalescer, Replication
from earmark.engine.config import EngineConfig
from earmark.engine.functions import fcall, missing, run_async
from earmark.engine.operation import AsyncDriver
from earmark.engine.ops import Operations
from earmark.engine.refusals import store_error
from earmark.engine.scripts import LuaScript, load_scripts, writes
from earmark.engine.steps import Batch, Call, Op
from earmark.errors import EarmarkError, EngineClosed, StoreNotReady
from earmark.keys import Keys

T = TypeVar("T")


class AsyncEngine(AsyncDriver, Operations):
    """Asyncio access to the reservation engine: the operations of ``Engine``, each a
    coroutine function (written once, in ``earmark.engine.ops``).

    Concurrent calls issued in one event-loop turn share a pipeline (``coalesce``), and
    concurrent reserves of one partition share one script call (``batch``; on a cluster
    each partition's batch goes to its node on its own)."""

    def __init__(
        self,
        client: Any,
        config: EngineConfig | None = None,
        *,
        cluster: bool = False,
        coalesce: bool = True,
        batch: bool = True,
        max_connections: int = limits.CONNECTIONS_MAX,
    ) -> None:
        self.client = client
        self.config = config or EngineConfig()
        self.keys = Keys(self.config.prefix)
        self._scripts: dict[str, LuaScript] = {}
        self._node_clients: dict[str, Any] = {}  # replicated writes on a cluster
        self.url: str | None = None  # set by from_url (other clients are built from it)
        # Checks the Redis primary against the durable record and vouches for it
        # (earmark.durable.service sets it): run when scripts refuse a primary as
        # 'unverified', as a promoted replica is after a failover.
        self.verifier: Callable[[], Awaitable[None]] | None = None
        self._verifying = asyncio.Lock()
        self._verifications = 0
        self.state: StoreState | None = None
        self.cluster = cluster
        self.closed = False
        self.replication = (
            Replication(self.config.min_replicas_ack, self.config.replica_ack_timeout_ms)
            if self.config.min_replicas_ack
            else None
        )
        # Concurrent calls share pipelines on one Redis; on a cluster each unit (a call,
        # or one partition's batch of reserves) goes to its node on its own.
        self._coalescer = (
            CallCoalescer(
                client,
                self._scripts,
                self.replication,
                batching=batch,
                sender=self._send_call if cluster else None,
            )
            if coalesce
            else None
        )
        # Without a pipeline every operation holds a connection. A cluster client fails
        # past its per-node limit, and redis-py's blocking pool lets newcomers overtake
        # waiters (some starve for its whole timeout): bound the operations in flight
        # with a FIFO semaphore instead, so callers queue fairly.
        self._slots: Any = (
            asyncio.Semaphore(max_connections)
            if self._coalescer is None or cluster
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
        batch: bool = True,
    ) -> Self:
        """A Redis at ``url`` (``redis://``, ``redis+sentinel://``, or a cluster node with
        ``cluster=True``; see ``Engine.from_url``)."""
        client = connect.asyncio_client(url, cluster=cluster, max_connections=max_connections)
        engine = cls(
            client,
            config,
            cluster=cluster,
            coalesce=coalesce,
            batch=batch,
            max_connections=max_connections,
        )
        engine.url = url
        return engine

    @classmethod
    def embedded(cls, config: EngineConfig | None = None, server: Any = None) -> Self:
        """In-process fakeredis with Lua (see ``Engine.embedded``)."""
        import fakeredis

        return cls(fakeredis.FakeAsyncRedis(server=server, decode_responses=True), config)

    async def start(self, *, initialize: bool = True) -> Self:
        """Loads the scripts and reads the store's partitions and generation markers
        (see ``Engine.start``)."""
        self._check_open()
        for name, script in load_scripts().items():
            # A replica refuses FUNCTION LOAD (see Engine.start).
            if script.library:
                with contextlib.suppress(redis.exceptions.ReadOnlyError):
                    await self.client.function_load(script.library, replace=True)
            self._scripts[name] = script
        self.state = await self.run(bootstrap(self.keys, self.config, initialize=initialize))
        return self

    async def close(self) -> None:
        """Closes the connections; every later call raises ``EngineClosed``. Closing twice
        is a no-op."""
        if self.closed:
            return
        self.closed = True
        for client in self._node_clients.values():
            await client.aclose()
        await connect.aclose(self.client)

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
        self._check_open()
        async with self._slots:
            try:
                return await self._drive(op)
            except redis.exceptions.RedisError as error:
                raise (store_error(error) or error) from error

    async def recover(self, error: EarmarkError) -> bool:
        """A primary not yet checked against the durable record (after a failover its
        replication id changed, and every script refuses it as 'unverified'): the
        ``verifier`` set by the durable record checks it, once for all callers, and the
        operation runs again. A Redis that lost writes stays refused (fenced)."""
        if not (isinstance(error, StoreNotReady) and error.unverified):
            return False
        verifier = self.verifier
        if verifier is None:
            return False
        seen = self._verifications
        async with self._verifying:
            if self._verifications != seen:
                return True  # another caller verified while this one waited
            try:
                await verifier()
            except redis.exceptions.RedisError as failure:
                raise (store_error(failure) or failure) from failure
            self._verifications += 1
        return True

    def _check_open(self) -> None:
        if self.closed:
            raise EngineClosed("this engine was closed; create and start a new one")

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
        if self._coalescer is not None:
            return await self._coalescer.call(call, writes=call.replicated and writes(call.script))
        return await self._send_call(call)

    async def _send_call(self, call: Call) -> Any:
        script = self._scripts[call.script]
        if self.replication is not None and call.replicated and writes(call.script):
            return await self._call_replicated(self.replication, script, call)
        return await run_async(self.client, script, call)

    async def _call_replicated(
        self, replication: Replication, script: LuaScript, call: Call
    ) -> Any:
        """The script and one WAIT in one pipeline: WAIT counts the replicas that have the
        writes of *its own connection*, so both must share one. On a cluster the pipeline
        goes to the master owning the call's slot (a plain client per node)."""
        client = self._node_client(call.keys[0]) if self.cluster else self.client
        for _ in range(2):  # a second round after loading a script the server forgot
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*fcall(script, call))
            pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)
            reply, acknowledged = await pipe.execute(raise_on_error=False)
            if missing(reply):
                await client.function_load(script.library, replace=True)
                continue
            for answer in (reply, acknowledged):
                if isinstance(answer, Exception):
                    raise answer
            refusal = replication.refusal(int(acknowledged))
            if refusal is not None:
                raise refusal
            return reply
        raise redis.exceptions.ResponseError(f"script {call.script} could not be loaded")

    def _node_client(self, key: str) -> Any:
        node = self.client.get_node_from_key(key)
        found = self._node_clients.get(node.name)
        if found is None:
            found = redis.asyncio.Redis(host=node.host, port=node.port, decode_responses=True)
            self._node_clients[node.name] = found
        return found

    async def _batch(self, batch: Batch) -> list[Any]:
        """One pipeline through the coalescer (it loads a function the server lost); one by one on a
        cluster or without coalescing."""
        if self._coalescer is None or self.cluster:
            return [await self._call(c) for c in batch.calls]
        return list(await asyncio.gather(*(self._call(c) for c in batch.calls)))
