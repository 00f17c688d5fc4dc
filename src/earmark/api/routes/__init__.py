"""One router per resource; ``ROUTERS`` is what the app includes, in this order."""

from earmark.api.routes import (
    alerts,
    counts,
    health,
    ledger,
    losses,
    purchase_orders,
    reconciliations,
    reservations,
    returns,
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
    alerts.router,  # issue 15
    reconciliations.router,
]
