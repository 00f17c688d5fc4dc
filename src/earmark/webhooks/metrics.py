"""Prometheus metrics of the webhook worker, on a registry the caller owns (the API's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
LAG_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.deliveries = Counter(
            "earmark_webhook_deliveries",
            "Webhook messages finished, by endpoint and outcome (delivered, failed: the "
            "schedule ran out or the endpoint is gone)",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "earmark_webhook_attempts",
            "Webhook delivery attempts by endpoint and outcome (delivered, failed, timeout, "
            "throttled, gone, refused)",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "earmark_webhook_attempt_duration_seconds",
            "How long webhook attempts took, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.lag = Histogram(
            "earmark_webhook_delivery_lag_seconds",
            "From the ledger row to its webhook's successful delivery",
            buckets=LAG_BUCKETS_SECONDS,
            registry=registry,
        )
        self.coalesced = Counter(
            "earmark_webhook_coalesced",
            "stock.changed messages replaced by a newer state before they were sent",
            registry=registry,
        )
        self.oldest_undelivered = Gauge(
            "earmark_webhook_oldest_undelivered_seconds",
            "Age of the oldest pending webhook message of an enabled endpoint, from its "
            "ledger row (0: none pending)",
            registry=registry,
        )
        self.undelivered = Gauge(
            "earmark_webhook_undelivered_messages",
            "Pending webhook messages of enabled endpoints",
            registry=registry,
        )
        self.dispatch_behind = Gauge(
            "earmark_webhook_dispatch_behind_events",
            "Ledger rows the webhook dispatcher has not read yet",
            registry=registry,
        )
