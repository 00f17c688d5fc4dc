"""Fencing, rebuild and verification: Redis measured against the durable record.

Redis is the live state and the durable record (``earmark.store.ledger``) its write-behind
copy. When Redis loses its data, its partitions lose their generation markers and every
write script refuses to run (``StoreNotReady``). ``start_engine`` keeps it that way
whenever the record holds stock, instead of stamping fresh markers over an empty Redis;
``rebuild`` then restores the counts from the record and stamps new markers, and
selling resumes. ``verify`` and ``replay_check`` prove the two copies agree.

Every function takes a started ``Engine`` or ``AsyncEngine`` and drives the same
sans-IO steps as the engine's own operations (a blocking engine runs in a thread).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from earmark.durable.allocation_restore import Allocations, fitted, recorded_allocations
from earmark.durable.channel_restore import channel_rules, restore_channels
from earmark.durable.drop_restore import recorded_drops, restore_drops
from earmark.durable.flusher import Flusher
from earmark.durable.reorder_restore import reorder_states, restore_reorder
from earmark.durable.seats import recorded_seats, restore_calls, run_calls
from earmark.engine.ops.status import Lag
from earmark.engine.replies import text
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import EarmarkError, LedgerUnavailable, RebuildRefused
from earmark.keys import Keys, partition_of
from earmark.models import StockLevel
from earmark.store.ledger import BUCKETS, EventKey, Ledger, ReservationRecord, Snapshot

log = logging.getLogger("earmark.durable.rebuild")
T = TypeVar("T")

REBUILD_CONSUMER = "earmark-rebuild"
# Stock records, committed parts and stale parts carried by one restore_stock call.
RESTORE_ITEMS_PER_CALL_MAX = 500
# Held or pinned parts a forced rebuild may find in one live partition.
STALE_PARTS_PER_PARTITION_MAX = 1_000_000
# Stock hashes read per round trip by verify.
VERIFY_KEYS_PER_READ_MAX = 500
# Ledger rows read per query by replay_check.
REPLAY_EVENTS_PER_READ_MAX = 5_000
DRAIN_TIMEOUT_SECONDS = 120.0


async def drive(engine: Any, op: Op[T]) -> T:
    """Runs a sans-IO operation on a blocking or an asyncio engine."""
    if inspect.iscoroutinefunction(engine.run):
        return await engine.run(op)  # type: ignore[no-any-return]
    return await asyncio.to_thread(engine.run, op)


async def _start(engine: Any, *, initialize: bool) -> None:
    if inspect.iscoroutinefunction(engine.start):
        await engine.start(initialize=initialize)
    else:
        await asyncio.to_thread(engine.start, initialize=initialize)


async def start_engine(engine: Any, ledger: Ledger) -> Any:
    """Starts an engine so that a Redis which lost its data stays fenced.

    A new store (no stock in the record) gets fresh generation markers; once the record
    holds stock, missing markers mean Redis was lost, and only ``rebuild`` may stamp them.
    A record that cannot be reached stamps nothing either: a healthy Redis (markers in
    place) sells on, and a new store waits until the record answers.
    Returns the engine; ``engine.state.ready`` tells whether it can sell.
    """
    try:
        initialize = not await ledger.has_stock()
    except LedgerUnavailable as error:
        log.warning("durable record unreachable, starting without stamping markers: %s", error)
        initialize = False
    await _start(engine, initialize=initialize)
    return engine


def start_engine_blocking(engine: Any, ledger_url: str) -> Any:
    """``start_engine`` for blocking callers (CLI, scripts): opens the ledger at
    ``ledger_url`` for the check and closes it again."""
    from earmark.store.ledger import open_ledger

    async def run() -> Any:
        ledger = open_ledger(ledger_url)
        try:
            return await start_engine(engine, ledger)
        finally:
            await ledger.close()

    return asyncio.run(run())


# -- rebuild ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RebuildReport:
    partitions: int
    generation: str  # the new marker of every partition
    stock_records: int
    committed_parts: int  # committed, unshipped reservation parts restored (they can ship)
    stale_parts: int  # held parts found in a live Redis (forced rebuild) and expired
    units_released: int  # units the record counted as held at the loss, given back
    reservations_expired: int  # reservations with a part held at the loss
    units_exposed: int  # units committed beyond on hand in the record, flagged
    events_drained: int  # events moved from Redis into the record before restoring
    drops: int = 0  # drops whose rules and customers' sales were written back
    units_allocated: int = 0  # channel allocations kept in reserved (docs/channels.md)


def _markers(keys: Keys, partitions: int) -> Op[list[str]]:
    replies = yield Pipeline([("HGET", keys.meta(p), "generation") for p in range(partitions)])
    return [text(r) if r is not None else "" for r in replies]


def _fences(keys: Keys, partitions: int) -> Op[list[str]]:
    replies = yield Pipeline([("HGET", keys.meta(p), "fenced") for p in range(partitions)])
    return [text(r) if r is not None else "" for r in replies]


def _fence(keys: Keys, partitions: int) -> Op[None]:
    """Removes every marker (and fence): writes and reads refused until restored."""
    yield Pipeline([("DEL", keys.meta(p)) for p in range(partitions)])


def _stale_part_ids(keys: Keys, p: int) -> Op[list[str]]:
    """Reservation ids with a hold or pin in a live partition (bounded)."""
    sizes = yield Pipeline([("ZCARD", keys.expiries(p)), ("ZCARD", keys.pins(p))])
    if sum(int(s) for s in sizes) > STALE_PARTS_PER_PARTITION_MAX:
        raise EarmarkError(f"partition {p} has more than {STALE_PARTS_PER_PARTITION_MAX} holds")
    held, pinned = yield Pipeline(
        [("ZRANGE", keys.expiries(p), 0, -1), ("ZRANGE", keys.pins(p), 0, -1)]
    )
    return sorted({text(rid) for rid in [*held, *pinned]})


def _write_config(keys: Keys, partitions: int) -> Op[None]:
    """The partition count, outside any partition's slot: a plain SET, not in Lua."""
    (stored,) = yield Pipeline([("GET", keys.config())])
    if stored is not None and int(orjson.loads(stored)["partitions"]) != partitions:
        raise RebuildRefused(
            f"Redis says {orjson.loads(stored)['partitions']} partitions, the record {partitions}"
        )
    yield Pipeline([("SET", keys.config(), orjson.dumps({"partitions": partitions}).decode())])


def _run_call(call: Call) -> Op[Any]:
    reply = yield call
    return reply


@dataclass(slots=True)
class _Restore:
    """One partition's restore, cut into calls of at most RESTORE_ITEMS_PER_CALL_MAX."""

    keys: Keys
    partition: int
    partitions: int
    generation: str
    newest: str
    retention_ms: int
    stock: list[StockLevel]
    parts: list[tuple[ReservationRecord, list[dict[str, Any]]]]
    stale: list[str] = field(default_factory=list)
    allocations: Allocations = field(default_factory=dict)  # kept in reserved (fitted)

    def calls(self) -> Iterator[Call]:
        size = RESTORE_ITEMS_PER_CALL_MAX
        chunks: list[tuple[Sequence[StockLevel], Sequence[Any], Sequence[str]]] = []
        chunks += [(stock, [], []) for stock in self._stock_chunks()]
        chunks += [([], self.parts[i : i + size], []) for i in range(0, len(self.parts), size)]
        chunks += [([], [], self.stale[i : i + size]) for i in range(0, len(self.stale), size)]
        chunks = chunks or [([], [], [])]
        for index, (stock, parts, stale) in enumerate(chunks):
            yield self._call(stock, parts, stale, stamp=index == len(chunks) - 1)

    def _fences(self, level: StockLevel) -> dict[str, int]:
        return fitted(level, self.allocations.get((level.sku, level.location), {}))

    def _stock_chunks(self) -> Iterator[list[StockLevel]]:
        """Stock records by call: at most RESTORE_ITEMS_PER_CALL_MAX records, and as many
        allocations."""
        chunk: list[StockLevel] = []
        fences = 0
        for level in self.stock:
            count = len(self._fences(level))
            if chunk and (
                len(chunk) == RESTORE_ITEMS_PER_CALL_MAX
                or fences + count > RESTORE_ITEMS_PER_CALL_MAX
            ):
                yield chunk
                chunk, fences = [], 0
            chunk.append(level)
            fences += count
        if chunk:
            yield chunk

    def _call(
        self,
        stock: Sequence[StockLevel],
        parts: Sequence[tuple[ReservationRecord, list[dict[str, Any]]]],
        stale: Sequence[str],
        *,
        stamp: bool,
    ) -> Call:
        p, keys = self.partition, self.keys
        call_keys = [keys.meta(p), keys.stock_index(p), keys.events(p)]
        call_keys += [keys.expiries(p), keys.pins(p)]
        fences = [
            (index, channel, units)
            for index, level in enumerate(stock, 1)
            for channel, units in sorted(self._fences(level).items())
        ]
        args: list[str | int] = ["1" if stamp else "0", self.generation, self.partitions]
        args += [self.newest, len(stock), len(parts), len(stale), self.retention_ms, len(fences)]
        for level in stock:
            call_keys += keys.line_keys(p, level.sku, level.location)
            call_keys.append(keys.locations(p, level.sku))
            call_keys.append(keys.on_hand_log(p, level.sku, level.location))
            args += [level.sku, level.location, *(getattr(level, b) for b in BUCKETS)]
            args.append(level.version)
        for record, lines in parts:
            call_keys.append(keys.reservation(p, record.id))
            created = record.created_at_ms or record.committed_at_ms or 0
            args += [record.id, created, record.expires_at_ms or created]
            args += [record.committed_at_ms or created, record.channel]
            args.append(orjson.dumps(lines).decode())
        call_keys += [keys.reservation(p, rid) for rid in stale]
        for fence in fences:
            args += fence
        return Call("restore_stock", call_keys, args)


def _committed_parts(
    snapshot: Snapshot, p: int, partitions: int
) -> list[tuple[ReservationRecord, list[dict[str, Any]]]]:
    """The committed, unshipped parts living in partition ``p``, with their lines."""
    found = []
    for record in snapshot.committed:
        if record.parts.get(str(p)) == "committed":
            lines = [x for x in record.lines if partition_of(x["sku"], partitions) == p]
            found.append((record, sorted(lines, key=lambda x: (x["sku"], x["location"]))))
    return found


async def rebuild(
    engine: Any,
    ledger: Ledger,
    *,
    force: bool = False,
    drain_timeout_seconds: float = DRAIN_TIMEOUT_SECONDS,
) -> RebuildReport:
    """Restores Redis from the durable record and stamps new generation markers.

    Per partition (atomically per restore_stock call; fenced until its marker is
    stamped): every stock bucket as recorded, except ``reserved``, which becomes the
    channel allocations (``earmark.durable.allocation_restore``): holds live at the loss
    are gone, and a ``holds_lost`` event tells the record; the
    stock index; committed, unshipped reservation parts, so they can still ship; then
    the partition count and a new marker. Whatever Redis still holds is drained into the
    record first; each drop's rules and its customers' committed units are written back
    before any marker (``earmark.durable.drop_restore``). The engine is restarted on the
    restored store.

    Args:
        force: rebuild over a Redis that still has markers: it is fenced first (writes
            refused), drained, and its live holds are expired.

    Raises:
        RebuildRefused: Redis still has markers and ``force`` is False.
    """
    meta = await ledger.store_meta()
    partitions = int(meta.get("partitions") or engine.partitions)
    markers = await drive(engine, _markers(engine.keys, partitions))
    fences = await drive(engine, _fences(engine.keys, partitions))
    live = [p for p, marker in enumerate(markers) if marker and not fences[p]]
    if live and not force:
        raise RebuildRefused(
            f"Redis still has generation markers on partitions {live} and no fence: it was "
            "not lost. Pass force=True to overwrite it from the durable record.",
            partitions=live,
        )
    if any(markers) or any(fences):
        fenced = [p for p, reason in enumerate(fences) if reason]
        if fenced:
            log.warning("rebuilding a fenced Redis (%s)", fences[fenced[0]])
        else:
            log.warning("forced rebuild: fencing %d partitions of a live Redis", partitions)
        await drive(engine, _fence(engine.keys, partitions))
    flusher = Flusher.for_engine(engine, ledger, consumer=REBUILD_CONSUMER, partitions=partitions)
    try:
        drained = await flusher.drain(drain_timeout_seconds)
        # drops (issue 13): before the markers are stamped, so a drop's SKU never sells
        # without its rules
        drops = await drive(engine, restore_drops(engine.keys, await recorded_drops(ledger)))
        report = await _restore(engine, ledger, partitions)
        # reorder settings and alert state (issue 15): from their events, no new event
        states = await reorder_states(ledger)
        await drive(engine, restore_reorder(engine.keys, partitions, states))
        # channel rules (issue 13): each partition's copy, from their events
        await drive(engine, restore_channels(engine.keys, partitions, await channel_rules(ledger)))
        await _start(engine, initialize=False)
        await _vouch(engine)  # the restored primary is what the record says: trusted
        await _drain_after(flusher, drain_timeout_seconds)
    finally:
        await flusher.close()
    log.info("rebuilt %d partitions (generation %s)", partitions, report.generation)
    return dataclasses.replace(report, events_drained=drained, drops=drops)


async def _vouch(engine: Any) -> None:
    if inspect.iscoroutinefunction(engine.vouch):
        await engine.vouch()
    else:
        await asyncio.to_thread(engine.vouch)


async def _restore(engine: Any, ledger: Ledger, partitions: int) -> RebuildReport:
    snapshot = await ledger.snapshot(partitions)
    expired = await ledger.mark_holds_lost(time.time_ns() // 1_000_000)
    await drive(engine, _write_config(engine.keys, partitions))
    generation = secrets.token_hex(8)
    by_partition: dict[int, list[StockLevel]] = {p: [] for p in range(partitions)}
    for level in sorted(snapshot.stock, key=lambda x: (x.sku, x.location)):
        by_partition[partition_of(level.sku, partitions)].append(level)
    allocations = await recorded_allocations(ledger)
    totals = {"parts": 0, "stale": 0, "lost": 0, "exposed": 0, "fenced": 0}
    for p in range(partitions):
        ms, seq = snapshot.last_stream_ids.get(p, (0, 0))
        restore = _Restore(
            keys=engine.keys,
            partition=p,
            partitions=partitions,
            generation=generation,
            newest=f"{ms}-{seq}",
            retention_ms=engine.config.reservation_retention_ms,
            stock=by_partition[p],
            parts=_committed_parts(snapshot, p, partitions),
            stale=await drive(engine, _stale_part_ids(engine.keys, p)),
            allocations=allocations,
        )
        for call in restore.calls():
            result = orjson.loads(await drive(engine, _run_call(call)))
            if "error" in result:
                raise RebuildRefused(f"partition {p} refused the restore: {result['error']}")
            for name in totals:
                totals[name] += int(result[name])
    # seats (docs/seats.md): settings and assigned users, which the buckets do not say
    tenants = await recorded_seats(ledger)
    await drive(engine, run_calls(restore_calls(engine.keys, partitions, tenants)))
    return RebuildReport(
        partitions=partitions,
        generation=generation,
        stock_records=len(snapshot.stock),
        committed_parts=totals["parts"],
        stale_parts=totals["stale"],
        units_released=totals["lost"],
        reservations_expired=expired,
        units_exposed=totals["exposed"],
        units_allocated=totals["fenced"],
        events_drained=0,
    )


async def _drain_after(flusher: Flusher, timeout_seconds: float) -> None:
    """Moves the holds_lost events into the record, so it agrees with Redis at once.
    Selling has resumed, so a busy store may outpace this: the running flusher then
    finishes the job, which is why a timeout here is logged, not raised."""
    try:
        await flusher.drain(timeout_seconds)
    except TimeoutError as error:
        log.warning("rebuild done, but the record is still catching up: %s", error)


# -- verification ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drift:
    """One (sku, location) whose two copies disagree: bucket -> (first, second)."""

    sku: str
    location: str
    buckets: dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Redis (first) against stock_levels (second), per (sku, location)."""

    checked: int
    drift: list[Drift]
    lag: Lag  # events still waiting when the copies were compared (0 after a drain)

    @property
    def ok(self) -> bool:
        return not self.drift


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The ledger replayed from zero (first) against stock_levels (second)."""

    events: int
    checked: int
    drift: list[Drift]

    @property
    def ok(self) -> bool:
        return not self.drift


Levels = dict[tuple[str, str], dict[str, int]]


def compare(first: Levels, second: Levels) -> list[Drift]:
    drift = []
    for sku, location in sorted(first.keys() | second.keys()):
        a = first.get((sku, location), {})
        b = second.get((sku, location), {})
        differing = {
            bucket: (a.get(bucket, 0), b.get(bucket, 0))
            for bucket in BUCKETS
            if a.get(bucket, 0) != b.get(bucket, 0)
        }
        if differing:
            drift.append(Drift(sku, location, differing))
    return drift


def _redis_levels(keys: Keys, partitions: int) -> Op[Levels]:
    """Every stock hash as stored (raw buckets: what the record mirrors)."""
    found: Levels = {}
    for p in range(partitions):
        (members,) = yield Pipeline([("SMEMBERS", keys.stock_index(p))])
        pairs = sorted(tuple(text(m).split(":", 1)) for m in members)
        for start in range(0, len(pairs), VERIFY_KEYS_PER_READ_MAX):
            chunk = pairs[start : start + VERIFY_KEYS_PER_READ_MAX]
            replies = yield Pipeline([("HGETALL", keys.stock(p, sku, loc)) for sku, loc in chunk])
            for (sku, loc), raw in zip(chunk, replies, strict=True):
                stored = {text(k): int(v) for k, v in raw.items()}
                found[(sku, loc)] = {b: stored.get(b, 0) for b in BUCKETS}
    return found


def _recorded(levels: Sequence[StockLevel]) -> Levels:
    return {(x.sku, x.location): {b: int(getattr(x, b)) for b in BUCKETS} for x in levels}


async def verify(engine: Any, ledger: Ledger, *, flush: bool = True) -> VerifyReport:
    """Compares every stock bucket in Redis with stock_levels; ``earmark verify`` exits
    non-zero unless ``report.ok``. With ``flush`` the events waiting in Redis are
    drained into the record first, so only real drift shows (``report.lag`` says how
    many were still waiting at the comparison, if writers kept going)."""
    flusher = Flusher.for_engine(engine, ledger, consumer=REBUILD_CONSUMER)
    try:
        if flush:
            await flusher.drain(DRAIN_TIMEOUT_SECONDS)
        in_redis = await drive(engine, _redis_levels(engine.keys, engine.partitions))
        recorded = _recorded(await ledger.stock_levels())
        lag = await flusher.lag()
    finally:
        await flusher.close()
    return VerifyReport(len(in_redis.keys() | recorded.keys()), compare(in_redis, recorded), lag)


async def replay_check(ledger: Ledger) -> ReplayReport:
    """Replays every ledger row from zero and compares the sums with stock_levels
    (``earmark verify --replay``): proves no delta was applied twice or skipped."""
    replayed: Levels = {}
    after: EventKey | None = None
    count = 0
    while events := await ledger.events(after, REPLAY_EVENTS_PER_READ_MAX):
        for event in events:
            levels = replayed.setdefault((event.sku, event.location), dict.fromkeys(BUCKETS, 0))
            for bucket, units in event.deltas.items():
                levels[bucket] += units
        count += len(events)
        after = events[-1].key
    recorded = _recorded(await ledger.stock_levels())
    return ReplayReport(count, len(replayed.keys() | recorded.keys()), compare(replayed, recorded))
