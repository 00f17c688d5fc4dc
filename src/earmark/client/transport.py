"""``Client`` and ``AsyncClient``: send the calls of ``ClientOps`` over one pooled httpx
client, with timeouts, safe retries and problems raised as the library's exceptions.

Retries: a call is retried only when repeating it cannot apply it twice (a read, a
DELETE, or a write with its ``Idempotency-Key``, the same on every attempt), on a
transport error or a 429/502/503/504, at most ``Retry.attempts_max`` times. The pause is
exponential with full jitter, and at least what ``Retry-After`` asks (up to
``Retry.retry_after_max_seconds``; a longer ask is not waited for: the error is raised).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from earmark.client.call import AsyncSender, Call, SyncSender
from earmark.client.ops import ClientOps
from earmark.errors import ERRORS, EarmarkError, UnexpectedResponse

T = TypeVar("T")

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code"})
TIMEOUT_SECONDS_DEFAULT = 10.0


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how patiently a call is repeated (see the module docstring)."""

    attempts_max: int = 4
    backoff_base_seconds: float = 0.05
    backoff_max_seconds: float = 2.0
    retry_after_max_seconds: float = 30.0
    jitter: Callable[[], float] = field(default=random.random)

    def pause(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None: do not retry."""
        if attempt >= self.attempts_max:
            return None
        backoff = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0 ** (attempt - 1))
        pause = backoff * self.jitter()
        asked = retry_after(response)
        if asked is not None:
            if asked > self.retry_after_max_seconds:
                return None
            pause = max(pause, asked)
        return pause


NO_RETRY = Retry(attempts_max=1)


def retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: earmark sends seconds; fall back to the backoff


def error_of(response: httpx.Response) -> EarmarkError:
    """The library's exception for a problem response (RFC 9457, ``code`` member)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return UnexpectedResponse(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} without a problem body",
            status=response.status_code,
        )
    code = body["code"]
    details = {k: v for k, v in body.items() if k not in PROBLEM_MEMBERS}
    message = str(body.get("detail") or body.get("title") or code)
    cls = ERRORS.get(code)
    if cls is None:
        return UnexpectedResponse(
            f"{message} (code {code!r}, unknown to this client)",
            status=response.status_code,
            code=code,
        )
    return cls.from_problem(message, details)


class _Base(ClientOps):
    def __init__(self, api_key: str | None, retry: Retry) -> None:
        self.retry = retry
        self._headers = {"accept": "application/json"}
        if api_key is not None:
            self._headers["authorization"] = f"Bearer {api_key}"

    def _request(self, client: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        headers = dict(self._headers)
        if call.write:
            headers["idempotency-key"] = call.idempotency_key or f"client-{uuid.uuid4().hex}"
        return client.build_request(
            call.method, call.path, json=call.json, params=call.params, headers=headers
        )

    def _answer(self, call: Call[T], response: httpx.Response) -> T:
        if response.is_success:
            return call.parse(response)
        raise error_of(response)

    def _pause(
        self, call: Call[Any], attempt: int, response: httpx.Response | None
    ) -> float | None:
        if not call.retryable:
            return None
        if response is not None and response.status_code not in RETRIED_STATUSES:
            return None
        return self.retry.pause(attempt, response)


class Client(_Base, SyncSender):
    """The sidecar over HTTP, blocking: ``Engine``'s calls, answers and exceptions."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS_DEFAULT,
        retry: Retry = Retry(),
        limits: httpx.Limits | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(api_key, retry)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_seconds,
            limits=limits or httpx.Limits(),
            transport=transport,
        )

    def send(self, call: Call[T]) -> T:
        request = self._request(self._http, call)  # one key for every attempt
        attempt = 1
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                pause = self._pause(call, attempt, None)
                if pause is None:
                    raise UnexpectedResponse(f"{call.method} {call.path}: {error}") from error
            else:
                pause = self._pause(call, attempt, response)
                if pause is None:
                    return self._answer(call, response)
                response.close()
            self._sleep(pause)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base, AsyncSender):
    """The sidecar over HTTP, for asyncio: ``AsyncEngine``'s calls, answers, exceptions."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS_DEFAULT,
        retry: Retry = Retry(),
        limits: httpx.Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        super().__init__(api_key, retry)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_seconds,
            limits=limits or httpx.Limits(),
            transport=transport,
        )

    async def send(self, call: Call[T]) -> T:
        request = self._request(self._http, call)
        attempt = 1
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                pause = self._pause(call, attempt, None)
                if pause is None:
                    raise UnexpectedResponse(f"{call.method} {call.path}: {error}") from error
            else:
                pause = self._pause(call, attempt, response)
                if pause is None:
                    return self._answer(call, response)
                await response.aclose()
            await self._sleep(pause)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
