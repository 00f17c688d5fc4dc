"""The webhook settings as one value (``from_settings`` reads the ``EARMARK_WEBHOOKS_*``
fields of the process settings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from earmark.webhooks.schedule import SVIX_SCHEDULE_SECONDS, parse_schedule

TIMEOUT_SECONDS_DEFAULT = 15.0
CONCURRENCY_DEFAULT = 16
PER_ENDPOINT_DEFAULT = 4
LEASE_SECONDS_DEFAULT = 60.0
POLL_SECONDS_DEFAULT = 0.05
# An idle worker's wait doubles from POLL_SECONDS_DEFAULT to this (earmark.webhooks.polling).
POLL_IDLE_SECONDS_MAX_DEFAULT = 0.5
SECRET_GRACE_SECONDS_DEFAULT = 24 * 60 * 60.0
DISABLE_AFTER_SECONDS_DEFAULT = 5 * 24 * 60 * 60.0
RETENTION_SECONDS_DEFAULT = 30 * 24 * 60 * 60.0
DISPATCH_BATCH_DEFAULT = 500
RESPONSE_BYTES_MAX = 4_096
ENDPOINTS_MAX = 100


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """How the dispatcher and the delivery worker behave (docs/webhooks.md)."""

    allow_private: bool = False
    timeout_seconds: float = TIMEOUT_SECONDS_DEFAULT
    schedule_seconds: Sequence[float] = SVIX_SCHEDULE_SECONDS
    coalesce: bool = True
    secret_grace_seconds: float = SECRET_GRACE_SECONDS_DEFAULT
    disable_after_seconds: float = DISABLE_AFTER_SECONDS_DEFAULT
    concurrency: int = CONCURRENCY_DEFAULT
    per_endpoint: int = PER_ENDPOINT_DEFAULT
    lease_seconds: float = LEASE_SECONDS_DEFAULT
    poll_seconds: float = POLL_SECONDS_DEFAULT
    poll_idle_seconds_max: float = POLL_IDLE_SECONDS_MAX_DEFAULT
    retention_seconds: float = RETENTION_SECONDS_DEFAULT
    dispatch_batch: int = DISPATCH_BATCH_DEFAULT
    response_bytes_max: int = RESPONSE_BYTES_MAX
    endpoints_max: int = ENDPOINTS_MAX
    idempotency_retention_seconds: float = 24 * 60 * 60.0

    def __post_init__(self) -> None:
        if self.lease_seconds <= self.timeout_seconds:
            raise ValueError("the webhook lease must outlast the delivery timeout")
        if not 1 <= self.per_endpoint <= self.concurrency:
            raise ValueError("per_endpoint is between 1 and concurrency")

    @property
    def lease_ms(self) -> int:
        return round(self.lease_seconds * 1000)

    @property
    def disable_after_ms(self) -> int:
        return round(self.disable_after_seconds * 1000)


class WebhookSettings(Protocol):
    """The fields of ``earmark.settings.Settings`` read here (this part imports no
    settings module: that one builds the engine's configuration)."""

    @property
    def webhooks_allow_private(self) -> bool: ...

    @property
    def webhooks_timeout_seconds(self) -> float: ...

    @property
    def webhooks_schedule_seconds(self) -> str: ...

    @property
    def webhooks_coalesce(self) -> bool: ...

    @property
    def webhooks_secret_grace_seconds(self) -> float: ...

    @property
    def webhooks_disable_after_seconds(self) -> float: ...

    @property
    def webhooks_concurrency(self) -> int: ...

    @property
    def webhooks_lease_seconds(self) -> float: ...

    @property
    def webhooks_retention_days(self) -> float: ...

    @property
    def idempotency_retention_seconds(self) -> float: ...


def from_settings(settings: WebhookSettings) -> WebhookConfig:
    return WebhookConfig(
        allow_private=settings.webhooks_allow_private,
        timeout_seconds=settings.webhooks_timeout_seconds,
        schedule_seconds=parse_schedule(settings.webhooks_schedule_seconds),
        coalesce=settings.webhooks_coalesce,
        secret_grace_seconds=settings.webhooks_secret_grace_seconds,
        disable_after_seconds=settings.webhooks_disable_after_seconds,
        concurrency=settings.webhooks_concurrency,
        per_endpoint=min(settings.webhooks_concurrency, PER_ENDPOINT_DEFAULT),
        lease_seconds=settings.webhooks_lease_seconds,
        retention_seconds=settings.webhooks_retention_days * 24 * 60 * 60,
        idempotency_retention_seconds=settings.idempotency_retention_seconds,
    )
