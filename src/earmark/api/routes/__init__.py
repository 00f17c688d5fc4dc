"""One router per resource; ``ROUTERS`` is what the app includes, in this order."""

from earmark.api.routes import (
    counts,
    health,
    ledger,
    losses,
    purchase_orders,
    reservations,
    returns,
    seats,
    stock,
    transfers,
    webhooks,
)

ROUTERS = [
    health.router,
    stock.router,
    reservations.router,
    transfers.router,
    returns.router,
    losses.router,
    counts.router,
    purchase_orders.router,
    ledger.router,
    webhooks.router,
    seats.router,
]
