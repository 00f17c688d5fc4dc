"""Start-up: the partition count stored in Redis and each partition's generation marker."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import orjson

from earmark.engine.config import EngineConfig
from earmark.engine.replies import text
from earmark.engine.steps import Call, Op, Pipeline
from earmark.keys import Keys


@dataclass(frozen=True, slots=True)
class StoreState:
    partitions: int
    # Generation marker per partition; '' where it is missing (writes there are refused).
    generations: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return all(self.generations)


def bootstrap(keys: Keys, config: EngineConfig, *, initialize: bool) -> Op[StoreState]:
    """Reads (and with ``initialize``, creates) the store's partition count and markers.

    Without ``initialize`` nothing is written: a Redis that lost its data stays fenced
    (every write refused) until stock is rebuilt from the durable record.
    """
    partitions = yield from stored_partitions(keys)
    if partitions is None:
        partitions = config.partitions or 1
        if initialize:
            document = orjson.dumps({"partitions": partitions}).decode()
            yield Pipeline([("SET", keys.config(), document, "NX")])
            partitions = (yield from stored_partitions(keys)) or partitions
    elif config.partitions is not None and config.partitions != partitions:
        raise ValueError(
            f"Redis was set up with {partitions} partitions; the configuration asks for "
            f"{config.partitions}. The count is fixed once stock is written."
        )
    generation = secrets.token_hex(8)
    generations = []
    backlog = config.backlog_per_partition(partitions)
    for p in range(partitions):
        args: list[str | int] = [generation, partitions, int(initialize), backlog]
        raw = yield Call("init_partition", [keys.meta(p)], args, replicated=False)
        generations.append(text(raw[0]))
    return StoreState(partitions, tuple(generations))


def stored_partitions(keys: Keys) -> Op[int | None]:
    replies = yield Pipeline([("GET", keys.config())])
    if replies[0] is None:
        return None
    return int(orjson.loads(replies[0])["partitions"])
