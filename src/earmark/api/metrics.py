"""Prometheus metrics, one registry per app (no import-time globals, tests stay isolated).

Request latency is observed by a plain ASGI middleware (no BaseHTTPMiddleware: it costs
a task per request) and labelled with the route's template, never the raw path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from earmark.errors import EarmarkError
from earmark.models import DropFigures, SweepReport
from earmark.webhooks.metrics import WebhookMetrics

LATENCY_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
UNMATCHED = "unmatched"
# responses.REPLAYED_HEADER as ASGI sends it (lower case; responses imports this module's
# users, so the name is repeated here and a test checks the two agree).
REPLAYED = b"idempotent-replayed"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.reservations = Counter(
            "earmark_reservations",
            "Reservation operations by operation and outcome ('ok' or the error code)",
            ["operation", "outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "earmark_insufficient_stock_refusals",
            "Reservations refused for insufficient stock",
            registry=registry,
        )
        self.expiries = Counter(
            "earmark_expired_holds",
            "Held reservations expired by the in-process sweeper",
            registry=registry,
        )
        self.sweeps = Counter(
            "earmark_sweeps", "Sweeper passes by result", ["result"], registry=registry
        )
        self.flusher_lag = Gauge(
            "earmark_flusher_lag_seconds",
            "How far the durable record lags behind Redis (set by the lag source)",
            registry=registry,
        )
        self.discrepancies_overdue = Gauge(
            "earmark_discrepancies_overdue",
            "Discrepancy cases past their due time and not resolved",
            registry=registry,
        )
        self.latency = Histogram(
            "earmark_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.requests = Counter(
            "earmark_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.webhooks = WebhookMetrics(registry)  # the in-process webhook worker's
        self._up_and_writes(registry)
        self._drops(registry)
        self._outcomes: dict[tuple[str, str], Counter] = {}

    def _up_and_writes(self, registry: CollectorRegistry) -> None:
        """What an alert needs: is each store up, is the store fenced, are the sweeper and
        the writes healthy. The gauges are set on each scrape (``/metrics``)."""
        self.redis_up = Gauge(
            "earmark_redis_up", "1 when Redis answered the last scrape's PING", registry=registry
        )
        self.database_up = Gauge(
            "earmark_database_up",
            "1 when the durable record answered the last scrape, else 0; NaN: no record",
            registry=registry,
        )
        self.fenced = Gauge(
            "earmark_fenced_partitions",
            "Partitions fenced (no writes until an operator lifts the fence); NaN: Redis down",
            registry=registry,
        )
        self.events_waiting = Gauge(
            "earmark_durable_events_waiting",
            "Events in Redis not yet in the durable record; NaN while Redis is down",
            registry=registry,
        )
        self.writes = Counter(
            "earmark_writes",
            "Successful POSTs by route template: 'new' writes or idempotent 'replayed' answers",
            ["route", "kind"],
            registry=registry,
        )

    def _drops(self, registry: CollectorRegistry) -> None:
        """Per-drop gauges, set on each scrape from ``Engine.drop_figures``. Cardinality
        stays bounded: drops are few (at most ``limits.DROPS_SCRAPED_MAX``), and the
        per-SKU series exist only for the SKUs of a drop open now; every series is
        cleared before a scrape sets them, so a closed drop's SKUs leave the output."""
        self.drop_open = Gauge(
            "earmark_drop_open", "1 while the drop is open (Redis clock)", ["drop"],
            registry=registry,
        )  # fmt: skip
        self.drop_sold = Gauge(
            "earmark_drop_sold", "Committed units of the drop's SKUs", ["drop"], registry=registry
        )
        self.drop_held = Gauge(
            "earmark_drop_held", "Reserved (held) units of the drop's SKUs", ["drop"],
            registry=registry,
        )  # fmt: skip
        self.drop_sku_sold = Gauge(
            "earmark_drop_sku_sold", "Committed units of one SKU of an open drop",
            ["drop", "sku"], registry=registry,
        )  # fmt: skip
        self.drop_sku_held = Gauge(
            "earmark_drop_sku_held", "Reserved units of one SKU of an open drop",
            ["drop", "sku"], registry=registry,
        )  # fmt: skip

    def set_drops(self, drops: list[DropFigures] | None) -> None:
        """The drops as read now; None (Redis did not answer): no drop series at all
        rather than stale ones."""
        for gauge in (
            self.drop_open, self.drop_sold, self.drop_held, self.drop_sku_sold, self.drop_sku_held
        ):  # fmt: skip
            gauge.clear()
        for drop in drops or ():
            self.drop_open.labels(drop.id).set(1 if drop.open else 0)
            self.drop_sold.labels(drop.id).set(drop.sold)
            self.drop_held.labels(drop.id).set(drop.held)
            if drop.open:
                for sku in drop.skus:
                    self.drop_sku_sold.labels(drop.id, sku.sku).set(sku.sold)
                    self.drop_sku_held.labels(drop.id, sku.sku).set(sku.held)

    def sweep_failed(self) -> None:
        self.sweeps.labels("failed").inc()

    @contextmanager
    def reservation(self, operation: str) -> Iterator[None]:
        """Counts one reservation operation by its outcome; errors propagate unchanged."""
        try:
            yield
        except EarmarkError as error:
            self._count(operation, error.code)
            if error.code == "insufficient_stock":
                self.refusals.inc()
            raise
        self._count(operation, "ok")

    def _count(self, operation: str, outcome: str) -> None:
        child = self._outcomes.get((operation, outcome))
        if child is None:
            child = self._outcomes[(operation, outcome)] = self.reservations.labels(
                operation, outcome
            )
        child.inc()

    def swept(self, report: SweepReport) -> None:
        self.sweeps.labels("ok").inc()
        self.expiries.inc(report.expired)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Observes every HTTP request's duration under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str], tuple[Histogram, dict[int, Counter]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        replayed = False

        async def send_status(message: Message) -> None:
            nonlocal status, replayed
            if message["type"] == "http.response.start":
                status = message["status"]
                if scope["method"] == "POST":
                    replayed = any(n == REPLAYED for n, _ in message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self._observe(method, template, status, time.perf_counter() - started)
            if method == "POST" and status < 400:
                self.metrics.writes.labels(template, "replayed" if replayed else "new").inc()

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route))
        if children is None:
            latency = self.metrics.latency.labels(method, route)
            children = self._children[(method, route)] = (latency, {})
        latency, by_status = children
        latency.observe(seconds)
        counter = by_status.get(status)
        if counter is None:
            counter = by_status[status] = self.metrics.requests.labels(method, route, str(status))
        counter.inc()
