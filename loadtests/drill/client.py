"""A small blocking HTTP client of earmark's v1 API, for seeding and checking.

Standard library only, so it works both in a plain process (``run_local``) and inside
Locust's gevent-patched one (the checks at test stop). The shoppers themselves use
Locust's ``FastHttpUser`` client, whose latencies go into the report.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

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


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def idempotency_key(kind: str) -> str:
    """Unique per request: a retry of the same request would reuse it, we never retry."""
    return f"drill-{kind}-{uuid.uuid4().hex}"


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
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or None). Raises ApiError only when nothing answered."""
        data = None if body is None else json.dumps(body).encode()
        sent = {"Accept": "application/json", **auth_headers(self.api_key), **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _json(error.read())
        except (urllib.error.URLError, OSError) as error:
            raise ApiError(f"{method} {self.base_url}{path}: {error}") from error

    def expect(self, status_wanted: int, method: str, path: str, body: Any = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key("seed")} if method == "POST" else None
        status, payload = self.request(method, path, body, headers)
        if status != status_wanted:
            detail = payload.get("detail") if isinstance(payload, dict) else payload
            raise ApiError(f"{method} {path} answered {status}: {detail}", status, payload)
        return payload

    def levels(self, skus: Sequence[str], location: str) -> list[Level]:
        """GET /v1/availability, in chunks of the API's bound."""
        found: list[Level] = []
        for start in range(0, len(skus), SKUS_PER_READ_MAX):
            query = [("sku", sku) for sku in skus[start : start + SKUS_PER_READ_MAX]]
            query.append(("location", location))
            path = "/v1/availability?" + urllib.parse.urlencode(query)
            payload = self.expect(200, "GET", path)
            found += [Level.from_json(item) for item in payload["items"]]
        return found

    def receive(self, sku: str, qty: int, location: str, reference: str) -> Level:
        body = {"qty": qty, "location": location, "reference": reference}
        path = f"/v1/skus/{urllib.parse.quote(sku)}/receipts"
        return Level.from_json(self.expect(200, "POST", path, body))

    def readiness(self) -> dict[str, Any]:
        """The checks /readyz reports, whether it answers 200 or 503."""
        status, payload = self.request("GET", "/readyz")
        if not isinstance(payload, dict) or "checks" not in payload:
            raise ApiError(f"/readyz answered {status} without checks", status, payload)
        checks: dict[str, Any] = payload["checks"]
        return checks

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz")[0] == 200
        except ApiError:
            return False


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")[:200]


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
