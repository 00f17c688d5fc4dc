"""One router per resource; ``ROUTERS`` is what the app includes, in this order."""

from earmark.api.routes import (
    alerts,
    channels,
    console,
    counts,
    drops,
    health,
    ledger,
    losses,
    overview,
    purchase_orders,
    reconciliations,
    reservation_lists,
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
    reservation_lists.router,
    transfers.router,
    returns.router,
    losses.router,
    counts.router,
    purchase_orders.router,
    ledger.router,
    webhooks.router,
    drops.router,
    overview.router,
    console.router,
    seats.router,
    alerts.router,  # issue 15
    reconciliations.router,
    channels.router,  # issue 13
]
