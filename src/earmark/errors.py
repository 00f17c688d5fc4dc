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


class InsufficientUnits(EarmarkError):
    """A bucket other than on_hand (``returned``, ``damaged``) holds fewer units than the
    operation moves out of it; ``bucket`` names it. Nothing was written."""

    code = "insufficient_units"


class StaleCount(EarmarkError):
    """A cycle count named a stock version the engine can no longer (or cannot yet) answer
    for: older than the remembered on_hand changes, or newer than the stock. Read the stock
    again and recount; nothing was written."""

    code = "stale_count"


class TransferNotFound(EarmarkError):
    code = "transfer_not_found"


class TransferAlreadyReceived(EarmarkError):
    """The transfer was already received with another quantity; ``transfer`` is its record.
    (Receiving it again with the same quantity returns the record and changes nothing.)"""

    code = "transfer_already_received"


class ReturnExceedsShipped(EarmarkError):
    """A return of more units than the reservation shipped of that line, minus what was
    already returned. Nothing was written."""

    code = "return_exceeds_shipped"


class PurchaseOrderNotFound(EarmarkError):
    code = "purchase_order_not_found"


class PurchaseOrderClosed(EarmarkError):
    """The purchase order is closed or cancelled (``status``): it takes no more receipts,
    and a closed order cannot be cancelled (nor the other way round)."""

    code = "purchase_order_closed"

    def __init__(self, message: str, status: str, **details: Any) -> None:
        super().__init__(message, status=status, **details)
        self.status = status


class LedgerError(EarmarkError):
    """The durable record refused or could not understand a write."""

    code = "ledger_error"


class LedgerUnavailable(LedgerError):
    """The durable record cannot be reached right now; retrying later is safe."""

    code = "ledger_unavailable"


class LedgerMismatch(LedgerError):
    """The durable record belongs to another store (key prefix or partition count)."""

    code = "ledger_mismatch"


class RebuildRefused(EarmarkError):
    """Redis still has its generation markers: rebuilding would overwrite live stock."""

    code = "rebuild_refused"
