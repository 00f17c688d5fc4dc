"""The blocking engine: drives the operations of ``earmark.engine.ops`` over redis-py."""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import Any, Self, TypeVar

import redis
import redis.cluster
import redis.exceptions

from earmark import limits
from earmark.engine import connect
from earmark.engine.bootstrap import StoreState, bootstrap
from earmark.engine.coalesce import Replication
from earmark.engine.config import EngineConfig
from earmark.engine.functions import fcall, missing
from earmark.engine.functions import run as run_function
from earmark.engine.operation import SyncDriver
from earmark.engine.ops import Operations
from earmark.engine.refusals import store_error
from earmark.engine.scripts import LuaScript, load_scripts, writes
from earmark.engine.steps import Batch, Call, Op
from earmark.errors import EngineClosed
from earmark.keys import Keys

T = TypeVar("T")


class Engine(SyncDriver, Operations):
    """Blocking access to the reservation engine.

    ``Engine.from_url("redis://...")`` or ``Engine.embedded()``, then ``start()`` (or use
    it as a context manager), which loads every Lua script so a broken one fails fast.
    Every operation is documented where it is written, in ``earmark.engine.ops``;
    ``AsyncEngine`` offers the same ones as coroutine functions.
    """

    def __init__(
        self,
        client: Any,
        config: EngineConfig | None = None,
        *,
        cluster: bool = False,
        bounded: bool | None = None,
    ) -> None:
        self.client = client
        self.config = config or EngineConfig()
        self.keys = Keys(self.config.prefix)
        self._scripts: dict[str, LuaScript] = {}
        self.replication = (
            Replication(self.config.min_replicas_ack, self.config.replica_ack_timeout_ms)
            if self.config.min_replicas_ack
            else None
        )
        self.state: StoreState | None = None
        self.cluster = cluster
        self.closed = False
        self.url: str | None = None  # set by from_url (other clients are built from it)
        # A cluster or Sentinel client fails (rather than waits) past its connection
        # limit; bound the operations in flight instead, so callers queue.
        self._slots: Any = (
            threading.BoundedSemaphore(limits.CONNECTIONS_MAX)
            if (cluster if bounded is None else bounded)
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
    ) -> Self:
        """A Redis at ``url``: ``redis://``, ``redis+sentinel://host:port,.../service``
        (the primary Sentinel names, followed across failovers) or, with
        ``cluster=True``, a Redis Cluster node (see ``earmark.engine.connect``).

        Callers beyond ``max_connections`` wait for a free connection (at most
        ``limits.CONNECTION_WAIT_S``) instead of failing."""
        client = connect.blocking_client(url, cluster=cluster, max_connections=max_connections)
        engine = cls(
            client, config, cluster=cluster, bounded=connect.needs_slots(url, cluster=cluster)
        )
        engine.url = url
        return engine

    @classmethod
    def embedded(cls, config: EngineConfig | None = None, server: Any = None) -> Self:
        """In-process fakeredis with Lua: no server needed (development, tests, small use).
        Engines given the same ``fakeredis.FakeServer`` share one store."""
        import fakeredis

        return cls(fakeredis.FakeRedis(server=server, decode_responses=True), config)

    def start(self, *, initialize: bool = True) -> Self:
        """Loads the scripts and reads the store's partitions and generation markers.

        ``initialize`` stamps missing markers (a new store). Pass False when a durable
        record says stock exists: a Redis without markers then stays fenced.
        """
        self._check_open()
        for name, script in load_scripts().items():
            # A replica refuses FUNCTION LOAD (it has its primary's libraries); reads
            # answer there and writes are refused READONLY, as before.
            if script.library:
                with contextlib.suppress(redis.exceptions.ReadOnlyError):
                    self.client.function_load(script.library, replace=True)
            self._scripts[name] = script
        self.state = self.run(bootstrap(self.keys, self.config, initialize=initialize))
        return self

    def close(self) -> None:
        """Closes the connections; every later call raises ``EngineClosed`` (a call on a
        closed client would reconnect silently and outlive its owner). Closing twice is a
        no-op."""
        if self.closed:
            return
        self.closed = True
        if self.cluster:
            # redis-py's RedisCluster.close() leaves the node pools' sockets open.
            for node in self.client.get_nodes():
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect()
        connect.close(self.client)

    def __enter__(self) -> Self:
        return self.start() if self.state is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, op: Op[T]) -> T:
        """Drives one operation: executes each step it yields and sends back the reply."""
        self._check_open()
        with self._slots:
            try:
                return self._drive(op)
            except redis.exceptions.RedisError as error:
                raise (store_error(error) or error) from error

    def _check_open(self) -> None:
        if self.closed:
            raise EngineClosed("this engine was closed; create and start a new one")

    def _drive(self, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, Call):
                    reply = self._call(step)
                elif isinstance(step, Batch):
                    reply = self._batch(step)
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for command in step.commands:
                        pipe.execute_command(*command)
                    reply = pipe.execute()
                step = op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            op.close()

    def _call(self, call: Call) -> Any:
        script = self._scripts[call.script]
        if self.replication is not None and call.replicated and writes(call.script):
            return self._call_replicated(self.replication, script, call)
        return run_function(self.client, script, call)

    def _call_replicated(self, replication: Replication, script: LuaScript, call: Call) -> Any:
        """The script and one WAIT on one connection (WAIT counts the replicas that have
        its own connection's writes); on a cluster, on the master owning the slot."""
        client = (
            self.client.get_node_from_key(call.keys[0]).redis_connection
            if self.cluster
            else self.client
        )
        for _ in range(2):  # a second round after loading a script the server forgot
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*fcall(script, call))
            pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)
            reply, acknowledged = pipe.execute(raise_on_error=False)
            if missing(reply):
                client.function_load(script.library, replace=True)
                continue
            for answer in (reply, acknowledged):
                if isinstance(answer, Exception):
                    raise answer
            refusal = replication.refusal(int(acknowledged))
            if refusal is not None:
                raise refusal
            return reply
        raise redis.exceptions.ResponseError(f"script {call.script} could not be loaded")

    def _batch(self, batch: Batch) -> list[Any]:
        """Script calls pipelined on one Redis; one by one on a cluster, where the calls of
        a batch may live on different nodes. A call whose function the server lost is
        loaded and retried on its own. With replicated writes one WAIT ends the
        pipeline."""
        if self.cluster:
            return [self._call(c) for c in batch.calls]
        pipe = self.client.pipeline(transaction=False)
        for c in batch.calls:
            pipe.execute_command(*fcall(self._scripts[c.script], c))
        replication = self.replication
        waits = replication is not None and any(
            c.replicated and writes(c.script) for c in batch.calls
        )
        if waits and replication is not None:
            pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)
        replies = pipe.execute(raise_on_error=False)
        refusal = None
        if waits and replication is not None:
            acknowledged = replies.pop()
            if isinstance(acknowledged, Exception):
                raise acknowledged
            refusal = replication.refusal(int(acknowledged))
        results = []
        for c, reply in zip(batch.calls, replies, strict=True):
            if missing(reply):
                reply = self._call(c)
            elif isinstance(reply, Exception):
                raise reply
            elif refusal is not None and c.replicated and writes(c.script):
                raise refusal
            results.append(reply)
        return results
