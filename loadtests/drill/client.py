"""The drill's seeding and checking calls: ``earmark.client.Client`` (httpx), the client
a checkout service uses, without its retries: the drill reports what the API answered.

It works both in a plain process (``run_local``) and inside Locust's gevent-patched one
(the checks at test stop). The shoppers use their own ``Client`` each and report their
calls to Locust (``locustfile.Shopper``, ``timed.Timed``).
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from earmark.client import NO_RETRY, Client
from earmark.errors import EarmarkError, NotReady, UnexpectedResponse, WaitlistEntryNotFound
from earmark.models import WaitlistEntry
from loadtests.drill.drop import WAITLIST_EVENTS, DropRules, DropState, Entry, Event
from loadtests.drill.verdict import DrillError, Level

TIMEOUT_SECONDS_DEFAULT = 10.0
SKUS_PER_READ_MAX = 1_000  # limits.SKUS_PER_READ_MAX
RECEIPT_QTY_MAX = 1_000_000  # limits.QTY_MAX
RESERVATION_PAGE_MAX = 100  # limits.RESERVATION_PAGE_MAX
LEDGER_PAGE_MAX = 1_000  # store.pages.PAGE_LIMIT_MAX
PAGES_READ_MAX = 1_000  # pages of one listing the drill follows, at most
OPENS_EARLY_SECONDS = 1.0  # the drill's drop opens this long before it is created
SWEEPS_OK = re.compile(r'^earmark_sweeps_total\{result="ok"\} ([0-9.e+]+)$', re.M)


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
            payload = self.client.readiness().model_dump()
        except NotReady as error:
            payload = error.details
        except EarmarkError as error:
            raise api_error("GET /readyz", error) from error
        if not isinstance(payload, dict) or not isinstance(payload.get("checks"), dict):
            raise ApiError("/readyz answered without checks", body=payload)
        checks: dict[str, Any] = payload["checks"]
        return checks

    # -- the drop mode (drop.DropApi) -------------------------------------------------

    def create_drop(self, rules: DropRules, skus: Sequence[str], hold_ttl_seconds: float) -> None:
        """Opens the drill's drop now (``opens_at`` a second ago: no clock skew keeps it
        shut), with the limit, the waitlist and the offer TTL of ``rules``."""
        opens_at = datetime.now(UTC) - timedelta(seconds=OPENS_EARLY_SECONDS)
        try:
            self.client.create_drop(
                rules.drop_id,
                skus,
                opens_at=opens_at,
                per_customer_limit=rules.limit,
                hold_ttl_seconds=hold_ttl_seconds,
                waitlist=True,
                offer_ttl_seconds=rules.offer_ttl_seconds,
                idempotency_key=idempotency_key("drop"),
            )
        except EarmarkError as error:
            raise api_error("POST /v1/drops", error) from error

    def drop_state(self, drop_id: str) -> DropState:
        try:
            drop = self.client.get_drop(drop_id)
        except EarmarkError as error:
            raise api_error(f"GET /v1/drops/{drop_id}", error) from error
        created = drop.created_at or drop.opens_at
        return DropState(
            opens_at_ms=epoch_ms(drop.opens_at),
            created_at_ms=epoch_ms(created),
            waiting=drop.waiting,
            offered=drop.offered,
            customers_at_limit=drop.customers_at_limit,
            opening_seed=drop.opening_seed,
        )

    def waitlist_entry(self, drop_id: str, customer: str, sku: str) -> Entry | None:
        try:
            entry = self.client.get_waitlist_entry(drop_id, customer, sku=sku)
        except WaitlistEntryNotFound:
            return None
        except EarmarkError as error:
            raise api_error(f"GET /v1/drops/{drop_id}/waitlist/{customer}", error) from error
        return entry_of(entry)

    def decline(self, drop_id: str, customer: str, sku: str) -> Entry:
        try:
            entry = self.client.decline_waitlist(
                drop_id, customer, sku=sku, idempotency_key=idempotency_key("close")
            )
        except EarmarkError as error:
            what = f"POST /v1/drops/{drop_id}/waitlist/{customer}/decline"
            raise api_error(what, error) from error
        return entry_of(entry)

    def held_units(self, customer: str, sku: str, location: str) -> int:
        """``GET /v1/reservations?sku=&customer=`` (held), every page."""
        units, cursor = 0, None
        for _ in range(PAGES_READ_MAX):
            try:
                page = self.client.held_reservations(
                    sku=sku,
                    location=location,
                    customer=customer,
                    cursor=cursor,
                    limit=RESERVATION_PAGE_MAX,
                )
            except EarmarkError as error:
                raise api_error("GET /v1/reservations", error) from error
            for reservation in page.items:
                units += sum(
                    line.qty for line in reservation.lines
                    if line.sku == sku and line.location == location
                )  # fmt: skip
            cursor = page.next_cursor
            if cursor is None:
                return units
        raise ApiError(f"GET /v1/reservations: more than {PAGES_READ_MAX} pages")

    def drop_events(self, sku: str, since_ms: int) -> list[Event]:
        """``GET /v1/ledger?sku=&type=...&since=``, every page."""
        since = datetime.fromtimestamp(since_ms / 1000, UTC)
        events: list[Event] = []
        cursor = None
        for _ in range(PAGES_READ_MAX):
            try:
                page = self.client.ledger(
                    sku=sku, types=WAITLIST_EVENTS, since=since, cursor=cursor,
                    limit=LEDGER_PAGE_MAX,
                )  # fmt: skip
            except EarmarkError as error:
                raise api_error("GET /v1/ledger", error) from error
            for entry in page.items:
                item = entry.model_dump(mode="json")
                events.append(Event.from_json(item, epoch_ms(entry.occurred_at)))
            cursor = page.next_cursor
            if cursor is None:
                return events
        raise ApiError(f"GET /v1/ledger: more than {PAGES_READ_MAX} pages")

    def sweeps(self) -> int | None:
        """Passes of the server's sweeper that succeeded, from ``/metrics``."""
        try:
            text = self.client.metrics()
        except EarmarkError as error:
            raise api_error("GET /metrics", error) from error
        found = SWEEPS_OK.search(text)
        return None if found is None else int(float(found[1]))

    def ready(self) -> bool:
        try:
            self.client.readiness()
        except EarmarkError:
            return False
        return True


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def entry_of(entry: WaitlistEntry) -> Entry:
    offer = entry.offer
    return Entry(
        customer=entry.customer,
        sku=entry.sku,
        qty=entry.qty,
        status=entry.status,
        position=entry.position,
        offer_expires_ms=None if offer is None else epoch_ms(offer.expires_at),
    )


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
