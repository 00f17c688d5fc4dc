"""One exception tree: callers can catch ``EarmarkError`` for everything of ours."""

from __future__ import annotations

from typing import Any


class EarmarkError(Exception):
    """Base of every error earmark raises on purpose. ``code`` is stable for clients."""

    code = "earmark_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(EarmarkError):
    """The request is malformed or outside a documented bound; nothing was written."""

    code = "invalid_request"


class InsufficientStock(EarmarkError):
    """A reservation was refused; ``shortfalls`` names every short line."""

    code = "insufficient_stock"

    def __init__(self, message: str, shortfalls: list[Any]) -> None:
        super().__init__(message, lines=shortfalls)
        self.shortfalls = shortfalls


class WouldOversell(EarmarkError):
    """A decrease would push available below zero and was not forced."""

    code = "would_oversell"


class InsufficientOnHand(EarmarkError):
    """Fewer units are physically on hand than the operation removes."""

    code = "insufficient_on_hand"


class ReservationNotFound(EarmarkError):
    code = "reservation_not_found"


class SkuNotFound(EarmarkError):
    code = "sku_not_found"


class ReservationNotHeld(EarmarkError):
    """The reservation is not in a state that allows the operation; ``status`` says which."""

    code = "invalid_transition"

    def __init__(self, message: str, status: str, **details: Any) -> None:
        super().__init__(message, status=status, **details)
        self.status = status


class ReservationExpired(ReservationNotHeld):
    code = "reservation_expired"


class ReservationReleased(ReservationNotHeld):
    code = "reservation_released"


class CommitInProgress(ReservationNotHeld):
    """Another caller is committing this multi-partition reservation right now; retry."""

    code = "commit_in_progress"


class IdempotencyConflict(EarmarkError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"


class StoreNotReady(EarmarkError):
    """Redis lacks the generation marker: it was lost or never set up. Writes are refused."""

    code = "store_not_ready"
