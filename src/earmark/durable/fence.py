"""Lost writes: a Redis that lacks events the durable record already holds is fenced.

After a failover to a replica that was behind (its replication link was cut or slow),
Redis has lost acknowledged writes, yet it keeps its generation marker (the marker
replicated long ago) and would happily sell the lost units again. The record shows it:
the newest event it holds for a partition is newer than anything that partition's
stream ever generated (a stream remembers its last generated id even when trimmed, and
across restarts with persistence). Then every partition is fenced: reads and writes
answer ``StoreNotReady`` on every server (the fence lives in Redis), until
``earmark rebuild`` restores Redis from the record. The service checks at start and its
flusher checks every ``LOST_WRITES_CHECK_SECONDS``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from earmark.engine.ops.status import fence_partitions, split_stream_id, stream_heads
from earmark.engine.steps import Op, run_commands
from earmark.keys import Keys
from earmark.store.ledger import Ledger

log = logging.getLogger("earmark.durable")

LOST_WRITES_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class LostWrites:
    """Partitions whose stream is behind the record: (partition, stream head, recorded)."""

    behind: tuple[tuple[int, str, str], ...]

    @property
    def found(self) -> bool:
        return bool(self.behind)

    def reason(self) -> str:
        parts = ", ".join(f"{p} (Redis {head}, record {newest})" for p, head, newest in self.behind)
        return (
            f"lost writes: the durable record holds newer events than Redis in partitions {parts}"
        )


def compare(heads: list[str], recorded: dict[int, tuple[int, int]]) -> LostWrites:
    behind = []
    for p, head in enumerate(heads):
        newest = recorded.get(p)
        if newest is not None and split_stream_id(head) < newest:
            behind.append((p, head, f"{newest[0]}-{newest[1]}"))
    return LostWrites(tuple(behind))


def _check(keys: Keys, partitions: int, recorded: dict[int, tuple[int, int]]) -> Op[LostWrites]:
    heads = yield from stream_heads(keys, partitions)
    found = compare(heads, recorded)
    if found.found:
        fenced = yield from fence_partitions(keys, partitions, found.reason())
        if fenced:
            log.error(
                "Redis FENCED (reads and writes refused until `earmark rebuild`): %s",
                found.reason(),
            )
    return found


async def check_lost_writes(client: Any, keys: Keys, partitions: int, ledger: Ledger) -> LostWrites:
    """Compares the record with the streams on ``client`` and fences every partition of
    a Redis that lost writes. Returns what it found (fenced or not)."""
    recorded = await ledger.newest_event_ids(partitions)
    if not recorded:
        return LostWrites(())
    return await run_commands(client, _check(keys, partitions, recorded))
