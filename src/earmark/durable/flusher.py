"""Write-behind: moves every event from the partition streams into the durable record.

Each partition stream is read through one consumer group. A batch is written in one
ledger transaction (``Ledger.persist``), and only then acknowledged (XACK) and trimmed
from Redis (XTRIM MINID, never past the oldest entry still pending or undelivered in
any group). So a flusher killed at any point loses nothing: what it read but did not
acknowledge stays pending, and another flusher claims it (XAUTOCLAIM) once it has been
idle for ``claim_idle_ms``. Writing an event twice is harmless: its id (partition +
stream id) is the ledger's primary key, and deltas are applied only for new rows.

While the ledger is down the engine keeps selling, events wait in Redis (see
``docs/design/durability.md`` for what that costs), and ``run`` retries with exponential
backoff until it catches up. ``lag()`` tells how far behind the record is.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from earmark.durable.fence import LOST_WRITES_CHECK_SECONDS, LostWrites, check_lost_writes
from earmark.engine import connect
from earmark.engine.ops.status import Lag, older, stream_lag
from earmark.engine.steps import run_commands
from earmark.errors import LedgerUnavailable
from earmark.keys import FLUSHER_GROUP, Keys
from earmark.store.ledger import Event, Ledger, split_stream_id

log = logging.getLogger("earmark.durable.flusher")

GROUP_DEFAULT = FLUSHER_GROUP
# Events per ledger transaction: big enough to amortise a commit, small enough that a
# claimed batch after a crash is quick to redo.
BATCH_SIZE_MAX_DEFAULT = 500
BATCH_SIZE_LIMIT = 10_000
# How long an idle flusher waits before it looks at the streams again.
BLOCK_MS_DEFAULT = 100
BLOCK_MS_LIMIT = 10_000
# A pending entry idle this long belongs to a flusher presumed dead: another claims it.
# Longer than any healthy batch takes, so a slow but live flusher is rarely duplicated
# (and if it is, the unique event id keeps the record exact), and far shorter than the
# readiness bound on lag (EARMARK_FLUSHER_LAG_SECONDS_MAX, 30 s): one crashed server
# never makes the others unready.
CLAIM_IDLE_MS_DEFAULT = 5_000
CLAIM_IDLE_MS_MIN = 10
# A consumer with nothing pending, idle this many claim windows, is forgotten (flushers
# name themselves per process, so restarts would otherwise pile up names in the group).
CONSUMER_IDLE_CLAIM_WINDOWS_MAX = 20
# Connections of a client the flusher builds for itself (one batch at a time needs few).
FLUSHER_CONNECTIONS_MAX = 4
BACKOFF_MS_MIN = 100
BACKOFF_MS_MAX = 10_000
DRAIN_TIMEOUT_SECONDS_DEFAULT = 60.0
# Redis failures worth waiting out; anything else is a bug and stops ``run``.
REDIS_TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    OSError,
)
# Stream entries as redis-py returns them; fields are None for an entry deleted meanwhile.
Entries = list[tuple[str, Mapping[str, str] | None]]


@dataclass(slots=True)
class FlusherStats:
    batches: int = 0
    events: int = 0  # entries handled (recorded now or found already recorded)
    inserted: int = 0  # of which new to the ledger
    claimed: int = 0  # entries taken over from other consumers
    failures: int = 0  # rounds that failed and were retried


def next_stream_id(stream_id: str) -> str:
    ms, seq = split_stream_id(stream_id)
    return f"{ms}-{seq + 1}"


def async_client_of(client: Any) -> Any:
    """An asyncio client for the server a blocking redis-py (or fakeredis) client uses."""
    kwargs = client.connection_pool.connection_kwargs if hasattr(client, "connection_pool") else {}
    if "server" in kwargs:  # fakeredis: share the in-process server
        import fakeredis

        return fakeredis.FakeAsyncRedis(
            server=kwargs["server"], host=kwargs["host"], port=kwargs["port"], decode_responses=True
        )
    if isinstance(client, redis.cluster.RedisCluster):
        known = client.get_nodes()  # type: ignore[no-untyped-call]
        nodes = [redis.asyncio.cluster.ClusterNode(n.host, n.port) for n in known]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, decode_responses=True)
    wanted = ("host", "port", "db", "username", "password", "socket_timeout")
    options = {k: kwargs[k] for k in wanted if k in kwargs}
    if "path" in kwargs:
        options["unix_socket_path"] = kwargs["path"]
    return redis.asyncio.Redis(**options, decode_responses=True)


class Flusher:
    """Moves events from Redis into a ``Ledger``; several may run at once.

    Args:
        client: an asyncio redis client (``decode_responses=True``) of the engine's Redis.
        keys: the engine's key names; partitions: its partition count.
        ledger: where events go (``earmark.store.ledger.open_ledger``).
        consumer: this flusher's name in the consumer group, unique per live flusher;
            a flusher restarted under the same name picks up its own pending entries.
        batch_size_max: events per ledger transaction.
        block_ms: how long an idle flusher waits before it polls again.
        claim_idle_ms: when another consumer's pending entries are presumed abandoned.
        on_recorded: called after a batch recorded new events (the in-process webhook
            dispatcher wakes on it instead of waiting for its next poll).
    """

    def __init__(
        self,
        client: Any,
        keys: Keys,
        partitions: int,
        ledger: Ledger,
        *,
        consumer: str,
        group: str = GROUP_DEFAULT,
        batch_size_max: int = BATCH_SIZE_MAX_DEFAULT,
        block_ms: int = BLOCK_MS_DEFAULT,
        claim_idle_ms: int = CLAIM_IDLE_MS_DEFAULT,
        lost_writes_check_seconds: float = LOST_WRITES_CHECK_SECONDS,
        owns_client: bool = False,
        on_recorded: Callable[[], None] | None = None,
    ) -> None:
        if not 1 <= batch_size_max <= BATCH_SIZE_LIMIT:
            raise ValueError(f"batch_size_max must be between 1 and {BATCH_SIZE_LIMIT}")
        if not 0 <= block_ms <= BLOCK_MS_LIMIT:
            raise ValueError(f"block_ms must be between 0 and {BLOCK_MS_LIMIT}")
        if claim_idle_ms < CLAIM_IDLE_MS_MIN:
            raise ValueError(f"claim_idle_ms must be at least {CLAIM_IDLE_MS_MIN}")
        if not consumer:
            raise ValueError("a flusher needs a consumer name")
        self.client, self.keys, self.partitions, self.ledger = client, keys, partitions, ledger
        self.consumer, self.group = consumer, group
        self.batch_size_max = batch_size_max
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.lost_writes_check_seconds = lost_writes_check_seconds
        self._lost_writes_at = 0.0  # monotonic time of the next check
        self.lost_writes: LostWrites | None = None  # what the last check found
        self.stats = FlusherStats()
        self._owns_client = owns_client
        self.on_recorded = on_recorded
        self._started = False
        # Partitions where this consumer may hold pending entries (read them first):
        # every partition at start (a restart under the same name), and after a failure.
        self._own_pending = [True] * partitions
        self._claim_at = [0.0] * partitions  # monotonic time of the next XAUTOCLAIM
        self._claim_cursor = ["0-0"] * partitions
        self._tidy: set[int] = set()  # partitions whose idle consumers to forget next

    @classmethod
    def for_engine(
        cls,
        engine: Any,
        ledger: Ledger,
        *,
        consumer: str,
        partitions: int | None = None,
        **settings: Any,
    ) -> Self:
        """A flusher for a started ``Engine`` or ``AsyncEngine``. A blocking engine's
        connection settings are reused for an asyncio client the flusher owns.
        ``partitions`` overrides the engine's count (rebuild knows it from the record
        while a fenced engine may not)."""
        if isinstance(engine.client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
            client, owns = engine.client, False
        elif getattr(engine, "url", None):  # a Sentinel URL, say: build it the same way
            client = connect.asyncio_client(
                engine.url, cluster=engine.cluster, max_connections=FLUSHER_CONNECTIONS_MAX
            )
            owns = True
        else:
            client, owns = async_client_of(engine.client), True
        return cls(
            client,
            engine.keys,
            partitions or engine.partitions,
            ledger,
            consumer=consumer,
            owns_client=owns,
            **settings,
        )

    async def close(self) -> None:
        """Closes the Redis client if the flusher made it (never the ledger)."""
        if self._owns_client:
            await connect.aclose(self.client)

    # -- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Flushes until ``stop`` is set. Redis or ledger outages are logged and retried
        with exponential backoff (jittered, at most ``BACKOFF_MS_MAX``); any other error
        is a bug or a poison event and ends the loop by raising."""
        backoff_ms = BACKOFF_MS_MIN
        while not stop.is_set():
            await self._check_lost_writes()  # also while flushing fails: Redis may have changed
            try:
                handled = await self.flush_once()
            except (LedgerUnavailable, *REDIS_TRANSIENT) as error:
                self.stats.failures += 1
                log.warning("flush failed, retrying in %d ms: %r", backoff_ms, error)
                pause_ms = backoff_ms * random.uniform(0.5, 1.0)
                if not isinstance(error, LedgerUnavailable):  # Redis failing: it may fail
                    pause_ms = min(pause_ms, self.lost_writes_check_seconds * 1000)  # over
                await self._wait(stop, pause_ms)
                backoff_ms = min(backoff_ms * 2, BACKOFF_MS_MAX)
                continue
            backoff_ms = BACKOFF_MS_MIN
            if handled == 0:
                await self._wait(stop, self.block_ms)

    async def _check_lost_writes(self) -> None:
        """Every ``lost_writes_check_seconds``: is the record ahead of Redis (a failover
        lost writes)? Then Redis is fenced (``durable.fence``). The check needs both
        sides; while either is down it waits for the next round."""
        now = time.monotonic()
        if now < self._lost_writes_at:
            return
        self._lost_writes_at = now + self.lost_writes_check_seconds
        try:
            self.lost_writes = await check_lost_writes(
                self.client, self.keys, self.partitions, self.ledger
            )
        except (LedgerUnavailable, *REDIS_TRANSIENT) as error:
            log.warning("lost-write check skipped: %r", error)

    @staticmethod
    async def _wait(stop: asyncio.Event, ms: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=ms / 1000)
        except TimeoutError:
            return

    async def drain(self, timeout_seconds: float = DRAIN_TIMEOUT_SECONDS_DEFAULT) -> int:
        """Flushes until no event is waiting in any partition, taking over every other
        consumer's pending entries at once (safe: the record never applies an event
        twice). For tests, ``earmark flush --once`` and rebuild. Returns events handled.

        Raises:
            TimeoutError: events still wait after ``timeout_seconds`` (writers outpace it).
        """
        deadline = time.monotonic() + timeout_seconds
        handled = 0
        self._claim_at = [0.0] * self.partitions  # sweep every other consumer's entries
        while True:
            done = await self.flush_once(claim_idle_ms=0)
            handled += done
            if done == 0:
                if (await self.lag()).events == 0:
                    return handled
                # Entries another consumer took after our sweep: sweep again.
                self._claim_at = [0.0] * self.partitions
            if time.monotonic() > deadline:
                raise TimeoutError(f"events still waiting after {timeout_seconds:g}s of draining")

    # -- one round -------------------------------------------------------------------

    async def flush_once(self, *, claim_idle_ms: int | None = None) -> int:
        """One round over every partition: at most one batch each. Returns the events
        handled (recorded now, or found already recorded by another flusher)."""
        if not self._started:
            await self.ledger.bind_store(self.keys.prefix, self.partitions)
            await self._create_groups(range(self.partitions))
            self._started = True
        handled = 0
        for p, entries in (await self._read_round(claim_idle_ms)).items():
            handled += await self._record(p, entries)
        while self._tidy:
            await self._forget_idle_consumers(self._tidy.pop())
        return handled

    async def _forget_idle_consumers(self, p: int) -> None:
        """Drops consumers long idle with nothing pending (never one holding entries)."""
        key = self.keys.events(p)
        idle_ms_max = self.claim_idle_ms * CONSUMER_IDLE_CLAIM_WINDOWS_MAX
        for consumer in await self.client.xinfo_consumers(key, self.group):
            name = consumer["name"]
            if name != self.consumer and not consumer["pending"] and consumer["idle"] > idle_ms_max:
                await self.client.xgroup_delconsumer(key, self.group, name)

    async def _create_groups(self, partitions: Sequence[int] | range) -> None:
        """MKSTREAM at id 0: a group created after events were written still gets them."""
        for p in partitions:
            try:
                await self.client.xgroup_create(self.keys.events(p), self.group, "0", mkstream=True)
            except redis.exceptions.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def _read_round(self, claim_idle_ms: int | None) -> dict[int, Entries]:
        """At most one batch per partition, in at most two round trips: first this
        consumer's own pending entries and due claims, then new entries for every
        partition that the first step left empty-handed (usually all of them)."""
        first: dict[int, str] = {}
        for p in range(self.partitions):
            if self._own_pending[p]:
                first[p] = "own"
            elif time.monotonic() >= self._claim_at[p]:
                first[p] = "claim"
        batches = await self._read(first, claim_idle_ms) if first else {}
        rest = {p: "new" for p in range(self.partitions) if p not in batches}
        batches.update(await self._read(rest, claim_idle_ms))
        return dict(sorted(batches.items()))

    async def _read(self, kinds: dict[int, str], claim_idle_ms: int | None) -> dict[int, Entries]:
        pipe = self.client.pipeline(transaction=False)
        for p, kind in kinds.items():
            key, count = self.keys.events(p), self.batch_size_max
            if kind == "claim":
                idle = self.claim_idle_ms if claim_idle_ms is None else claim_idle_ms
                cursor = self._claim_cursor[p]
                pipe.xautoclaim(key, self.group, self.consumer, idle, cursor, count=count)
            else:
                start = "0" if kind == "own" else ">"
                pipe.xreadgroup(self.group, self.consumer, {key: start}, count=count)
        for p in kinds:  # until a batch is recorded, what this read delivers is ours
            self._own_pending[p] = True
        replies = await pipe.execute(raise_on_error=False)
        batches = {}
        for (p, kind), reply in zip(kinds.items(), replies, strict=True):
            if isinstance(reply, redis.exceptions.ResponseError) and "NOGROUP" in str(reply):
                log.warning("consumer group missing on partition %d (Redis lost?): recreating", p)
                await self._create_groups([p])
                continue
            if isinstance(reply, Exception):
                raise reply
            entries = self._entries(p, kind, reply)
            if entries:
                batches[p] = entries
            else:
                self._own_pending[p] = False
        return batches

    def _entries(self, p: int, kind: str, reply: Any) -> Entries:
        if kind == "claim":
            cursor, entries = reply[0], reply[1]
            self._claim_cursor[p] = cursor
            if cursor == "0-0" and not entries:
                self._claim_at[p] = time.monotonic() + self.claim_idle_ms / 2000
                self._tidy.add(p)
            self.stats.claimed += len(entries)
            return list(entries)
        return list(reply[0][1] if reply else [])

    async def _record(self, p: int, entries: Entries) -> int:
        """Persists one batch, then acknowledges and trims it. Whatever fails, the
        entries stay pending under this consumer and are read again first."""
        # An entry whose fields are gone was trimmed after it was recorded: ack only.
        events = [Event.from_stream(p, eid, fields) for eid, fields in entries if fields]
        inserted = await self.ledger.persist(events)
        try:
            await self.client.xack(self.keys.events(p), self.group, *[eid for eid, _ in entries])
            self._own_pending[p] = False
            await self._trim(p)
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error) and "no such key" not in str(error):
                raise
            # Redis lost the stream after we read it: the batch is recorded, and there
            # is nothing left to acknowledge.
            log.warning("partition %d stream vanished after a flush (Redis lost?)", p)
            self._own_pending[p] = False
        self.stats.batches += 1
        self.stats.events += len(entries)
        self.stats.inserted += inserted
        if inserted and self.on_recorded is not None:
            self.on_recorded()
        return len(entries)

    async def _trim(self, p: int) -> None:
        """Drops every entry older than the oldest one any group still needs."""
        key = self.keys.events(p)
        groups = await self.client.xinfo_groups(key)
        floor: str | None = None
        for group in groups:
            needed = next_stream_id(str(group["last-delivered-id"]))
            if int(group["pending"]) > 0:
                summary = await self.client.xpending(key, group["name"])
                if summary["min"] is not None:
                    needed = older(needed, str(summary["min"]))
            floor = needed if floor is None else older(floor, needed)
        if floor is not None:
            await self.client.xtrim(key, minid=floor, approximate=False)

    # -- lag -------------------------------------------------------------------------------

    async def lag(self) -> Lag:
        """How far the durable record is behind this flusher's partitions."""
        return await run_commands(self.client, stream_lag(self.keys, self.partitions, self.group))
