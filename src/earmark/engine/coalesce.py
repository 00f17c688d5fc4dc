"""Coalesces the script calls of concurrent asyncio operations into pipelines.

Under load the Python client, not Redis, is the bottleneck: each call pays for a
connection check-out, a write and a read. Calls issued in the same event-loop turn
are sent as one non-transactional pipeline instead (each script stays atomic on
its own; order is kept). ``python -m loadtests.bench.engine`` measures the gain.

With replicated writes (``EngineConfig.min_replicas_ack``) the pipeline ends with one
``WAIT``: every write in it is acknowledged only if enough replicas confirmed them all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from earmark import limits
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


@dataclass(slots=True)
class Pending:
    script: AsyncScript
    keys: list[str]
    args: list[Any]
    writes: bool
    future: asyncio.Future[Any]


class CallCoalescer:
    """Queues script calls and sends each loop turn's calls in one pipeline."""

    def __init__(self, client: Any, replication: Replication | None = None) -> None:
        self.client = client
        self.replication = replication
        self._pending: list[Pending] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def call(
        self, script: AsyncScript, keys: list[str], args: list[Any], *, writes: bool = True
    ) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Pending(script, keys, args, writes, future))
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every task already ready this turn has queued its call.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), limits.COALESCED_CALLS_MAX):
            task = asyncio.create_task(
                self._send(pending[start : start + limits.COALESCED_CALLS_MAX])
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[Pending]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in batch:
            pipe.evalsha(item.script.sha, len(item.keys), *item.keys, *item.args)
        waits = self.replication is not None and any(item.writes for item in batch)
        if waits and self.replication is not None:
            pipe.execute_command("WAIT", self.replication.replicas, self.replication.timeout_ms)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as error:  # noqa: BLE001 - handed to every waiting caller
            for item in batch:
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
        for item, reply in zip(batch, replies, strict=True):
            if item.future.done():
                continue  # the caller was cancelled
            if isinstance(reply, NoScriptError):
                # The server forgot the script (restart, SCRIPT FLUSH): load it and retry.
                await self._retry(item)
            elif isinstance(reply, Exception):
                item.future.set_exception(reply)
            elif item.writes and refusal is not None:
                item.future.set_exception(refusal)
            else:
                item.future.set_result(reply)

    async def _retry(self, item: Pending) -> None:
        try:
            result = await item.script(keys=item.keys, args=item.args)
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
