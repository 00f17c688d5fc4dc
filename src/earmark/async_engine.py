"""The asyncio engine: the same operations as ``Engine``, driven over redis.asyncio."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.commands.core import AsyncScript

from earmark import limits
from earmark.bootstrap import StoreState, bootstrap
from earmark.coalesce import CallCoalescer
from earmark.config import EngineConfig
from earmark.engine import DEFAULT_ACTOR, LineInput
from earmark.keys import Keys
from earmark.models import Reservation, StockLevel, SweepReport
from earmark.operations import Batch, Call, Op, Operations
from earmark.scripts import load_scripts

T = TypeVar("T")


class AsyncEngine:
    """Asyncio access to the reservation engine; see ``Engine`` for each operation."""

    def __init__(
        self,
        client: Any,
        config: EngineConfig | None = None,
        *,
        cluster: bool = False,
        coalesce: bool = True,
    ) -> None:
        self.client = client
        self.config = config or EngineConfig()
        self.keys = Keys(self.config.prefix)
        self._scripts: dict[str, AsyncScript] = {}
        self._ops: Operations | None = None
        self.state: StoreState | None = None
        self.cluster = cluster
        # A cluster client fails (rather than waits) past its per-node connection limit;
        # bound the operations in flight instead, so callers queue.
        self._slots: Any = (
            asyncio.Semaphore(limits.CONNECTIONS_MAX) if cluster else contextlib.nullcontext()
        )
        # Concurrent calls share pipelines on one Redis (a cluster routes each call itself).
        self._coalescer = CallCoalescer(client) if coalesce and not cluster else None

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
        return cls(client, config, cluster=cluster, coalesce=coalesce)

    @classmethod
    def embedded(cls, config: EngineConfig | None = None, server: Any = None) -> Self:
        import fakeredis

        return cls(fakeredis.FakeAsyncRedis(server=server, decode_responses=True), config)

    async def start(self, *, initialize: bool = True) -> Self:
        for name, script in load_scripts().items():
            registered = self.client.register_script(script.source)
            await self.client.script_load(script.source)
            self._scripts[name] = registered
        self.state = await self.run(bootstrap(self.keys, self.config, initialize=initialize))
        self._ops = Operations(self.keys, self.state.partitions, self.config)
        return self

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return await self.start() if self._ops is None else self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def ops(self) -> Operations:
        if self._ops is None:
            raise RuntimeError("call await AsyncEngine.start() first")
        return self._ops

    @property
    def partitions(self) -> int:
        return self.ops.partitions

    async def run(self, op: Op[T]) -> T:
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

    async def receive(
        self,
        sku: str,
        qty: int,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reference: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> StockLevel:
        return await self.run(
            self.ops.receive(
                sku, qty, location=location, reference=reference, actor=actor, idem=idempotency_key
            )
        )

    async def adjust(
        self,
        sku: str,
        delta: int,
        reason: str,
        *,
        location: str = limits.DEFAULT_LOCATION,
        force: bool = False,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> StockLevel:
        return await self.run(
            self.ops.adjust(
                sku,
                delta,
                reason=reason,
                location=location,
                force=force,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def reserve(
        self,
        lines: Iterable[LineInput],
        *,
        idempotency_key: str,
        ttl_seconds: float | None = None,
        channel: str = "",
        actor: str = DEFAULT_ACTOR,
    ) -> Reservation:
        return await self.run(
            self.ops.reserve(
                lines, ttl_seconds=ttl_seconds, channel=channel, actor=actor, idem=idempotency_key
            )
        )

    async def commit(
        self, reservation_id: str, *, actor: str = DEFAULT_ACTOR, idempotency_key: str | None = None
    ) -> Reservation:
        return await self.run(self.ops.commit(reservation_id, actor=actor, idem=idempotency_key))

    async def release(
        self, reservation_id: str, *, actor: str = DEFAULT_ACTOR, idempotency_key: str | None = None
    ) -> Reservation:
        return await self.run(self.ops.release(reservation_id, actor=actor, idem=idempotency_key))

    async def extend(
        self,
        reservation_id: str,
        ttl_seconds: float,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Reservation:
        return await self.run(
            self.ops.extend(
                reservation_id, ttl_seconds=ttl_seconds, actor=actor, idem=idempotency_key
            )
        )

    async def ship(
        self, reservation_id: str, *, actor: str = DEFAULT_ACTOR, idempotency_key: str | None = None
    ) -> Reservation:
        return await self.run(self.ops.ship(reservation_id, actor=actor, idem=idempotency_key))

    async def get_reservation(self, reservation_id: str) -> Reservation:
        return await self.run(self.ops.get_reservation(reservation_id))

    async def availability(self, skus: Iterable[str | tuple[str, str]]) -> list[StockLevel]:
        return await self.run(self.ops.availability(skus))

    async def stock(self, sku: str, location: str = limits.DEFAULT_LOCATION) -> StockLevel:
        return await self.run(self.ops.stock(sku, location))

    async def sweep(self) -> SweepReport:
        return await self.run(self.ops.sweep())
