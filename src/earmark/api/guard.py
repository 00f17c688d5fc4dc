"""What every request passes before the app sees it: a concurrency bound, authentication
and a bounded, timed read of the body. A pure ASGI middleware (``RequestGuard``).

FastAPI reads a request's whole body before its dependencies run, so a route's
dependency cannot refuse an unauthenticated 200 MB body before it is in memory (it took
the server from 67 MB to 667 MB RSS before answering 401). Here, in front of the app:

1. ``/v1`` requests beyond ``max_concurrent_requests`` in flight get 503 ``overloaded``
   with ``Retry-After`` at once (liveness, readiness, metrics and the docs are exempt:
   they must answer when the API is busy);
2. ``/v1`` requests are authenticated from the Authorization header before the first
   ``receive()``: a 401 never reads the body (the principal then travels in the scope,
   where ``earmark.api.deps`` checks its scope per route);
3. a ``Content-Length`` above ``max_body_bytes`` is 413 ``body_too_large`` unread (on
   every path; after authentication on ``/v1``); a chunked body is counted as it arrives
   and refused once it passes the bound;
4. the body must arrive within ``request_timeout_seconds`` (408 ``request_timeout``),
   so a client sending a byte a second cannot hold a slot.

The body is then handed to the app in one message. A response sent before the body was
read says ``Connection: close``, so the server stops reading the rest instead of
draining it. Header size and the time to send headers are bounded by the protocol
(``earmark.api.protocol``), before any ASGI code runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from earmark.api.auth import Authenticator
from earmark.api.problems import error_response
from earmark.errors import BodyTooLarge, EarmarkError, Overloaded, RequestTimeout, StoreUnavailable

log = logging.getLogger("earmark.api")

# The scope entry that carries the authenticated principal to the routes.
PRINCIPAL = "earmark.principal"
API_PREFIX = "/v1"
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds a guard enforces (from ``Settings``)."""

    max_body_bytes: int
    max_concurrent_requests: int
    request_timeout_seconds: float


class RequestGuard:
    """See the module docstring. ``state`` is the app's state: the authenticator is set
    there by the lifespan, after this middleware was built."""

    def __init__(self, app: ASGIApp, state: Any, limits: Limits, hot: Any = None) -> None:
        self.app = app
        self.state = state
        self.limits = limits
        self.in_flight = 0
        # earmark.api.hot.HotRoutes: the hot routes served in one pass (None: all routed)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            # Health, metrics, docs: no auth, no concurrency bound; none reads a body.
            if self.declared_too_large(scope):
                await self.refuse(scope, send, self.too_large())
                return
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limits.max_concurrent_requests:
            busy = Overloaded(
                f"more than {self.limits.max_concurrent_requests} requests in flight; retry"
            )
            await self.refuse(scope, send, busy, {"Retry-After": str(RETRY_AFTER_SECONDS)})
            return
        self.in_flight += 1
        try:
            await self.guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        authenticator: Authenticator = self.state.authenticator
        try:
            scope[PRINCIPAL] = await authenticator.authenticate(bearer_token(scope))
        except EarmarkError as refused:
            await self.refuse(scope, send, refused)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            log.error("%s: the API keys could not be read: %s", scope["path"], error)
            down = StoreUnavailable("the store (Redis) did not answer; retry later")
            await self.refuse(scope, send, down)
            return
        if self.declared_too_large(scope):
            await self.refuse(scope, send, self.too_large())
            return
        try:
            async with asyncio.timeout(self.limits.request_timeout_seconds):
                body = await self.read_body(receive)
        except TimeoutError:
            late = RequestTimeout(
                f"the request body did not arrive within {self.limits.request_timeout_seconds:g} s"
            )
            await self.refuse(scope, send, late)
            return
        except BodyTooLarge as refused:
            await self.refuse(scope, send, refused)
            return
        if body is None:
            return  # the client went away
        if (
            self.hot is not None
            and self.hot.takes(scope)
            and await self.hot.serve(scope, body, send)
        ):
            return
        await self.app(scope, replay(body, receive), send)

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, counted as it arrives; None when the client disconnected."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise self.too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def declared_too_large(self, scope: Scope) -> bool:
        declared = content_length(scope)
        return declared is not None and declared > self.limits.max_body_bytes

    def too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"the request body is larger than {self.limits.max_body_bytes} bytes "
            "(EARMARK_MAX_BODY_BYTES)",
            limit=self.limits.max_body_bytes,
        )

    @staticmethod
    async def refuse(
        scope: Scope, send: Send, error: EarmarkError, headers: dict[str, str] | None = None
    ) -> None:
        """The problem for ``error``, closing the connection: its body may be unread."""
        response = error_response(error, scope["path"])
        for name, value in {**(headers or {}), "Connection": "close"}.items():
            response.headers[name] = value
        await response(scope, _no_receive, send)


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then passes through (so the
    app still learns of a disconnect)."""
    sent = False

    async def receive_body() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_body


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
