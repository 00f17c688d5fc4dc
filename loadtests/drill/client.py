"""The drill's seeding and checking calls: ``earmark.client.Client`` (httpx), the client
a checkout service uses, without its retries: the drill reports what the API answered.

It works both in a plain process (``run_local``) and inside Locust's gevent-patched one
(the checks at test stop). The shoppers use their own ``Client`` each and report their
calls to Locust (``locustfile.Shopper``, ``timed.Timed``).
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

from earmark.client import NO_RETRY, Client
from earmark.errors import EarmarkError, NotReady, UnexpectedResponse
from loadtests.drill.verdict import DrillError, Level

TIMEOUT_SECONDS_DEFAULT = 10.0
SKUS_PER_READ_MAX = 1_000  # limits.SKUS_PER_READ_MAX
RECEIPT_QTY_MAX = 1_000_000  # limits.QTY_MAX


class ApiError(DrillError):
    """The API answered with an error status, or not at all (``status`` 0)."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def idempotency_key(kind: str) -> str:
    """Unique per request: a retry of the same request would reuse it, we never retry."""
    return f"drill-{kind}-{uuid.uuid4().hex}"


def api_error(what: str, error: EarmarkError) -> ApiError:
    """The drill's error for a call that failed: the status the API answered (0: none)."""
    if isinstance(error, UnexpectedResponse):
        status = int(error.details.get("status") or 0)
    else:
        status = error.http_status
    return ApiError(f"{what} answered {status or 'nothing'} ({error.code}): {error}", status)


class HttpApi:
    """``base_url`` is an ``http(s)://host[:port]`` root; ``api_key`` a bearer token."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS_DEFAULT,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in {"http", "https"}:
            raise ValueError(f"{base_url!r}: the host must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.client = Client(
            self.base_url, api_key=api_key, timeout_seconds=timeout_seconds, retry=NO_RETRY
        )

    def close(self) -> None:
        self.client.close()

    def levels(self, skus: Sequence[str], location: str) -> list[Level]:
        """GET /v1/availability, in chunks of the API's bound."""
        found: list[Level] = []
        for start in range(0, len(skus), SKUS_PER_READ_MAX):
            chunk = [(sku, location) for sku in skus[start : start + SKUS_PER_READ_MAX]]
            try:
                answered = self.client.availability(chunk)
            except EarmarkError as error:
                raise api_error("GET /v1/availability", error) from error
            found += [Level.from_json(level.model_dump()) for level in answered]
        return found

    def receive(self, sku: str, qty: int, location: str, reference: str) -> Level:
        try:
            level = self.client.receive(
                sku,
                qty,
                location=location,
                reference=reference,
                idempotency_key=idempotency_key("seed"),
            )
        except EarmarkError as error:
            raise api_error(f"POST /v1/skus/{sku}/receipts", error) from error
        return Level.from_json(level.model_dump())

    def readiness(self) -> dict[str, Any]:
        """The checks /readyz reports, whether it answers 200 or 503."""
        try:
            payload = self.client.readiness()
        except NotReady as error:
            payload = error.details
        except EarmarkError as error:
            raise api_error("GET /readyz", error) from error
        if not isinstance(payload, dict) or not isinstance(payload.get("checks"), dict):
            raise ApiError("/readyz answered without checks", body=payload)
        checks: dict[str, Any] = payload["checks"]
        return checks

    def ready(self) -> bool:
        try:
            self.client.readiness()
        except EarmarkError:
            return False
        return True


def seed(api: HttpApi, skus: Sequence[str], stock: int, location: str) -> list[Level]:
    """Receives ``stock`` units of every SKU (in receipts of at most the API's bound)."""
    levels = []
    for sku in skus:
        left = stock
        while left > 0:
            qty = min(left, RECEIPT_QTY_MAX)
            levels.append(api.receive(sku, qty, location, reference="launch-drill seed"))
            left -= qty
    return levels
