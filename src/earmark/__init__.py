"""earmark: a Redis-backed, high-contention stock reservation engine."""

from earmark.async_engine import AsyncEngine
from earmark.config import EngineConfig
from earmark.engine import Engine
from earmark.errors import (
    CommitInProgress,
    EarmarkError,
    IdempotencyConflict,
    InsufficientOnHand,
    InsufficientStock,
    InvalidRequest,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotHeld,
    ReservationReleased,
    SkuNotFound,
    StoreNotReady,
    WouldOversell,
)
from earmark.models import (
    Line,
    Reservation,
    ReservationLine,
    ReservationStatus,
    Shortfall,
    StockLevel,
    SweepReport,
)

__all__ = [
    "AsyncEngine",
    "CommitInProgress",
    "EarmarkError",
    "Engine",
    "EngineConfig",
    "IdempotencyConflict",
    "InsufficientOnHand",
    "InsufficientStock",
    "InvalidRequest",
    "Line",
    "Reservation",
    "ReservationExpired",
    "ReservationLine",
    "ReservationNotFound",
    "ReservationNotHeld",
    "ReservationReleased",
    "ReservationStatus",
    "Shortfall",
    "SkuNotFound",
    "StockLevel",
    "StoreNotReady",
    "SweepReport",
    "WouldOversell",
]
