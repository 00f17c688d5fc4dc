"""How an engine behaves: bounds and retention, all with their unit in the name."""

from __future__ import annotations

from dataclasses import dataclass

from earmark import limits


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine tuning. ``partitions`` applies only when Redis is first set up; afterwards
    the count stored in Redis wins (a different explicit value is an error)."""

    prefix: str = "em"
    partitions: int | None = None
    default_ttl_ms: int = limits.TTL_MS_DEFAULT
    max_ttl_ms: int = limits.TTL_MS_MAX
    idempotency_retention_ms: int = limits.IDEMPOTENCY_RETENTION_MS_DEFAULT
    reservation_retention_ms: int = limits.RESERVATION_RETENTION_MS_DEFAULT
    reclaim_per_line_max: int = limits.RECLAIM_PER_LINE_MAX
    pin_ms: int = limits.PIN_MS
    sweep_batch_max: int = limits.SWEEP_BATCH_MAX
    # Writes wait for this many replicas (Redis WAIT) before they are acknowledged;
    # 0: acknowledge what the primary applied (see docs/design/durability.md, Topologies).
    min_replicas_ack: int = 0
    replica_ack_timeout_ms: int = limits.REPLICA_ACK_TIMEOUT_MS_DEFAULT
    # Events waiting for the durable record (all partitions) past which new demand is
    # refused (DurabilityBacklog); 0: no bound (a library engine with no flusher).
    durability_backlog_max: int = 0
    # [drops] reserve attempts per customer per drop per second (0: no limit).
    drop_attempts_per_second: int = limits.DROP_ATTEMPTS_PER_SECOND_DEFAULT

    def backlog_per_partition(self, partitions: int) -> int:
        """The bound each partition's stream keeps (0: none)."""
        if self.durability_backlog_max == 0:
            return 0
        return max(1, -(-self.durability_backlog_max // partitions))

    def __post_init__(self) -> None:
        if self.partitions is not None and not 1 <= self.partitions <= limits.PARTITIONS_MAX:
            raise ValueError(f"partitions must be between 1 and {limits.PARTITIONS_MAX}")
        if not limits.TTL_MS_MIN <= self.default_ttl_ms <= self.max_ttl_ms <= limits.TTL_MS_MAX:
            raise ValueError(
                "TTLs must satisfy "
                f"{limits.TTL_MS_MIN} <= default_ttl_ms <= max_ttl_ms <= {limits.TTL_MS_MAX}"
            )
        if self.idempotency_retention_ms < limits.IDEMPOTENCY_RETENTION_MS_MIN:
            raise ValueError("idempotency keys must be remembered for at least 24 hours")
        if (
            not 1 <= self.reclaim_per_line_max <= limits.RECLAIM_PER_LINE_LIMIT
            or not 1 <= self.sweep_batch_max <= 10_000
        ):
            raise ValueError("reclaim_per_line_max and sweep_batch_max are out of bounds")
        if not 0 <= self.min_replicas_ack <= limits.REPLICAS_ACK_MAX:
            raise ValueError(f"min_replicas_ack must be between 0 and {limits.REPLICAS_ACK_MAX}")
        if not 1 <= self.replica_ack_timeout_ms <= limits.REPLICA_ACK_TIMEOUT_MS_MAX:
            raise ValueError(
                f"replica_ack_timeout_ms must be between 1 and {limits.REPLICA_ACK_TIMEOUT_MS_MAX}"
            )
        if not 0 <= self.durability_backlog_max <= limits.DURABILITY_BACKLOG_MAX_LIMIT:
            raise ValueError(
                "durability_backlog_max must be between 0 and "
                f"{limits.DURABILITY_BACKLOG_MAX_LIMIT}"
            )
        if not 0 <= self.drop_attempts_per_second <= limits.DROP_ATTEMPTS_PER_SECOND_MAX:
            raise ValueError(
                "drop_attempts_per_second must be between 0 and "
                f"{limits.DROP_ATTEMPTS_PER_SECOND_MAX}"
            )
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ValueError("prefix must be non-empty and may not contain braces")
