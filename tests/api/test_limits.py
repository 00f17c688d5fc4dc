"""Hostile clients against a real ``earmark serve`` (uvicorn, httptools, the guard), over
raw sockets, with the server's resident memory read from /proc while they push.

Each figure the tests measure (RSS before and at the peak, how a request ended) is
printed; run with ``-s`` to see them. Bounds: an unauthenticated 200 MB body must not
raise the server's RSS by more than 20 MB.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from earmark import Engine, EngineConfig, apikeys
from earmark.durable import service as durable
from tests.support.backends import fresh_prefix
from tests.support.serve import Serve
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis_server

MIB = 1024 * 1024
SCOPES = frozenset(apikeys.SCOPES)
HUGE = 200 * MIB
RSS_RISE_MAX = 20 * MIB
CONCURRENT_MAX = 3
TIMEOUT_SECONDS = 2  # EARMARK_REQUEST_TIMEOUT_SECONDS of the server under test
ANSWER_WITHIN_SECONDS = 30.0  # generous: only "it answered and closed", never a latency


@dataclass
class Guarded:
    server: Serve
    token: str

    @property
    def auth(self) -> bytes:
        return f"Authorization: Bearer {self.token}\r\n".encode()


@pytest.fixture(scope="module")
def guarded(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guarded]:
    """One server with an API key (auth required), small concurrency and timeout bounds."""
    prefix = fresh_prefix()
    tmp = tmp_path_factory.mktemp("limits")
    database_url = f"sqlite:///{tmp / 'earmark.db'}"
    token, _ = asyncio.run(durable.create_api_key(database_url, "hostile-test", SCOPES))
    with Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)) as engine:
        engine.receive("A", 10)
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_DATABASE_URL": database_url,
        "EARMARK_MAX_CONCURRENT_REQUESTS": str(CONCURRENT_MAX),
        "EARMARK_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "EARMARK_API_KEY_CACHE_SECONDS": "0",
    }
    server = Serve(Path(tmp), env)
    try:
        server.wait_ready()
        yield Guarded(server, token)
    finally:
        assert server.stopped_cleanly(), server.output()


@dataclass
class Peak:
    """Samples the server's RSS every few milliseconds while a block runs."""

    server: Serve
    before: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Peak:
        self.before = self.peak = self.server.rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_bytes())

    @property
    def rise(self) -> int:
        return self.peak - self.before

    def report(self, what: str) -> str:
        line = (
            f"{what}: RSS {self.before / MIB:.1f} MiB before, {self.peak / MIB:.1f} MiB at "
            f"the peak (+{self.rise / MIB:.1f} MiB)"
        )
        print(line)
        return line


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client got to send
    seconds: float

    def problem(self) -> dict[str, object]:
        assert self.headers.get("content-type") == "application/problem+json", self
        parsed: dict[str, object] = json.loads(self.body)
        return parsed


def push(
    port: int,
    head: bytes,
    body: Callable[[int], bytes | None] | None = None,
    *,
    pause: float = 0.0,
) -> Answer:
    """Sends ``head``, then the chunks ``body(i)`` returns (until None), reading as soon as
    the server answers; a server that answers and closes early ends the sending."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    pending, sent, i, received = bytearray(head), 0, 0, bytearray()
    body_started = False
    try:
        while time.monotonic() - started < ANSWER_WITHIN_SECONDS:
            if not pending and body is not None:
                chunk = body(i)
                i += 1
                if chunk is None:
                    body = None
                else:
                    pending += chunk
                    body_started = True
                    if pause:
                        time.sleep(pause)
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break  # the server closed: the answer is complete
                received += data
                continue
            if writable:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending.clear()
                    body = None
                    continue
                if body_started:
                    sent += n
                del pending[:n]
    finally:
        sock.close()
    return parse(bytes(received), sent, time.monotonic() - started)


def parse(raw: bytes, sent: int, seconds: float) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), raw[:200]
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(status, headers, body, sent, seconds)


def chunks_of(total: int, size: int = MIB) -> Callable[[int], bytes | None]:
    block = b"x" * size
    return lambda i: block if i * size < total else None


def adjustments_head(length: int, auth: bytes = b"") -> bytes:
    return (
        b"POST /v1/skus/X/adjustments HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n"
        b"Content-Type: application/json\r\n" + auth + f"Content-Length: {length}\r\n\r\n".encode()
    )


def test_an_unauthenticated_200mb_body_is_refused_before_it_is_read(guarded: Guarded) -> None:
    port = guarded.server.port
    with Peak(guarded.server) as peak:
        answer = push(port, adjustments_head(HUGE), chunks_of(HUGE))
    peak.report(f"one unauthenticated 200 MB body ({answer.sent / MIB:.0f} MiB sent)")
    assert answer.status == 401 and answer.problem()["code"] == "unauthorized"
    assert answer.headers["connection"] == "close"
    assert peak.rise <= RSS_RISE_MAX

    answers: list[Answer] = []
    with Peak(guarded.server) as four:
        floods = [
            threading.Thread(
                target=lambda: answers.append(push(port, adjustments_head(HUGE), chunks_of(HUGE)))
            )
            for _ in range(4)
        ]
        for flood in floods:
            flood.start()
        began = time.monotonic()
        alive = httpx.get(f"{guarded.server.url}/healthz", timeout=ANSWER_WITHIN_SECONDS)
        print(
            f"/healthz during four floods: {alive.status_code} in {time.monotonic() - began:.3f} s"
        )
        for flood in floods:
            flood.join()
    four.report("four unauthenticated 200 MB bodies at once")
    assert alive.status_code == 200
    assert [a.status for a in answers] == [401] * 4
    assert four.rise <= RSS_RISE_MAX
    assert_nothing_written(guarded)


def assert_nothing_written(guarded: Guarded) -> None:
    """The refused adjustments of SKU X wrote nothing: it still has no stock record."""
    headers = {"Authorization": f"Bearer {guarded.token}"}
    response = httpx.get(f"{guarded.server.url}/v1/skus/X", headers=headers, timeout=10)
    assert (response.status_code, response.json()["code"]) == (404, "sku_not_found")


def test_a_body_over_the_limit_is_413_before_it_is_read(guarded: Guarded) -> None:
    with Peak(guarded.server) as peak:
        answer = push(guarded.server.port, adjustments_head(HUGE, guarded.auth), chunks_of(HUGE))
    peak.report(
        f"an authenticated 200 MB body by Content-Length ({answer.sent / MIB:.0f} MiB sent)"
    )
    problem = answer.problem()
    assert (answer.status, problem["code"], problem["limit"]) == (413, "body_too_large", MIB)
    assert peak.rise <= RSS_RISE_MAX
    assert_nothing_written(guarded)


def test_a_chunked_body_is_counted_as_it_arrives(guarded: Guarded) -> None:
    head = (
        b"POST /v1/skus/X/adjustments HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n" + guarded.auth + b"\r\n"
    )
    block = b"%x\r\n" % MIB + b"x" * MIB + b"\r\n"
    with Peak(guarded.server) as peak:
        answer = push(guarded.server.port, head, lambda i: block if i < 200 else b"0\r\n\r\n")
    peak.report(f"an authenticated chunked 200 MB body ({answer.sent / MIB:.0f} MiB sent)")
    assert (answer.status, answer.problem()["code"]) == (413, "body_too_large")
    assert answer.sent < 50 * MIB  # refused once past the bound, not after reading it all
    assert peak.rise <= RSS_RISE_MAX
    assert_nothing_written(guarded)


def test_a_64mb_header_is_431(guarded: Guarded) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: "
    block = b"a" * MIB
    with Peak(guarded.server) as peak:
        answer = push(guarded.server.port, head, lambda i: block if i < 64 else b"\r\n\r\n")
    peak.report(f"a 64 MB header ({answer.sent / MIB:.1f} MiB sent)")
    assert (answer.status, answer.problem()["code"]) == (431, "headers_too_large")
    assert answer.sent < 8 * MIB
    assert peak.rise <= RSS_RISE_MAX


def test_a_client_sending_a_byte_at_a_time_cannot_hold_its_connection(guarded: Guarded) -> None:
    """Headers dripping in, then a body dripping in: each gets the request timeout (2 s
    here), then 408 and the connection closes."""
    head = adjustments_head(100, guarded.auth)
    slow_head = push(guarded.server.port, b"", lambda i: head[i : i + 1] or None, pause=0.25)
    print(f"headers at 4 bytes/s: {slow_head.status} after {slow_head.seconds:.1f} s")
    assert (slow_head.status, slow_head.problem()["code"]) == (408, "request_timeout")
    slow_body = push(guarded.server.port, head, lambda i: b"{" if i < 100 else None, pause=0.25)
    print(f"body at 4 bytes/s: {slow_body.status} after {slow_body.seconds:.1f} s")
    assert (slow_body.status, slow_body.problem()["code"]) == (408, "request_timeout")
    assert_nothing_written(guarded)


def test_past_the_concurrency_limit_it_is_503_with_retry_after(guarded: Guarded) -> None:
    """Requests holding a slot (here: bodies that never finish) fill the bound; the next
    /v1 request is 503 overloaded at once, liveness still answers, and once the slow
    ones time out the API serves again."""
    port = guarded.server.port
    holders = []
    for _ in range(CONCURRENT_MAX):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(adjustments_head(100, guarded.auth) + b"{")
        holders.append(sock)
    time.sleep(0.3)  # let the server take them in
    headers = {"Authorization": f"Bearer {guarded.token}"}
    busy = httpx.get(f"{guarded.server.url}/v1/skus/A", headers=headers, timeout=10)
    assert busy.status_code == 503, busy.text
    assert (busy.json()["code"], busy.headers["retry-after"]) == ("overloaded", "1")
    assert httpx.get(f"{guarded.server.url}/healthz", timeout=10).status_code == 200
    for sock in holders:
        sock.settimeout(ANSWER_WITHIN_SECONDS)
        assert b" 408 " in sock.recv(4096).split(b"\r\n", 1)[0]
        sock.close()
    served = httpx.get(f"{guarded.server.url}/v1/skus/A", headers=headers, timeout=10)
    assert served.status_code == 200


def test_an_unauthenticated_chunked_body_is_refused_before_it_is_read(guarded: Guarded) -> None:
    head = (
        b"POST /v1/reservations HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    block = b"%x\r\n" % MIB + b"x" * MIB + b"\r\n"
    with Peak(guarded.server) as peak:
        answer = push(guarded.server.port, head, lambda i: block if i < 200 else b"0\r\n\r\n")
    peak.report(f"an unauthenticated chunked 200 MB body ({answer.sent / MIB:.0f} MiB sent)")
    assert (answer.status, answer.problem()["code"]) == (401, "unauthorized")
    assert peak.rise <= RSS_RISE_MAX
