"""Coalesces the script calls of concurrent asyncio operations into pipelines and batches.

Under load the Python client, not Redis, is the bottleneck: each call pays for a
connection check-out, a write and a read. Calls issued in the same event-loop turn
are sent as one non-transactional pipeline instead (each script stays atomic on
its own; order is kept). Concurrent reserves of one partition go further: they become
ONE call of lua/reserve_batch.lua, which runs each cart as reserve.lua would (each all
or nothing on its own, answered per cart in order), so Redis pays a script call's fixed
cost (argument parsing, defining the helpers, the meta check, TIME) once per batch. On a
cluster each batch (one partition: one slot, one node) is sent on its own.
``python -m loadtests.bench.engine`` measures the gain.

With replicated writes (``EngineConfig.min_replicas_ack``) the pipeline ends with one
``WAIT``: every write in it is acknowledged only if enough replicas confirmed them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from earmark import limits
from earmark.engine.functions import fcall, missing, run_async
from earmark.engine.scripts import LuaScript
from earmark.engine.steps import Call
from earmark.errors import ReplicationTimeout


@dataclass(frozen=True, slots=True)
class Replication:
    """Replicas a write waits for (Redis ``WAIT``), and for how long at most."""

    replicas: int
    timeout_ms: int

    def refusal(self, acknowledged: int) -> ReplicationTimeout | None:
        if acknowledged >= self.replicas:
            return None
        return ReplicationTimeout(
            f"{acknowledged} of {self.replicas} replicas confirmed the write within "
            f"{self.timeout_ms} ms: it is not acknowledged; retry with the same idempotency "
            "key to get its result once it is replicated"
        )


# Scripts whose concurrent calls on one partition go to Redis as ONE call of a batch
# script that runs each of them in order (lua/reserve_batch.lua): name -> batch script.
BATCHED = {"reserve": "reserve_batch"}
# A batch script's per-call flag for a call whose script failed (its first value is the
# error message).
FAILED = -1


@dataclass(slots=True)
class Pending:
    call: Call
    writes: bool
    future: asyncio.Future[Any]

    @property
    def size(self) -> int:
        return sum(len(str(x)) for x in self.call.keys) + sum(len(str(x)) for x in self.call.args)


@dataclass(slots=True)
class Merged:
    """Concurrent calls of one batched script on one partition, sent as one call."""

    items: list[Pending]

    def call(self) -> Call:
        first = self.items[0].call
        keys: list[str] = []
        counts: list[str | int] = [len(self.items)]
        args: list[str | int] = []
        for item in self.items:
            keys += item.call.keys
            args += item.call.args
            counts += [len(item.call.keys), len(item.call.args)]
        return Call(BATCHED[first.script], keys, counts + args, first.replicated)


Unit = Pending | Merged


def merge(pending: list[Pending], *, batching: bool) -> list[Unit]:
    """The units to send for one loop turn's calls, in order of their first call: calls
    of a batched script on one partition (their first key, the partition's meta) merge,
    at most ``CARTS_PER_CALL_MAX`` calls and ``BATCH_BYTES_MAX`` bytes per unit; a
    partition's lone call stays as it is."""
    units: list[Unit] = []
    open_batches: dict[tuple[str, str], tuple[Merged, int]] = {}
    for item in pending:
        call = item.call
        if not batching or call.script not in BATCHED:
            units.append(item)
            continue
        group = (call.script, call.keys[0])
        size = item.size
        found = open_batches.get(group)
        if found is not None:
            merged, used = found
            if (
                len(merged.items) < limits.CARTS_PER_CALL_MAX
                and used + size <= limits.BATCH_BYTES_MAX
            ):
                merged.items.append(item)
                open_batches[group] = (merged, used + size)
                continue
        merged = Merged([item])
        units.append(merged)
        open_batches[group] = (merged, size)
    return [
        unit.items[0] if isinstance(unit, Merged) and len(unit.items) == 1 else unit
        for unit in units
    ]


def split(merged: Merged, reply: list[Any]) -> list[Any]:
    """Each call's own reply out of a batch script's flat reply (an error for a call
    whose script failed)."""
    if len(reply) != 2 * len(merged.items):
        raise ResponseError(f"a batch of {len(merged.items)} calls answered {len(reply)} values")
    answers: list[Any] = []
    for i in range(len(merged.items)):
        value, flag = reply[2 * i], reply[2 * i + 1]
        if int(flag) == FAILED:
            answers.append(ResponseError(str(value)))
        else:
            answers.append([value, flag])
    return answers


class CallCoalescer:
    """Queues script calls and sends each loop turn's calls together: on one Redis in
    one pipeline; on a cluster (``sender``) each unit on its own, concurrently. With
    ``batching``, concurrent reserves of one partition become one script call
    (``merge``)."""

    def __init__(
        self,
        client: Any,
        scripts: Mapping[str, LuaScript],
        replication: Replication | None = None,
        *,
        batching: bool = True,
        sender: Callable[[Call], Awaitable[Any]] | None = None,
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.replication = replication
        self.batching = batching
        self.sender = sender
        self._pending: list[Pending] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, call: Call, *, writes: bool = True) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Pending(call, writes, future))
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every task already ready this turn has queued its call.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        units = merge(pending, batching=self.batching)
        if self.sender is not None:
            for unit in units:
                self._start(self._send_alone(unit))
            return
        for start in range(0, len(units), limits.COALESCED_CALLS_MAX):
            self._start(self._send(units[start : start + limits.COALESCED_CALLS_MAX]))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_alone(self, unit: Unit) -> None:
        """A unit on its own (a cluster routes each call to its slot's node)."""
        assert self.sender is not None
        call = unit.call() if isinstance(unit, Merged) else unit.call
        try:
            reply = await self.sender(call)
        except Exception as error:  # noqa: BLE001 - handed to every waiting caller
            reply = error
        if isinstance(unit, Merged):
            self._answer_merged(unit, reply, None)
        else:
            self._answer(unit, reply, None)

    async def _send(self, units: list[Unit]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for unit in units:
            call = unit.call() if isinstance(unit, Merged) else unit.call
            pipe.execute_command(*fcall(self.scripts[call.script], call))
        waits = self.replication is not None and any(_writes(unit) for unit in units)
        if waits and self.replication is not None:
            pipe.execute_command("WAIT", self.replication.replicas, self.replication.timeout_ms)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as error:  # noqa: BLE001 - handed to every waiting caller
            for unit in units:
                for item in _items(unit):
                    if not item.future.done():
                        item.future.set_exception(error)
            return
        refusal = None
        if waits and self.replication is not None:
            acknowledged = replies.pop()
            if isinstance(acknowledged, Exception):
                refusal = acknowledged
            else:
                refusal = self.replication.refusal(int(acknowledged))
        for unit, reply in zip(units, replies, strict=True):
            if missing(reply):
                # The server lost the function (restart, FUNCTION FLUSH): load it and retry
                # each call on its own.
                for item in _items(unit):
                    if not item.future.done():
                        await self._retry(item)
            elif isinstance(unit, Merged):
                self._answer_merged(unit, reply, refusal)
            else:
                self._answer(unit, reply, refusal)

    def _answer_merged(self, unit: Merged, reply: Any, refusal: Exception | None) -> None:
        if isinstance(reply, Exception):
            answers: list[Any] = [reply] * len(unit.items)
        else:
            try:
                answers = split(unit, reply)
            except ResponseError as error:
                answers = [error] * len(unit.items)
        for item, answer in zip(unit.items, answers, strict=True):
            self._answer(item, answer, refusal)

    @staticmethod
    def _answer(item: Pending, reply: Any, refusal: Exception | None) -> None:
        if item.future.done():
            return  # the caller was cancelled
        if isinstance(reply, Exception):
            item.future.set_exception(reply)
        elif item.writes and refusal is not None:
            item.future.set_exception(refusal)
        else:
            item.future.set_result(reply)

    async def _retry(self, item: Pending) -> None:
        try:
            result = await run_async(self.client, self.scripts[item.call.script], item.call)
            if item.writes and self.replication is not None:
                acknowledged = await self.client.execute_command(
                    "WAIT", self.replication.replicas, self.replication.timeout_ms
                )
                refusal = self.replication.refusal(int(acknowledged))
                if refusal is not None:
                    raise refusal
        except Exception as error:  # noqa: BLE001 - handed to the waiting caller
            if not item.future.done():
                item.future.set_exception(error)
        else:
            if not item.future.done():
                item.future.set_result(result)


def _items(unit: Unit) -> list[Pending]:
    return unit.items if isinstance(unit, Merged) else [unit]


def _writes(unit: Unit) -> bool:
    return any(item.writes for item in _items(unit))
