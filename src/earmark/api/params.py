"""Path and query parameters shared by the routers, and the rule for ids of ours.

An id that cannot be one of ours (wrong shape, a partition this store does not have) is
simply not found: the engine refuses it as ``InvalidRequest`` naming the id's field, and
``known`` turns that into the resource's 404, so a client cannot tell a malformed id from
a missing one (nothing was written either way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated

from fastapi import Path, Query

from earmark import limits
from earmark.api.schemas import NAME_PATTERN
from earmark.errors import (
    EarmarkError,
    InvalidRequest,
    PurchaseOrderNotFound,
    ReservationNotFound,
    TransferNotFound,
)

SkuPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=limits.SKU_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="the SKU; letters, digits, '.', '_' and '-'",
    ),
]
LocationQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=limits.LOCATION_LENGTH_MAX,
        pattern=NAME_PATTERN,
        description="the stock location",
    ),
]
ReservationId = Annotated[str, Path(description="the id returned when the cart was held")]
TransferId = Annotated[str, Path(description="the id returned when the transfer was sent")]
PurchaseOrderId = Annotated[str, Path(description="the id returned when the order was created")]


@contextmanager
def known(field: str, not_found: Callable[[], EarmarkError]) -> Iterator[None]:
    """Raises ``not_found()`` for an ``InvalidRequest`` about the id ``field``."""
    try:
        yield
    except InvalidRequest as error:
        if error.details.get("field") != field:
            raise
        raise not_found() from None


def known_reservation(reservation_id: str) -> AbstractContextManager[None]:
    return known(
        "reservation_id",
        lambda: ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id),
    )


def known_transfer(transfer_id: str) -> AbstractContextManager[None]:
    return known(
        "transfer_id", lambda: TransferNotFound(f"no transfer {transfer_id}", id=transfer_id)
    )


def known_purchase_order(po_id: str) -> AbstractContextManager[None]:
    return known(
        "purchase_order_id",
        lambda: PurchaseOrderNotFound(f"no purchase order {po_id}", id=po_id),
    )
