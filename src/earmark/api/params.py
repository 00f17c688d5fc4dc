"""Path and query parameters shared by the routers.

An id that cannot be one of ours (wrong shape, a partition this store does not have) is
simply not found: the engine raises the resource's NotFound for it, the 404 here, so a
client cannot tell a malformed id from a missing one (nothing was written either way).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from earmark import limits
from earmark.api.schemas import NAME_PATTERN

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
