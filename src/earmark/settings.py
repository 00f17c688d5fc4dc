"""Process settings from the environment (prefix ``EARMARK_``), read once per process.

Nothing reads the environment at import time: ``get_settings()`` builds the object on
first use and caches it; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from earmark import limits
from earmark.engine.config import EngineConfig

EMBEDDED = "embedded"


class Settings(BaseSettings):
    """Every knob of the service and the CLI; the env var is ``EARMARK_<NAME>``."""

    # An empty variable (``EARMARK_REDIS_URL=``, a blanked line of an env file) is unset:
    # the default applies, never a URL of ''.
    model_config = SettingsConfigDict(
        env_prefix="EARMARK_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    redis_url: str | None = Field(
        None,
        description="`redis://host:6379/0`, or `redis+sentinel://host:26379,host:26379/service` "
        "to follow Sentinel failovers (the primary Sentinel names); unset: the embedded "
        "in-process fakeredis",
    )
    redis_cluster: bool = Field(False, description="`EARMARK_REDIS_URL` names a Redis Cluster node")
    database_url: str = Field(
        "sqlite:///./earmark.db",
        description="the durable record: `postgresql://...` or `sqlite:///path`",
    )
    partitions: int | None = Field(
        None,
        ge=1,
        le=limits.PARTITIONS_MAX,
        description="partitions (hash tags) when the store is first set up; unset: 1",
    )
    prefix: str = Field("em", min_length=1, description="prefix of every Redis key name")
    default_ttl_seconds: float = Field(
        limits.TTL_MS_DEFAULT / 1000, gt=0, description="a hold's TTL when a reserve names none"
    )
    max_ttl_seconds: float = Field(
        limits.TTL_MS_MAX / 1000, gt=0, description="the longest TTL a hold may ask for"
    )
    idempotency_retention_seconds: float = Field(
        limits.IDEMPOTENCY_RETENTION_MS_DEFAULT / 1000,
        gt=0,
        description="how long idempotency keys are remembered (at least 24 h)",
    )
    sweep_interval_seconds: float = Field(
        1.0, gt=0, le=3600, description="in-process sweeper interval (the pause between two passes)"
    )
    flusher_in_process: bool = Field(
        True, description="`serve` runs the write-behind flusher (always when embedded)"
    )
    flusher_lag_seconds_max: float = Field(
        30.0, gt=0, description="`/readyz` fails above this flusher lag (while the record answers)"
    )
    min_replicas_ack: int = Field(
        0,
        ge=0,
        le=limits.REPLICAS_ACK_MAX,
        description="writes wait for this many replicas (Redis `WAIT`) before they are "
        "acknowledged; 0: the primary's word",
    )
    replica_ack_timeout_ms: int = Field(
        limits.REPLICA_ACK_TIMEOUT_MS_DEFAULT,
        ge=1,
        le=limits.REPLICA_ACK_TIMEOUT_MS_MAX,
        description="how long a write waits for its replicas, then answers 503 "
        "`replication_timeout` (retry with the same key)",
    )
    durability_backlog_max: int = Field(
        limits.DURABILITY_BACKLOG_MAX_DEFAULT,
        ge=0,
        le=limits.DURABILITY_BACKLOG_MAX_LIMIT,
        description="events waiting for the durable record past which new demand answers "
        "503 `durability_backlog`; 0: no bound",
    )
    webhooks_in_process: bool = Field(
        True, description="`serve` runs the webhook dispatcher and delivery worker"
    )
    webhooks_allow_private: bool = Field(
        False, description="webhook URLs may name private, loopback and link-local addresses"
    )
    webhooks_timeout_seconds: float = Field(
        15.0, gt=0, le=60, description="a webhook attempt succeeds with a 2xx within this"
    )
    webhooks_schedule_seconds: str = Field(
        "0,5,300,1800,7200,18000,36000,36000",
        pattern=r"^[0-9.]+(,[0-9.]+)*$",
        description="delay before each webhook attempt (Svix's schedule), jittered ±20 %",
    )
    webhooks_coalesce: bool = Field(
        True,
        description="waiting `stock.changed` collapse per (endpoint, sku, location) to the newest",
    )
    webhooks_secret_grace_seconds: float = Field(
        24 * 60 * 60.0,
        ge=0,
        le=30 * 24 * 60 * 60,
        description="a rotated-out secret still signs this long",
    )
    webhooks_disable_after_seconds: float = Field(
        5 * 24 * 60 * 60.0, gt=0, description="an endpoint failing this long (5 days) is disabled"
    )
    webhooks_concurrency: int = Field(
        16, ge=1, le=256, description="webhook requests in flight per process"
    )
    webhooks_lease_seconds: float = Field(
        60.0, gt=0, le=3600, description="a claimed webhook message is re-sent after this lease"
    )
    webhooks_retention_days: float = Field(
        30.0, gt=0, description="delivered messages and attempts are kept this long"
    )
    # -- reconciliation (issue 15) --
    discrepancy_sla_hours: float = Field(
        24.0, gt=0, le=24 * 366, description="a discrepancy case is due this long after it opens"
    )
    discrepancy_check_seconds: float = Field(
        30.0, gt=0, le=3_600, description="how often case openings and lateness are announced"
    )
    host: str = Field("127.0.0.1", description="where `serve` listens: the address")
    port: int = Field(8000, ge=0, le=65535, description="where `serve` listens: the port")
    workers: int = Field(1, ge=1, le=64, description="`serve`'s uvicorn worker processes")
    no_auth: bool = Field(
        False,
        description="serve without authentication (`earmark serve --no-auth`); loopback only",
    )
    api_key_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=300,
        description="how long a process trusts its copy of the API keys (a revoked key "
        "stops within it)",
    )
    log_level: str = Field(
        "info",
        pattern="^(critical|error|warning|info|debug)$",
        description="`critical`, `error`, `warning`, `info` or `debug`",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="1 MiB by default; a larger body is 413 `body_too_large`, refused before "
        "it is read (after authentication)",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="a larger request line + headers is 431 `headers_too_large`",
    )
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="to send the headers, and again the body; slower is 408 `request_timeout`",
    )
    max_concurrent_requests: int = Field(
        512,
        ge=1,
        le=100_000,
        description="`/v1` requests in flight per process; beyond, 503 `overloaded` with "
        "`Retry-After: 1` (health and metrics are exempt)",
    )

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    def engine_config(self) -> EngineConfig:
        """The engine's bounds in milliseconds (EngineConfig validates them)."""
        return EngineConfig(
            prefix=self.prefix,
            partitions=self.partitions,
            default_ttl_ms=round(self.default_ttl_seconds * 1000),
            max_ttl_ms=round(self.max_ttl_seconds * 1000),
            idempotency_retention_ms=round(self.idempotency_retention_seconds * 1000),
            min_replicas_ack=self.min_replicas_ack,
            replica_ack_timeout_ms=self.replica_ack_timeout_ms,
            durability_backlog_max=self.durability_backlog_max,
        )

    def redis_description(self) -> str:
        """Where the store is, without credentials (for logs and ``earmark status``)."""
        if self.redis_url is None:
            return EMBEDDED
        return without_credentials(self.redis_url)

    def database_description(self) -> str:
        """The durable record, without credentials; a SQLite file as its absolute path."""
        if self.database_url.startswith("sqlite://"):
            path = self.database_url.removeprefix("sqlite://").removeprefix("/")
            return f"SQLite file {path if path == ':memory:' else os.path.abspath(path)}"
        return without_credentials(self.database_url)


def without_credentials(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if not separator:  # not a URL at all (a typo): still never print a password
        return url.rpartition("@")[2]
    return f"{scheme}://{rest.rpartition('@')[2]}"


def is_loopback(host: str) -> bool:
    """Only a literal loopback address (or ``localhost``) counts: names can resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
