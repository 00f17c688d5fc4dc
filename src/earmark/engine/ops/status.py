"""What operators and readiness checks read from Redis: generation markers, the stock
index, live and overdue holds, and how far the durable record lags behind the event
streams (computed from Redis alone: no database connection is needed).

``earmark status`` and ``/readyz`` read only through these operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from earmark import limits
from earmark.engine.operation import operation
from earmark.engine.ops.base import OpsBase
from earmark.engine.replies import text
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import InvalidRequest
from earmark.keys import FLUSHER_GROUP, Keys

# Entries counted per stream when Redis cannot say how many the group has not read.
LAG_COUNT_MAX = 10_000


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    events: int  # read by no flusher yet, or read but not yet recorded
    oldest_age_seconds: float  # age of the oldest of those (0 when none)


@dataclass(frozen=True, slots=True)
class Lag:
    """How far the durable record is behind Redis (``earmark status``, ``/readyz``)."""

    events: int
    oldest_age_seconds: float
    partitions: tuple[PartitionLag, ...]


def split_stream_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def older(a: str, b: str) -> str:
    return a if split_stream_id(a) <= split_stream_id(b) else b


def server_ms(reply: Any) -> int:
    """Milliseconds of a TIME reply."""
    return int(reply[0]) * 1000 + int(reply[1]) // 1000


class StatusOps(OpsBase):
    @operation
    def generation_markers(self) -> Op[list[str]]:
        """Each partition's generation marker ('' where it is missing), one round trip."""
        commands = [("HGET", self.keys.meta(p), "generation") for p in range(self.partitions)]
        replies = yield Pipeline(list(commands))
        return [text(reply) if reply else "" for reply in replies]

    @operation
    def fences(self) -> Op[list[str]]:
        """Each partition's fence ('' where it is not fenced), one round trip."""
        commands = [("HGET", self.keys.meta(p), "fenced") for p in range(self.partitions)]
        replies = yield Pipeline(list(commands))
        return [text(reply) if reply else "" for reply in replies]

    @operation
    def fence(self, reason: str) -> Op[int]:
        """Fences every partition: reads and writes answer ``StoreNotReady`` (naming
        ``reason``) on every server until a rebuild. For a Redis found lacking writes the
        durable record holds. Returns the partitions fenced now (not already fenced)."""
        return fence_partitions(self.keys, self.partitions, reason)

    @operation
    def vouch(self) -> Op[list[str]]:
        """Marks the primary serving each partition as checked against the durable record
        (``lua/vouch_partition.lua``): until its replication id changes (a failover),
        scripts serve it. Returns the replication id per partition ('' where unmarked)."""
        ids = []
        for p in range(self.partitions):
            reply = yield Call("vouch_partition", [self.keys.meta(p)], [], replicated=False)
            ids.append(text(reply))
        return ids

    @operation
    def stream_heads(self) -> Op[list[str]]:
        """The id Redis last generated in each partition's event stream ('0-0' where the
        stream does not exist): the newest event Redis ever wrote there. A durable record
        holding a newer event proves this Redis lost writes."""
        return stream_heads(self.keys, self.partitions)

    @operation
    def indexed_stock(self, limit: int) -> Op[list[tuple[str, str]]]:
        """Up to ``limit`` (sku, location) pairs from the partitions' stock index, sorted."""
        found: list[tuple[str, str]] = []
        for p in range(self.partitions):
            cursor: int | str = 0
            while len(found) < limit:
                reply = yield Pipeline([("SSCAN", self.keys.stock_index(p), cursor, "COUNT", 500)])
                cursor, members = reply[0]
                for member in members:
                    sku, _, location = text(member).partition(":")
                    found.append((sku, location))
                if int(cursor) == 0:
                    break
        return sorted(found)[:limit]

    @operation
    def hold_counts(self) -> Op[list[tuple[int, int]]]:
        """(live, overdue) held reservation parts per partition, by the server's clock."""
        (now,) = yield Pipeline([("TIME",)])
        now_ms = server_ms(now)
        commands: list[tuple[str | int, ...]] = []
        for p in range(self.partitions):
            commands.append(("ZCOUNT", self.keys.expiries(p), f"({now_ms}", "+inf"))
            commands.append(("ZCOUNT", self.keys.expiries(p), "-inf", now_ms))
        replies = yield Pipeline(commands)
        return [(int(replies[i]), int(replies[i + 1])) for i in range(0, len(replies), 2)]

    @operation
    def holds_expiring(self, within_seconds: float) -> Op[int]:
        """Held reservation parts whose expiry falls in the next ``within_seconds``, by the
        server's clock (the console's "expiring in the next minute")."""
        if not 0 < within_seconds <= limits.HOLDS_EXPIRING_WINDOW_SECONDS_MAX:
            raise InvalidRequest(
                f"within_seconds must be in (0, {limits.HOLDS_EXPIRING_WINDOW_SECONDS_MAX}]"
            )
        (now,) = yield Pipeline([("TIME",)])
        now_ms = server_ms(now)
        until_ms = now_ms + int(within_seconds * 1000)
        replies = yield Pipeline(
            [
                ("ZCOUNT", self.keys.expiries(p), f"({now_ms}", until_ms)
                for p in range(self.partitions)
            ]
        )
        return sum(int(r) for r in replies)

    @operation
    def durable_lag(self, *, group: str = FLUSHER_GROUP) -> Op[Lag]:
        """Events not yet in the durable record, and the age of the oldest, per partition
        (what ``earmark status`` and ``/readyz`` report)."""
        return stream_lag(self.keys, self.partitions, group)


def fence_partitions(keys: Keys, partitions: int, reason: str) -> Op[int]:
    """``fence`` in plain commands (the first fence's reason stays)."""
    reason = reason.strip() or "fenced by an operator"
    commands: list[tuple[str | int, ...]] = []
    for p in range(partitions):
        commands.append(("HSETNX", keys.meta(p), "fenced", reason))
    replies = yield Pipeline(commands)
    return sum(int(reply) for reply in replies)


def replication_id() -> Op[str]:
    """The server's replication id (INFO replication ``master_replid``): it changes when a
    replica is promoted (a failover) or a Redis without persistence restarts, never
    while the same primary keeps its data. '' when the server does not say."""
    (info,) = yield Pipeline([("INFO", "replication")])
    return text(info.get("master_replid", "")) if isinstance(info, dict) else ""


def stream_heads(keys: Keys, partitions: int) -> Op[list[str]]:
    """``stream_heads`` in plain commands."""
    heads = []
    for p in range(partitions):
        key = keys.events(p)
        (exists,) = yield Pipeline([("EXISTS", key)])
        if not int(exists):
            heads.append("0-0")
            continue
        (info,) = yield Pipeline([("XINFO STREAM", key)])
        heads.append(text(info["last-generated-id"]))
    return heads


def stream_lag(keys: Keys, partitions: int, group: str = FLUSHER_GROUP) -> Op[Lag]:
    """``durable_lag`` in plain commands, for any client (``steps.run_commands``)."""
    (now,) = yield Pipeline([("TIME",)])
    now_ms = server_ms(now)
    parts = []
    for p in range(partitions):
        events, oldest = yield from _partition_lag(keys.events(p), group)
        age = 0.0 if oldest is None else max(0.0, (now_ms - split_stream_id(oldest)[0]) / 1000)
        parts.append(PartitionLag(p, events, age))
    return Lag(
        events=sum(x.events for x in parts),
        oldest_age_seconds=max((x.oldest_age_seconds for x in parts), default=0.0),
        partitions=tuple(parts),
    )


def _partition_lag(key: str, group: str) -> Op[tuple[int, str | None]]:
    """(events waiting, id of the oldest) for one stream."""
    (exists,) = yield Pipeline([("EXISTS", key)])
    if not int(exists):
        return 0, None
    (groups,) = yield Pipeline([("XINFO GROUPS", key)])
    info = next((g for g in groups if text(g["name"]) == group), None)
    if info is None:  # no flusher ever ran: everything in the stream waits
        first, length = yield Pipeline([("XRANGE", key, "-", "+", "COUNT", 1), ("XLEN", key)])
        return int(length), (text(first[0][0]) if first else None)
    pending = int(info["pending"])
    undelivered = info.get("lag")
    after = "(" + text(info["last-delivered-id"])
    (first_new,) = yield Pipeline([("XRANGE", key, after, "+", "COUNT", 1)])
    oldest = text(first_new[0][0]) if first_new else None
    if pending:
        (summary,) = yield Pipeline([("XPENDING", key, group)])
        if summary["min"] is not None:
            low = text(summary["min"])
            oldest = low if oldest is None else older(low, oldest)
    if undelivered is None:  # Redis cannot tell: count what follows the group's position
        (rest,) = yield Pipeline([("XRANGE", key, after, "+", "COUNT", LAG_COUNT_MAX)])
        undelivered = len(rest)
    return pending + int(undelivered), oldest
