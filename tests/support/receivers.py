"""Real webhook receivers: small HTTP/1.1 servers on free loopback ports.

Each ``Receiver`` runs its own event loop in a thread (so sync tests, the CLI and a
worker in another process can all reach it), records every request it gets, and answers
as its ``behaviour`` says: a status, headers, a delay, or silence (a receiver that hangs
until the client gives up). Behaviours for the faulty receivers of the tests are below.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import orjson

HOST = "127.0.0.1"
HEAD_BYTES_MAX = 64 * 1024


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes
    at: float  # time.time() when the body was read
    nth: int  # 1-based, per receiver

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_seconds: float = 0.0
    hang: bool = False  # never answer (the client times out)
    endless: bool = False  # announce far more body than it sends, then stall


Behaviour = Callable[[Received], Reply]


def always(status: int = 200, **headers: str) -> Behaviour:
    return lambda _: Reply(status, {k.replace("_", "-"): v for k, v in headers.items()})


def failing_first(n: int, status: int = 500) -> Behaviour:
    """Fails the first ``n`` requests for each webhook-id, then answers 200."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def behave(request: Received) -> Reply:
        with lock:
            seen[request.id] = count = seen.get(request.id, 0) + 1
        return Reply(status) if count <= n else Reply(200)

    return behave


class Receiver:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or always(200)
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._hanging: set[asyncio.StreamWriter] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._serve, name="receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the receiver did not start")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, HOST, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def close(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shut() -> None:
            server.close()
            for writer in list(self._connections):
                writer.close()  # a handler waiting for a request then ends on its own
            if self._tasks:
                _, stuck = await asyncio.wait(list(self._tasks), timeout=2)
                for task in stuck:
                    task.cancel()
                await asyncio.gather(*stuck, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)

        asyncio.run_coroutine_threadsafe(shut(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it got ------------------------------------------------------------------------

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def ids(self) -> list[str]:
        return [r.id for r in self.received()]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(got := self.received()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} of {count} requests after {timeout}s")
            time.sleep(0.01)
        return got

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                with self._lock:
                    nth = len(self.requests) + 1
                    received = Received(request_line.split(" ")[1], headers, body, time.time(), nth)
                    self.requests.append(received)
                reply = self.behaviour(received)
                if reply.hang:
                    self._hanging.add(writer)
                    await reader.read()  # until the client hangs up
                    return
                if reply.delay_seconds:
                    await asyncio.sleep(reply.delay_seconds)
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                length = len(reply.body) * (1_000 if reply.endless else 1)
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\ncontent-length: {length}\r\n{extra}\r\n".encode()
                    + reply.body
                )
                await writer.drain()
                if reply.endless:
                    self._hanging.add(writer)
                    await reader.read()  # the rest never comes; until the client hangs up
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._hanging.discard(writer)
            self._connections.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
