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
from earmark.engine.bootstrap import StoreState, bootstrap
from earmark.engine.coalesce import CallCoalescer
from earmark.engine.config import EngineConfig
from earmark.engine.ops.lifecycle import Lifecycle
from earmark.engine.ops.operations import Batch, Call, Op, Operations
from earmark.engine.scripts import load_scripts
from earmark.engine.sync_engine import DEFAULT_ACTOR, LineInput
from earmark.keys import Keys
from earmark.models import (
    CountResult,
    PurchaseOrder,
    Reservation,
    ReturnReceipt,
    SkuStock,
    StockLevel,
    SweepReport,
    Transfer,
)

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
        max_connections: int = limits.CONNECTIONS_MAX,
    ) -> None:
        self.client = client
        self.config = config or EngineConfig()
        self.keys = Keys(self.config.prefix)
        self._scripts: dict[str, AsyncScript] = {}
        self._ops: Operations | None = None
        self._lifecycle: Lifecycle | None = None
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
        import fakeredis

        return cls(fakeredis.FakeAsyncRedis(server=server, decode_responses=True), config)

    async def start(self, *, initialize: bool = True) -> Self:
        for name, script in load_scripts().items():
            registered = self.client.register_script(script.source)
            await self.client.script_load(script.source)
            self._scripts[name] = registered
        self.state = await self.run(bootstrap(self.keys, self.config, initialize=initialize))
        self._ops = Operations(self.keys, self.state.partitions, self.config)
        self._lifecycle = Lifecycle(self.keys, self.state.partitions, self.config)
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

    # -- stock lifecycle (docs/lifecycle.md) -------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:
            raise RuntimeError("call await AsyncEngine.start() first")
        return self._lifecycle

    async def locations(self, sku: str) -> list[StockLevel]:
        return await self.run(self.lifecycle.locations(sku))

    async def sku_stock(self, sku: str) -> SkuStock:
        return await self.run(self.lifecycle.sku_stock(sku))

    async def transfer(
        self,
        sku: str,
        qty: int,
        from_location: str,
        to_location: str,
        *,
        reference: str = "",
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Transfer:
        return await self.run(
            self.lifecycle.transfer(
                sku,
                qty,
                from_location=from_location,
                to_location=to_location,
                reference=reference,
                reason=reason,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def receive_transfer(
        self,
        transfer_id: str,
        qty_received: int,
        *,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Transfer:
        return await self.run(
            self.lifecycle.receive_transfer(
                transfer_id, qty_received, reason=reason, actor=actor, idem=idempotency_key
            )
        )

    async def get_transfer(self, transfer_id: str) -> Transfer:
        return await self.run(self.lifecycle.get_transfer(transfer_id))

    async def receive_return(
        self,
        reservation_id: str,
        sku: str,
        qty: int,
        *,
        location: str | None = None,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> ReturnReceipt:
        return await self.run(
            self.lifecycle.receive_return(
                reservation_id,
                sku,
                qty,
                location=location,
                reason=reason,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def dispose_returned(
        self,
        sku: str,
        qty: int,
        disposition: str,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> StockLevel:
        return await self.run(
            self.lifecycle.dispose_returned(
                sku,
                qty,
                disposition=disposition,
                location=location,
                reason=reason,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def damage(
        self,
        sku: str,
        qty: int,
        reason: str,
        *,
        location: str = limits.DEFAULT_LOCATION,
        force: bool = False,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> StockLevel:
        return await self.run(
            self.lifecycle.damage(
                sku,
                qty,
                reason=reason,
                location=location,
                force=force,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def write_off(
        self,
        sku: str,
        qty: int,
        reason: str,
        *,
        source: str = "on_hand",
        location: str = limits.DEFAULT_LOCATION,
        force: bool = False,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> StockLevel:
        return await self.run(
            self.lifecycle.write_off(
                sku,
                qty,
                reason=reason,
                source=source,
                location=location,
                force=force,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def count(
        self,
        sku: str,
        counted: int,
        version: int,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reason: str = "cycle count",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> CountResult:
        return await self.run(
            self.lifecycle.count(
                sku,
                counted,
                version=version,
                location=location,
                reason=reason,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def create_purchase_order(
        self,
        lines: Iterable[LineInput],
        *,
        supplier: str,
        expected_date: str,
        idempotency_key: str,
        reference: str = "",
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
    ) -> PurchaseOrder:
        return await self.run(
            self.lifecycle.create_purchase_order(
                lines,
                supplier=supplier,
                expected_date=expected_date,
                reference=reference,
                reason=reason,
                actor=actor,
                idem=idempotency_key,
            )
        )

    async def receive_purchase_order(
        self,
        po_id: str,
        lines: Iterable[LineInput],
        *,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> PurchaseOrder:
        return await self.run(
            self.lifecycle.receive_purchase_order(
                po_id, lines, reason=reason, actor=actor, idem=idempotency_key
            )
        )

    async def close_purchase_order(
        self,
        po_id: str,
        *,
        cancel: bool = False,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> PurchaseOrder:
        return await self.run(
            self.lifecycle.close_purchase_order(
                po_id, cancel=cancel, reason=reason, actor=actor, idem=idempotency_key
            )
        )

    async def get_purchase_order(self, po_id: str) -> PurchaseOrder:
        return await self.run(self.lifecycle.get_purchase_order(po_id))
