"""Coalesces the script calls of concurrent asyncio operations into pipelines.

Under load the Python client, not Redis, is the bottleneck: each call pays for a
connection check-out, a write and a read. Calls issued in the same event-loop turn
are sent as one non-transactional pipeline instead (each script stays atomic on
its own; order is kept). ``python -m loadtests.bench.engine`` measures the gain.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from earmark import limits


class CallCoalescer:
    """Queues script calls and sends each loop turn's calls in one pipeline."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: list[tuple[AsyncScript, list[str], list[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
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

    async def _send(
        self, batch: list[tuple[AsyncScript, list[str], list[Any], asyncio.Future[Any]]]
    ) -> None:
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as error:  # noqa: BLE001 - handed to every waiting caller
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (script, keys, args, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller was cancelled
            if isinstance(reply, NoScriptError):
                # The server forgot the script (restart, SCRIPT FLUSH): load it and retry.
                await self._retry(script, keys, args, future)
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _retry(
        self, script: AsyncScript, keys: list[str], args: list[Any], future: asyncio.Future[Any]
    ) -> None:
        try:
            result = await script(keys=keys, args=args)
        except Exception as error:  # noqa: BLE001 - handed to the waiting caller
            if not future.done():
                future.set_exception(error)
        else:
            if not future.done():
                future.set_result(result)
