"""uvicorn's httptools protocol with a bound on the request head and on the time to send it.

httptools accumulates a header of any size (a 64 MB header was accepted and answered
200), and uvicorn starts no timer before a request's headers are complete, so a client
sending one byte a second holds its connection for ever. ``GuardedHttpToolsProtocol``:

- counts the bytes received while the request line and headers are incomplete and, past
  ``max_head_bytes``, answers 431 ``headers_too_large`` and closes the connection;
- from the connection (and from the first byte of each next request on a kept-alive one)
  gives the client ``head_timeout_seconds`` to complete the headers, then answers 408
  ``request_timeout`` (or closes silently when nothing was sent) and closes.

The body is bounded and timed by ``earmark.api.guard.RequestGuard``. ``protocol_for``
binds the settings; the result pickles (a ``functools.partial`` of this module-level
class), so several uvicorn workers can share it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from earmark.api.problems import error_response
from earmark.errors import HeadersTooLarge, RequestTimeout
from earmark.settings import Settings


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        *args: Any,
        max_head_bytes: int,
        head_timeout_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.head_timeout_seconds = head_timeout_seconds
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # These bytes did not complete the head: count them (a chunk that did complete
            # it ran on_headers_complete while being fed and is not counted).
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                detail = (
                    f"the request line and headers are larger than {self.max_head_bytes} "
                    "bytes (EARMARK_MAX_HEADER_BYTES)"
                )
                self._refuse(HeadersTooLarge(detail, limit=self.max_head_bytes))

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    # -- helpers -----------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0 and self.scope is None:
            self.transport.close()  # a connection that never sent anything
            return
        detail = (
            f"the request headers did not arrive within {self.head_timeout_seconds:g} s "
            "(EARMARK_REQUEST_TIMEOUT_SECONDS)"
        )
        self._refuse(RequestTimeout(detail))

    def _refuse(self, error: HeadersTooLarge | RequestTimeout) -> None:
        """Writes the problem+json response by hand (no ASGI cycle exists yet), then
        closes the connection so nothing more of the request is read."""
        response = error_response(error)
        head = [f"HTTP/1.1 {response.status_code} {error.title}\r\n".encode("latin-1")]
        for name, value in response.raw_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + bytes(response.body))
        self.transport.close()
        self._in_head = False
        self._cancel_head_timer()


def protocol_for(settings: Settings) -> Any:
    """The protocol class uvicorn instantiates, with the settings' bounds bound."""
    return functools.partial(
        GuardedHttpToolsProtocol,
        max_head_bytes=settings.max_header_bytes,
        head_timeout_seconds=settings.request_timeout_seconds,
    )
