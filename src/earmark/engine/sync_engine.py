"""The blocking engine: drives the operations of ``earmark.engine.ops.operations`` over redis-py."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import redis
import redis.cluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from earmark import limits
from earmark.engine.bootstrap import StoreState, bootstrap
from earmark.engine.config import EngineConfig
from earmark.engine.ops.lifecycle import Lifecycle
from earmark.engine.ops.operations import Batch, Call, Op, Operations
from earmark.engine.scripts import load_scripts
from earmark.keys import Keys
from earmark.models import (
    CountResult,
    Line,
    PurchaseOrder,
    Reservation,
    ReturnReceipt,
    SkuStock,
    StockLevel,
    SweepReport,
    Transfer,
)

T = TypeVar("T")
LineInput = Line | tuple[str, int] | tuple[str, int, str]
DEFAULT_ACTOR = "library"


class Engine:
    """Blocking access to the reservation engine.

    ``Engine.from_url("redis://...")`` or ``Engine.embedded()``, then ``start()`` (or use
    it as a context manager), which loads every Lua script so a broken one fails fast.
    """

    def __init__(
        self, client: Any, config: EngineConfig | None = None, *, cluster: bool = False
    ) -> None:
        self.client = client
        self.config = config or EngineConfig()
        self.keys = Keys(self.config.prefix)
        self._scripts: dict[str, Script] = {}
        self._ops: Operations | None = None
        self._lifecycle: Lifecycle | None = None
        self.state: StoreState | None = None
        self.cluster = cluster
        # A cluster client fails (rather than waits) past its per-node connection limit;
        # bound the operations in flight instead, so callers queue.
        self._slots: Any = (
            threading.BoundedSemaphore(limits.CONNECTIONS_MAX)
            if cluster
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
        """A Redis (or, with ``cluster=True``, a Redis Cluster) at ``url``.

        Callers beyond ``max_connections`` wait for a free connection (at most
        ``limits.CONNECTION_WAIT_S``) instead of failing."""
        if cluster:
            client: Any = redis.cluster.RedisCluster.from_url(
                url, decode_responses=True, max_connections=max_connections
            )
        else:
            pool = redis.BlockingConnectionPool.from_url(
                url,
                decode_responses=True,
                max_connections=max_connections,
                timeout=limits.CONNECTION_WAIT_S,
            )
            client = redis.Redis.from_pool(pool)
        return cls(client, config, cluster=cluster)

    @classmethod
    def embedded(cls, config: EngineConfig | None = None, server: Any = None) -> Self:
        """In-process fakeredis with Lua: no server needed (development, tests, small use).
        Engines given the same ``fakeredis.FakeServer`` share one store."""
        import fakeredis

        return cls(fakeredis.FakeRedis(server=server, decode_responses=True), config)

    # -- lifecycle ---------------------------------------------------------------

    def start(self, *, initialize: bool = True) -> Self:
        """Loads the scripts and reads the store's partitions and generation markers.

        ``initialize`` stamps missing markers (a new store). Pass False when a durable
        record says stock exists: a Redis without markers then stays fenced.
        """
        for name, script in load_scripts().items():
            registered = self.client.register_script(script.source)
            self.client.script_load(script.source)
            self._scripts[name] = registered
        self.state = self.run(bootstrap(self.keys, self.config, initialize=initialize))
        self._ops = Operations(self.keys, self.state.partitions, self.config)
        self._lifecycle = Lifecycle(self.keys, self.state.partitions, self.config)
        return self

    def close(self) -> None:
        if self.cluster:
            # redis-py's RedisCluster.close() leaves the node pools' sockets open.
            for node in self.client.get_nodes():
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect()
        self.client.close()

    def __enter__(self) -> Self:
        return self.start() if self._ops is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def ops(self) -> Operations:
        if self._ops is None:
            raise RuntimeError("call Engine.start() first")
        return self._ops

    @property
    def partitions(self) -> int:
        return self.ops.partitions

    def run(self, op: Op[T]) -> T:
        """Drives one operation: executes each step it yields and sends back the reply."""
        with self._slots:
            return self._drive(op)

    def _drive(self, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, Call):
                    reply = self._scripts[step.script](keys=step.keys, args=step.args)
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

    def _batch(self, batch: Batch) -> list[Any]:
        """Script calls pipelined on one Redis; one by one on a cluster, where the calls of
        a batch may live on different nodes. A call the server answers NOSCRIPT is loaded
        and retried on its own (redis-py's script pipelining would ask SCRIPT EXISTS first
        on every batch: a round trip more)."""
        if self.cluster:
            return [self._scripts[c.script](keys=c.keys, args=c.args) for c in batch.calls]
        pipe = self.client.pipeline(transaction=False)
        for c in batch.calls:
            pipe.evalsha(self._scripts[c.script].sha, len(c.keys), *c.keys, *c.args)
        replies = []
        for c, reply in zip(batch.calls, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, NoScriptError):
                reply = self._scripts[c.script](keys=c.keys, args=c.args)
            elif isinstance(reply, Exception):
                raise reply
            replies.append(reply)
        return replies

    # -- operations ----------------------------------------------------------------

    def receive(
        self,
        sku: str,
        qty: int,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reference: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> StockLevel:
        """Units arrive: on_hand += qty."""
        return self.run(
            self.ops.receive(
                sku, qty, location=location, reference=reference, actor=actor, idem=idempotency_key
            )
        )

    def adjust(
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
        """A correction of on_hand. A decrease below available raises ``WouldOversell``
        unless ``force``; a forced one records the exposure on its event."""
        return self.run(
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

    def reserve(
        self,
        lines: Iterable[LineInput],
        *,
        idempotency_key: str,
        ttl_seconds: float | None = None,
        channel: str = "",
        actor: str = DEFAULT_ACTOR,
    ) -> Reservation:
        """Holds every line or none; raises ``InsufficientStock`` naming each short line."""
        return self.run(
            self.ops.reserve(
                lines, ttl_seconds=ttl_seconds, channel=channel, actor=actor, idem=idempotency_key
            )
        )

    def commit(
        self, reservation_id: str, *, actor: str = DEFAULT_ACTOR, idempotency_key: str | None = None
    ) -> Reservation:
        """Held -> committed while the hold is live; committing twice is a no-op."""
        return self.run(self.ops.commit(reservation_id, actor=actor, idem=idempotency_key))

    def release(
        self, reservation_id: str, *, actor: str = DEFAULT_ACTOR, idempotency_key: str | None = None
    ) -> Reservation:
        """Held -> released (units available again); releasing twice is a no-op."""
        return self.run(self.ops.release(reservation_id, actor=actor, idem=idempotency_key))

    def extend(
        self,
        reservation_id: str,
        ttl_seconds: float,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Reservation:
        """A live hold now expires ``ttl_seconds`` from the server's clock."""
        return self.run(
            self.ops.extend(
                reservation_id, ttl_seconds=ttl_seconds, actor=actor, idem=idempotency_key
            )
        )

    def ship(
        self, reservation_id: str, *, actor: str = DEFAULT_ACTOR, idempotency_key: str | None = None
    ) -> Reservation:
        """Committed -> shipped: the units leave on_hand."""
        return self.run(self.ops.ship(reservation_id, actor=actor, idem=idempotency_key))

    def get_reservation(self, reservation_id: str) -> Reservation:
        return self.run(self.ops.get_reservation(reservation_id))

    def availability(self, skus: Iterable[str | tuple[str, str]]) -> list[StockLevel]:
        """Every bucket of many SKUs (or (sku, location) pairs) in one round trip."""
        return self.run(self.ops.availability(skus))

    def stock(self, sku: str, location: str = limits.DEFAULT_LOCATION) -> StockLevel:
        """One (sku, location); raises ``SkuNotFound`` if it never had stock."""
        return self.run(self.ops.stock(sku, location))

    def sweep(self) -> SweepReport:
        """One sweeper pass: expire overdue holds, resolve stale multi-partition pins."""
        return self.run(self.ops.sweep())

    # -- stock lifecycle (docs/lifecycle.md) -------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:
            raise RuntimeError("call Engine.start() first")
        return self._lifecycle

    def locations(self, sku: str) -> list[StockLevel]:
        """Every location of ``sku``; raises ``SkuNotFound`` if it has none."""
        return self.run(self.lifecycle.locations(sku))

    def sku_stock(self, sku: str) -> SkuStock:
        """The SKU's buckets summed over its locations, with each location."""
        return self.run(self.lifecycle.sku_stock(sku))

    def transfer(
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
        """on_hand at ``from_location`` -> in_transit at ``to_location``; raises
        ``InsufficientStock`` when fewer units are available at the source."""
        return self.run(
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

    def receive_transfer(
        self,
        transfer_id: str,
        qty_received: int,
        *,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """The transfer arrives: in_transit -> on_hand at the destination; missing units
        are written off, surplus units land in on_hand (``transfer_discrepancy``)."""
        return self.run(
            self.lifecycle.receive_transfer(
                transfer_id, qty_received, reason=reason, actor=actor, idem=idempotency_key
            )
        )

    def get_transfer(self, transfer_id: str) -> Transfer:
        return self.run(self.lifecycle.get_transfer(transfer_id))

    def receive_return(
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
        """Units of a shipped reservation line come back into ``returned`` (quarantine)."""
        return self.run(
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

    def dispose_returned(
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
        """returned -> on_hand (``restock``), ``damaged`` or written_off (``write_off``)."""
        return self.run(
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

    def damage(
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
        """on_hand -> damaged; ``WouldOversell`` below available unless ``force``."""
        return self.run(
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

    def write_off(
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
        """``source`` (on_hand or damaged) -> written_off; from on_hand, ``WouldOversell``
        below available unless ``force``."""
        return self.run(
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

    def count(
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
        """A cycle count against the ``version`` the counter read (``StockLevel.version``);
        raises ``StaleCount`` when that version is too old to count against."""
        return self.run(
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

    def create_purchase_order(
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
        """inbound += qty per line (``expected_date`` as YYYY-MM-DD)."""
        return self.run(
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

    def receive_purchase_order(
        self,
        po_id: str,
        lines: Iterable[LineInput],
        *,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> PurchaseOrder:
        """A (partial) delivery: inbound -> on_hand; over-delivery lands in on_hand too."""
        return self.run(
            self.lifecycle.receive_purchase_order(
                po_id, lines, reason=reason, actor=actor, idem=idempotency_key
            )
        )

    def close_purchase_order(
        self,
        po_id: str,
        *,
        cancel: bool = False,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> PurchaseOrder:
        """No more units expected: inbound loses what is outstanding (closed or cancelled)."""
        return self.run(
            self.lifecycle.close_purchase_order(
                po_id, cancel=cancel, reason=reason, actor=actor, idem=idempotency_key
            )
        )

    def get_purchase_order(self, po_id: str) -> PurchaseOrder:
        return self.run(self.lifecycle.get_purchase_order(po_id))
