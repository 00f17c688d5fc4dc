"""The steps an operation yields to its driver: the whole vocabulary between the
sans-I/O operations (``earmark.engine.ops``) and the code that talks to Redis.

An operation is a generator: it yields a step, the driver executes it and sends the
reply back, and the generator finally returns a model or raises one of our errors.
``Engine`` and ``AsyncEngine`` are two drivers of the same generators.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """Run one Lua script (FCALL of its function, loaded again where the server lost it)."""

    script: str
    keys: list[str]
    args: list[str | int]
    # With EngineConfig.min_replicas_ack, whether the reply waits for the replicas (a
    # write of stock or reservations does; the start-up stamp of a partition need not).
    replicated: bool = True


@dataclass(frozen=True, slots=True)
class Batch:
    """Several script calls in one round trip where the client allows it (a pipeline on
    one Redis); one after the other on a cluster. Replies come back in order."""

    calls: list[Call]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Plain commands sent in one round trip (no transaction)."""

    commands: list[tuple[str | int, ...]]


Step = Call | Batch | Pipeline
Op = Generator[Step, Any, T]


async def run_commands(client: Any, op: Op[T]) -> T:
    """Drives an operation made of plain commands (``Pipeline`` steps only) on any asyncio
    redis client: for parts that own a client of their own, like the flusher."""
    try:
        step = next(op)
        while True:
            if not isinstance(step, Pipeline):
                raise TypeError(f"run_commands drives Pipeline steps only, not {step!r}")
            pipe = client.pipeline(transaction=False)
            for command in step.commands:
                pipe.execute_command(*command)
            step = op.send(await pipe.execute())
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()
