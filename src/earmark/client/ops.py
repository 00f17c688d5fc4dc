"""Every route of the sidecar as a client method, with the library's names and results.

A checkout service swaps ``Engine`` for ``Client`` (or ``AsyncEngine`` for
``AsyncClient``): ``reserve``, ``commit``, ``stock``... take the same arguments, return
the same models (``earmark.models``) and raise the same exceptions (``earmark.errors``)
as the engine does. Writes send an ``Idempotency-Key``: the one given, or a fresh one the
client keeps for every retry of that call. Routes without an engine counterpart (health,
the overview, the ledger, reconciliations, webhook endpoints) return the models the
service answers with, which ``earmark.models`` holds too (``Readiness``, ``LedgerPage``,
``WebhookEndpoint``...); only ``metrics`` answers text.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from earmark.client.call import Call, Params, route
from earmark.errors import InvalidRequest
from earmark.models import (
    UNCHANGED,
    Allocation,
    ChannelSettings,
    ChannelSkuRule,
    CountResult,
    CreatedWebhookEndpoint,
    DeliveryAttempts,
    DiscrepancyCase,
    DiscrepancyPage,
    Drop,
    DropPage,
    Health,
    LedgerPage,
    Line,
    LowStockAlert,
    Overview,
    PurchaseOrder,
    Readiness,
    ReconciliationReport,
    ReorderSetting,
    Reservation,
    ReservationPage,
    ReturnReceipt,
    RotatedSecret,
    Seat,
    SeatFreed,
    SeatInvite,
    SeatPool,
    SeatUserPage,
    SkuStock,
    StockLevel,
    StockPage,
    Transfer,
    Unchanged,
    WaitlistEntry,
    WebhookEndpoint,
    WebhookReplay,
)

M = TypeVar("M", bound=BaseModel)
LineInput = Line | tuple[str, int] | tuple[str, int, str]
Json = dict[str, Any]

DEFAULT_LOCATION = "default"
LEVELS = TypeAdapter(list[StockLevel])


def _model(cls: type[M]) -> Any:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate_json(response.content)

    return parse


def _items(cls: type[M]) -> Any:
    """A ``{"items": [...]}`` answer as the list of models the library returns."""
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> list[M]:
        items: list[M] = adapter.validate_python(response.json()["items"])
        return items

    return parse


def _nothing(response: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _one_location(response: httpx.Response) -> SkuStock:
    """``GET /v1/skus/{sku}?location=`` answers one level; the library answers the same
    figures as a ``SkuStock`` whose only location is that level."""
    level = StockLevel.model_validate_json(response.content)
    totals = {
        b: getattr(level, b)
        for b in SkuStock.model_fields
        if b in StockLevel.model_fields and b != "sku"
    }
    return SkuStock(sku=level.sku, locations=[level], **totals)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _line(line: LineInput) -> Json:
    if isinstance(line, Line):
        return {"sku": line.sku, "qty": line.qty, "location": line.location}
    if len(line) == 2:
        return {"sku": line[0], "qty": line[1]}
    return {"sku": line[0], "qty": line[1], "location": line[2]}


def _without_none(values: Json) -> Json:
    return {k: v for k, v in values.items() if v is not None}


class ClientOps:
    """The calls, written once; ``Client`` and ``AsyncClient`` send them."""

    # -- health -----------------------------------------------------------------------

    @route("GET /healthz")
    def health(self) -> Call[Health]:
        """Liveness: the process answers (``status`` is ``"ok"``)."""
        return Call("GET", "/healthz", _model(Health))

    @route("GET /readyz")
    def readiness(self) -> Call[Readiness]:
        """Every readiness check; raises ``NotReady`` (with ``checks``) when one fails."""
        return Call("GET", "/readyz", _model(Readiness))

    @route("GET /metrics")
    def metrics(self) -> Call[str]:
        """The Prometheus text exposition."""
        return Call("GET", "/metrics", _text)

    @route("GET /v1/overview")
    def overview(self) -> Call[Overview]:
        """Holds live and expiring, the durable lag, the webhook backlog, health checks."""
        return Call("GET", "/v1/overview", _model(Overview))

    # -- stock --------------------------------------------------------------------------

    @route("GET /v1/skus/{sku}")
    def channel_stock(self, channel: str, sku: str, location: str | None = None) -> Call[SkuStock]:
        """The SKU as ``channel`` sees it (``Engine.channel_stock``). Declared before
        ``stock``, which is the route's name in ``routes_of``."""
        params = _without_none({"channel": channel, "location": location})
        return Call("GET", f"/v1/skus/{_seg(sku)}", _model(SkuStock), params=params)

    @route("GET /v1/skus/{sku}")
    def stock(self, sku: str, location: str | None = None) -> Call[SkuStock]:
        """The SKU over the network, or at ``location`` (as ``Engine.stock``)."""
        if location is None:
            return Call("GET", f"/v1/skus/{_seg(sku)}", _model(SkuStock))
        return Call("GET", f"/v1/skus/{_seg(sku)}", _one_location, params={"location": location})

    @route("GET /v1/skus")
    def stock_page(
        self,
        *,
        prefix: str = "",
        location: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        low_stock: bool = False,
    ) -> Call[StockPage]:
        """One page of the stock index (``Engine.stock_page``); pass ``next_cursor`` back.
        ``low_stock``: only records whose low-stock alert is active."""
        params: Params = _without_none(
            {
                "prefix": prefix or None,
                "location": location,
                "cursor": cursor,
                "limit": limit,
                "low_stock": "true" if low_stock else None,
            }
        )
        return Call("GET", "/v1/skus", _model(StockPage), params=params)

    @route("GET /v1/availability")
    def availability(self, skus: Iterable[str | tuple[str, str]]) -> Call[list[StockLevel]]:
        """The levels of many SKUs in one request (as ``Engine.availability``: a plain SKU
        reads its default location). The route reads one location per request, so the
        pairs given must share their location."""
        wanted = [(x, DEFAULT_LOCATION) if isinstance(x, str) else x for x in skus]
        locations = {location for _, location in wanted}
        if len(locations) > 1:
            raise InvalidRequest(
                "GET /v1/availability reads one location per request: call once per location",
                field="skus",
            )

        def parse(response: httpx.Response) -> list[StockLevel]:
            return LEVELS.validate_python(response.json()["items"])

        location = locations.pop() if locations else DEFAULT_LOCATION
        params: Params = {"sku": [sku for sku, _ in wanted], "location": location}
        return Call("GET", "/v1/availability", parse, params=params)

    @route("POST /v1/skus/{sku}/receipts")
    def receive(
        self,
        sku: str,
        qty: int,
        *,
        location: str = DEFAULT_LOCATION,
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> Call[StockLevel]:
        """Units arrived (``Engine.receive``)."""
        body = {"qty": qty, "location": location, "reference": reference}
        return self._write(f"/v1/skus/{_seg(sku)}/receipts", body, StockLevel, idempotency_key)

    @route("POST /v1/skus/{sku}/adjustments")
    def adjust(
        self,
        sku: str,
        delta: int,
        reason: str,
        *,
        location: str = DEFAULT_LOCATION,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> Call[StockLevel]:
        """Change on_hand by ``delta`` (``Engine.adjust``)."""
        body = {"delta": delta, "reason": reason, "location": location, "force": force}
        return self._write(f"/v1/skus/{_seg(sku)}/adjustments", body, StockLevel, idempotency_key)

    @route("POST /v1/skus/{sku}/damage")
    def damage(
        self,
        sku: str,
        qty: int,
        reason: str,
        *,
        location: str = DEFAULT_LOCATION,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> Call[StockLevel]:
        """Move units from on_hand to damaged (``Engine.damage``)."""
        body = {"qty": qty, "reason": reason, "location": location, "force": force}
        return self._write(f"/v1/skus/{_seg(sku)}/damage", body, StockLevel, idempotency_key)

    @route("POST /v1/skus/{sku}/write-offs")
    def write_off(
        self,
        sku: str,
        qty: int,
        reason: str,
        *,
        source: str = "on_hand",
        location: str = DEFAULT_LOCATION,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> Call[StockLevel]:
        """Write units off (``Engine.write_off``)."""
        body = {"qty": qty, "reason": reason, "source": source, "location": location}
        body["force"] = force
        return self._write(f"/v1/skus/{_seg(sku)}/write-offs", body, StockLevel, idempotency_key)

    @route("POST /v1/skus/{sku}/counts")
    def count(
        self,
        sku: str,
        counted: int,
        version: int,
        *,
        location: str = DEFAULT_LOCATION,
        reason: str = "cycle count",
        idempotency_key: str | None = None,
    ) -> Call[CountResult]:
        """A cycle count taken at stock ``version`` (``Engine.count``)."""
        body = {"counted": counted, "version": version, "location": location, "reason": reason}
        return self._write(f"/v1/skus/{_seg(sku)}/counts", body, CountResult, idempotency_key)

    @route("POST /v1/skus/{sku}/returned/dispositions")
    def dispose_returned(
        self,
        sku: str,
        qty: int,
        disposition: str,
        *,
        location: str = DEFAULT_LOCATION,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[StockLevel]:
        """Restock, damage or write off returned units (``Engine.dispose_returned``)."""
        body = {"qty": qty, "disposition": disposition, "location": location, "reason": reason}
        path = f"/v1/skus/{_seg(sku)}/returned/dispositions"
        return self._write(path, body, StockLevel, idempotency_key)

    # -- reservations -------------------------------------------------------------------

    @route("POST /v1/reservations")
    def reserve(
        self,
        lines: Iterable[LineInput],
        *,
        idempotency_key: str | None = None,
        ttl_seconds: float | None = None,
        channel: str = "",
        customer: str | None = None,
    ) -> Call[Reservation]:
        """Hold every line or none (``Engine.reserve``); ``customer`` for a drop's SKU."""
        body = {"lines": [_line(x) for x in lines], "ttl_seconds": ttl_seconds, "channel": channel}
        if customer is not None:
            body["customer"] = customer
        return self._write("/v1/reservations", body, Reservation, idempotency_key)

    @route("GET /v1/reservations")
    def held_reservations(
        self,
        *,
        sku: str | None = None,
        location: str = DEFAULT_LOCATION,
        status: str = "held",
        customer: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Call[ReservationPage]:
        """Held reservations, soonest expiry first (``Engine.held_reservations``)."""
        params: Params = _without_none(
            {"sku": sku, "location": location, "status": status, "customer": customer}
            | {"cursor": cursor, "limit": limit}
        )
        return Call("GET", "/v1/reservations", _model(ReservationPage), params=params)

    @route("GET /v1/reservations/{reservation_id}")
    def get_reservation(self, reservation_id: str) -> Call[Reservation]:
        return Call("GET", f"/v1/reservations/{_seg(reservation_id)}", _model(Reservation))

    @route("POST /v1/reservations/{reservation_id}/commit")
    def commit(
        self, reservation_id: str, *, idempotency_key: str | None = None
    ) -> Call[Reservation]:
        """The hold becomes a sale (``Engine.commit``)."""
        return self._transition(reservation_id, "commit", None, idempotency_key)

    @route("POST /v1/reservations/{reservation_id}/release")
    def release(
        self, reservation_id: str, *, idempotency_key: str | None = None
    ) -> Call[Reservation]:
        """Give the held units back (``Engine.release``)."""
        return self._transition(reservation_id, "release", None, idempotency_key)

    @route("POST /v1/reservations/{reservation_id}/extend")
    def extend(
        self, reservation_id: str, ttl_seconds: float, *, idempotency_key: str | None = None
    ) -> Call[Reservation]:
        """Hold for ``ttl_seconds`` from now (``Engine.extend``)."""
        body = {"ttl_seconds": ttl_seconds}
        return self._transition(reservation_id, "extend", body, idempotency_key)

    @route("POST /v1/reservations/{reservation_id}/ship")
    def ship(self, reservation_id: str, *, idempotency_key: str | None = None) -> Call[Reservation]:
        """The committed units leave on_hand (``Engine.ship``)."""
        return self._transition(reservation_id, "ship", None, idempotency_key)

    @route("POST /v1/reservations/{reservation_id}/returns")
    def receive_return(
        self,
        reservation_id: str,
        sku: str,
        qty: int,
        *,
        location: str | None = None,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[ReturnReceipt]:
        """Shipped units came back (``Engine.receive_return``)."""
        body = _without_none({"sku": sku, "qty": qty, "location": location, "reason": reason})
        path = f"/v1/reservations/{_seg(reservation_id)}/returns"
        return self._write(path, body, ReturnReceipt, idempotency_key)

    # -- transfers ----------------------------------------------------------------------

    @route("POST /v1/skus/{sku}/transfers")
    def transfer(
        self,
        sku: str,
        qty: int,
        from_location: str,
        to_location: str,
        *,
        reference: str = "",
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[Transfer]:
        """Send units between locations (``Engine.transfer``)."""
        body = {"qty": qty, "from_location": from_location, "to_location": to_location}
        body |= {"reference": reference, "reason": reason}
        return self._write(f"/v1/skus/{_seg(sku)}/transfers", body, Transfer, idempotency_key)

    @route("GET /v1/transfers/{transfer_id}")
    def get_transfer(self, transfer_id: str) -> Call[Transfer]:
        return Call("GET", f"/v1/transfers/{_seg(transfer_id)}", _model(Transfer))

    @route("POST /v1/transfers/{transfer_id}/receipt")
    def receive_transfer(
        self,
        transfer_id: str,
        qty_received: int,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[Transfer]:
        """A transfer arrived (``Engine.receive_transfer``)."""
        body = {"qty_received": qty_received, "reason": reason}
        path = f"/v1/transfers/{_seg(transfer_id)}/receipt"
        return self._write(path, body, Transfer, idempotency_key)

    # -- purchase orders ----------------------------------------------------------------

    @route("POST /v1/purchase-orders")
    def create_purchase_order(
        self,
        lines: Iterable[LineInput],
        *,
        supplier: str,
        expected_date: str,
        reference: str = "",
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[PurchaseOrder]:
        """Units are expected (``Engine.create_purchase_order``)."""
        body = {"lines": [_line(x) for x in lines], "supplier": supplier}
        body |= {"expected_date": expected_date, "reference": reference, "reason": reason}
        return self._write("/v1/purchase-orders", body, PurchaseOrder, idempotency_key)

    @route("GET /v1/purchase-orders/{po_id}")
    def get_purchase_order(self, po_id: str) -> Call[PurchaseOrder]:
        return Call("GET", f"/v1/purchase-orders/{_seg(po_id)}", _model(PurchaseOrder))

    @route("POST /v1/purchase-orders/{po_id}/receipts")
    def receive_purchase_order(
        self,
        po_id: str,
        lines: Iterable[LineInput],
        *,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[PurchaseOrder]:
        body = {"lines": [_line(x) for x in lines], "reason": reason}
        path = f"/v1/purchase-orders/{_seg(po_id)}/receipts"
        return self._write(path, body, PurchaseOrder, idempotency_key)

    @route("POST /v1/purchase-orders/{po_id}/close")
    def close_purchase_order(
        self,
        po_id: str,
        *,
        cancel: bool = False,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> Call[PurchaseOrder]:
        body = {"cancel": cancel, "reason": reason}
        path = f"/v1/purchase-orders/{_seg(po_id)}/close"
        return self._write(path, body, PurchaseOrder, idempotency_key)

    # -- seats (docs/seats.md) ------------------------------------------------------------

    @route("PUT /v1/tenants/{tenant}/seats")
    def set_seat_cap(
        self,
        tenant: str,
        cap: int,
        *,
        overage: str = "none",
        floating: bool = False,
        lease_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Call[SeatPool]:
        """A tenant's cap, overage and floating rule (``Engine.set_seat_cap``)."""
        body = _without_none(
            {"cap": cap, "overage": overage, "floating": floating, "lease_seconds": lease_seconds}
        )
        path = f"/v1/tenants/{_seg(tenant)}/seats"
        return Call(
            "PUT", path, _model(SeatPool), json=body, write=True, idempotency_key=idempotency_key
        )

    @route("GET /v1/tenants/{tenant}/seats")
    def seats(self, tenant: str, *, period: str | None = None) -> Call[SeatPool]:
        """Cap, limit, use and the period's high-water mark (``Engine.seats``)."""
        params: Params = _without_none({"period": period})
        return Call("GET", f"/v1/tenants/{_seg(tenant)}/seats", _model(SeatPool), params=params)

    @route()  # the same route as ``seats``, with ?users=true
    def seat_users(
        self, tenant: str, *, cursor: str | None = None, limit: int = 100
    ) -> Call[SeatUserPage]:
        """One page of assigned users (``GET .../seats?users=true``; ``Engine.seat_users``)."""
        params: Params = _without_none({"users": "true", "cursor": cursor, "limit": limit})
        path = f"/v1/tenants/{_seg(tenant)}/seats"
        return Call("GET", path, _model(SeatUserPage), params=params)

    @route("PUT /v1/tenants/{tenant}/seats/{user}")
    def assign_seat(
        self, tenant: str, user: str, *, idempotency_key: str | None = None
    ) -> Call[Seat]:
        path = f"/v1/tenants/{_seg(tenant)}/seats/{_seg(user)}"
        return Call("PUT", path, _model(Seat), write=True, idempotency_key=idempotency_key)

    @route("DELETE /v1/tenants/{tenant}/seats/{user}")
    def free_seat(
        self, tenant: str, user: str, *, idempotency_key: str | None = None
    ) -> Call[SeatFreed]:
        path = f"/v1/tenants/{_seg(tenant)}/seats/{_seg(user)}"
        return Call("DELETE", path, _model(SeatFreed), write=True, idempotency_key=idempotency_key)

    @route("POST /v1/tenants/{tenant}/seats/{user}/heartbeat")
    def renew_seat(
        self, tenant: str, user: str, *, idempotency_key: str | None = None
    ) -> Call[Seat]:
        """Renew a floating seat's lease (``Engine.renew_seat``)."""
        path = f"/v1/tenants/{_seg(tenant)}/seats/{_seg(user)}/heartbeat"
        return Call("POST", path, _model(Seat), write=True, idempotency_key=idempotency_key)

    @route("POST /v1/tenants/{tenant}/invites")
    def invite_seat(
        self, tenant: str, user: str, ttl_seconds: int, *, idempotency_key: str | None = None
    ) -> Call[SeatInvite]:
        body = {"user": user, "ttl_seconds": ttl_seconds}
        return self._write(f"/v1/tenants/{_seg(tenant)}/invites", body, SeatInvite, idempotency_key)

    @route("POST /v1/tenants/{tenant}/invites/{user}/accept")
    def accept_invite(
        self, tenant: str, user: str, *, idempotency_key: str | None = None
    ) -> Call[Seat]:
        path = f"/v1/tenants/{_seg(tenant)}/invites/{_seg(user)}/accept"
        return Call("POST", path, _model(Seat), write=True, idempotency_key=idempotency_key)

    # -- reorder points, alerts, reconciliation (docs/reconciliation.md) ----------------

    @route("PUT /v1/skus/{sku}/reorder")
    def set_reorder(
        self,
        sku: str,
        reorder_point: int,
        rearm_above: int,
        *,
        location: str = DEFAULT_LOCATION,
        lead_time_days: int | None = None,
        idempotency_key: str | None = None,
    ) -> Call[ReorderSetting]:
        """The reorder point of (sku, location) (``Engine.set_reorder``); the PUT carries
        an ``Idempotency-Key``, so a retry after a timeout sets it once."""
        body = {"location": location, "reorder_point": reorder_point, "rearm_above": rearm_above}
        body["lead_time_days"] = lead_time_days
        path = f"/v1/skus/{_seg(sku)}/reorder"
        return Call(
            "PUT",
            path,
            _model(ReorderSetting),
            json=body,
            write=True,
            idempotency_key=idempotency_key,
        )

    @route("GET /v1/skus/{sku}/reorder")
    def reorder_settings(self, sku: str) -> Call[list[ReorderSetting]]:
        """The reorder point and alert state of every location of ``sku`` that has one
        (``Engine.reorder_settings``)."""
        return Call("GET", f"/v1/skus/{_seg(sku)}/reorder", _items(ReorderSetting))

    @route("GET /v1/alerts")
    def alerts(self, status: str = "active") -> Call[list[LowStockAlert]]:
        """Low-stock alerts (``Engine.alerts``)."""
        return Call("GET", "/v1/alerts", _items(LowStockAlert), params={"status": status})

    @route("POST /v1/reconciliations")
    def reconcile(
        self, body: Json, *, idempotency_key: str | None = None
    ) -> Call[ReconciliationReport]:
        """Compare external counts with the record as of ``counted_at``; ``body`` as
        ``POST /v1/reconciliations`` documents it. Returns the report."""
        return self._write("/v1/reconciliations", body, ReconciliationReport, idempotency_key)

    @route("GET /v1/reconciliations/{reconciliation_id}")
    def get_reconciliation(self, reconciliation_id: str) -> Call[ReconciliationReport]:
        path = f"/v1/reconciliations/{_seg(reconciliation_id)}"
        return Call("GET", path, _model(ReconciliationReport))

    @route("GET /v1/discrepancies")
    def discrepancies(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[DiscrepancyPage]:
        """One page of cases by id; pass ``next_cursor`` back as ``cursor``."""
        params: Params = _without_none(
            {"status": status, "source": source, "cursor": cursor, "limit": limit}
        )
        return Call("GET", "/v1/discrepancies", _model(DiscrepancyPage), params=params)

    @route("GET /v1/discrepancies/{case_id}")
    def get_discrepancy(self, case_id: str) -> Call[DiscrepancyCase]:
        return Call("GET", f"/v1/discrepancies/{_seg(case_id)}", _model(DiscrepancyCase))

    @route("POST /v1/discrepancies/{case_id}/assign")
    def assign_discrepancy(
        self, case_id: str, assignee: str, *, idempotency_key: str | None = None
    ) -> Call[DiscrepancyCase]:
        path = f"/v1/discrepancies/{_seg(case_id)}/assign"
        return self._write(path, {"assignee": assignee}, DiscrepancyCase, idempotency_key)

    @route("POST /v1/discrepancies/{case_id}/resolve")
    def resolve_discrepancy(
        self,
        case_id: str,
        action: str,
        reason: str,
        *,
        root_cause: str | None = None,
        idempotency_key: str | None = None,
    ) -> Call[DiscrepancyCase]:
        body = _without_none({"action": action, "reason": reason, "root_cause": root_cause})
        path = f"/v1/discrepancies/{_seg(case_id)}/resolve"
        return self._write(path, body, DiscrepancyCase, idempotency_key)

    # -- the durable record -------------------------------------------------------------

    @route("GET /v1/ledger")
    def ledger(
        self,
        *,
        sku: str | None = None,
        location: str | None = None,
        types: Iterable[str] = (),
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[LedgerPage]:
        """One page of ledger events; pass ``next_cursor`` back as ``cursor``."""
        params: Params = _without_none(
            {
                "sku": sku,
                "location": location,
                "type": list(types) or None,
                "since": None if since is None else since.isoformat(),
                "cursor": cursor,
                "limit": limit,
            }
        )
        return Call("GET", "/v1/ledger", _model(LedgerPage), params=params)

    # -- webhook endpoints --------------------------------------------------------------

    @route("POST /v1/webhooks/endpoints")
    def create_webhook_endpoint(
        self,
        url: str,
        *,
        events: Iterable[str] | None = None,
        description: str = "",
        idempotency_key: str | None = None,
    ) -> Call[CreatedWebhookEndpoint]:
        """A new endpoint; the answer carries its signing ``secret`` (shown once)."""
        body = _without_none(
            {"url": url, "events": None if events is None else list(events)}
            | {"description": description}
        )
        path = "/v1/webhooks/endpoints"
        return self._write(path, body, CreatedWebhookEndpoint, idempotency_key)

    @route("GET /v1/webhooks/endpoints")
    def list_webhook_endpoints(self) -> Call[list[WebhookEndpoint]]:
        """Every endpoint (without secrets)."""
        return Call("GET", "/v1/webhooks/endpoints", _items(WebhookEndpoint))

    @route("GET /v1/webhooks/endpoints/{endpoint_id}")
    def get_webhook_endpoint(self, endpoint_id: str) -> Call[WebhookEndpoint]:
        path = f"/v1/webhooks/endpoints/{_seg(endpoint_id)}"
        return Call("GET", path, _model(WebhookEndpoint))

    @route("PATCH /v1/webhooks/endpoints/{endpoint_id}")
    def update_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        description: str | None = None,
        disabled: bool | None = None,
    ) -> Call[WebhookEndpoint]:
        """Change what is given (a PATCH carries no Idempotency-Key: it is not retried)."""
        body = _without_none(
            {"url": url, "events": None if events is None else list(events)}
            | {"description": description, "disabled": disabled}
        )
        path = f"/v1/webhooks/endpoints/{_seg(endpoint_id)}"
        return Call("PATCH", path, _model(WebhookEndpoint), json=body)

    @route("DELETE /v1/webhooks/endpoints/{endpoint_id}")
    def delete_webhook_endpoint(self, endpoint_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/webhooks/endpoints/{_seg(endpoint_id)}", _nothing)

    @route("POST /v1/webhooks/endpoints/{endpoint_id}/rotate-secret")
    def rotate_webhook_secret(
        self,
        endpoint_id: str,
        *,
        grace_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> Call[RotatedSecret]:
        path = f"/v1/webhooks/endpoints/{_seg(endpoint_id)}/rotate-secret"
        body = {"grace_seconds": grace_seconds}
        return self._write(path, body, RotatedSecret, idempotency_key)

    @route("POST /v1/webhooks/endpoints/{endpoint_id}/replay")
    def replay_webhooks(
        self,
        endpoint_id: str,
        *,
        after_seq: int | None = None,
        since: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Call[WebhookReplay]:
        """Send recorded events again: those after ``after_seq``, or since ``since``."""
        if (after_seq is None) == (since is None):
            raise ValueError("give exactly one of after_seq and since")
        body: Json = {"after_seq": after_seq} if since is None else {"since": since.isoformat()}
        path = f"/v1/webhooks/endpoints/{_seg(endpoint_id)}/replay"
        return self._write(path, body, WebhookReplay, idempotency_key)

    @route("GET /v1/webhooks/endpoints/{endpoint_id}/deliveries")
    def webhook_deliveries(
        self, endpoint_id: str, *, cursor: str | None = None, limit: int | None = None
    ) -> Call[DeliveryAttempts]:
        """Delivery attempts, newest first; pass ``next_cursor`` back as ``cursor``."""
        params: Params = _without_none({"cursor": cursor, "limit": limit})
        path = f"/v1/webhooks/endpoints/{_seg(endpoint_id)}/deliveries"
        return Call("GET", path, _model(DeliveryAttempts), params=params)

    # -- drops (docs/drops.md) ----------------------------------------------------------

    @route("POST /v1/drops")
    def create_drop(
        self,
        drop_id: str,
        skus: Iterable[str],
        *,
        opens_at: datetime,
        closes_at: datetime | None = None,
        per_customer_limit: int | None = None,
        hold_ttl_seconds: float | None = None,
        waitlist: bool = False,
        offer_ttl_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Drop]:
        """A drop of ``skus`` (``Engine.create_drop``)."""
        body: Json = {
            "id": drop_id,
            "skus": list(skus),
            "opens_at": opens_at.isoformat(),
            "closes_at": None if closes_at is None else closes_at.isoformat(),
            "per_customer_limit": per_customer_limit,
            "hold_ttl_seconds": hold_ttl_seconds,
            "waitlist": waitlist,
            "offer_ttl_seconds": offer_ttl_seconds,
        }
        return self._write("/v1/drops", body, Drop, idempotency_key)

    @route("GET /v1/drops")
    def list_drops(self, *, cursor: str | None = None, limit: int = 50) -> Call[DropPage]:
        """A page of drops by id, with their live figures (``Engine.list_drops``)."""
        params: Params = _without_none({"cursor": cursor}) | {"limit": limit}
        return Call("GET", "/v1/drops", _model(DropPage), params=params)

    @route("GET /v1/drops/{drop_id}")
    def get_drop(self, drop_id: str) -> Call[Drop]:
        """A drop's rules and live figures (``Engine.get_drop``)."""
        return Call("GET", f"/v1/drops/{_seg(drop_id)}", _model(Drop))

    @route("PATCH /v1/drops/{drop_id}")
    def update_drop(
        self,
        drop_id: str,
        *,
        opens_at: datetime | Unchanged = UNCHANGED,
        closes_at: datetime | Unchanged | None = UNCHANGED,
        per_customer_limit: int | Unchanged | None = UNCHANGED,
        hold_ttl_seconds: float | Unchanged = UNCHANGED,
        waitlist: bool | Unchanged = UNCHANGED,
        offer_ttl_seconds: float | Unchanged = UNCHANGED,
        idempotency_key: str | None = None,
    ) -> Call[Drop]:
        """Change a drop before it opens (``Engine.update_drop``): only the fields given."""
        given = {
            "opens_at": opens_at,
            "closes_at": closes_at,
            "per_customer_limit": per_customer_limit,
            "hold_ttl_seconds": hold_ttl_seconds,
            "waitlist": waitlist,
            "offer_ttl_seconds": offer_ttl_seconds,
        }
        body: Json = {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in given.items()
            if value is not UNCHANGED
        }
        path = f"/v1/drops/{_seg(drop_id)}"
        return Call(
            "PATCH", path, _model(Drop), json=body, write=True, idempotency_key=idempotency_key
        )

    @route("POST /v1/drops/{drop_id}/waitlist")
    def join_waitlist(
        self,
        drop_id: str,
        customer: str,
        sku: str,
        qty: int = 1,
        *,
        idempotency_key: str | None = None,
    ) -> Call[WaitlistEntry]:
        """Join the line for ``sku`` (``Engine.join_waitlist``)."""
        body: Json = {"customer": customer, "sku": sku, "qty": qty}
        path = f"/v1/drops/{_seg(drop_id)}/waitlist"
        return self._write(path, body, WaitlistEntry, idempotency_key)

    @route("GET /v1/drops/{drop_id}/waitlist/{customer}")
    def get_waitlist_entry(
        self, drop_id: str, customer: str, sku: str | None = None
    ) -> Call[WaitlistEntry]:
        """A customer's entry (``Engine.get_waitlist_entry``)."""
        path = f"/v1/drops/{_seg(drop_id)}/waitlist/{_seg(customer)}"
        params: Params = _without_none({"sku": sku})
        return Call("GET", path, _model(WaitlistEntry), params=params)

    @route("POST /v1/drops/{drop_id}/waitlist/{customer}/decline")
    def decline_waitlist(
        self,
        drop_id: str,
        customer: str,
        sku: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Call[WaitlistEntry]:
        """Leave the line (``Engine.decline_waitlist``)."""
        path = f"/v1/drops/{_seg(drop_id)}/waitlist/{_seg(customer)}/decline"
        params: Params = _without_none({"sku": sku})
        return Call(
            "POST",
            path,
            _model(WaitlistEntry),
            params=params,
            write=True,
            idempotency_key=idempotency_key,
        )

    # -- channels (docs/channels.md) ----------------------------------------------------

    @route("PUT /v1/channels/{channel}")
    def set_channel(
        self,
        channel: str,
        *,
        buffer_units: int = 0,
        buffer_percent: int = 0,
        floor: int = 0,
        idempotency_key: str | None = None,
    ) -> Call[ChannelSettings]:
        """The channel's default buffer (``Engine.set_channel``)."""
        body = {"buffer_units": buffer_units, "buffer_percent": buffer_percent, "floor": floor}
        path = f"/v1/channels/{_seg(channel)}"
        return Call(
            "PUT",
            path,
            _model(ChannelSettings),
            json=body,
            write=True,
            idempotency_key=idempotency_key,
        )

    @route("GET /v1/channels/{channel}")
    def channel(self, channel: str) -> Call[ChannelSettings]:
        """The channel's default and SKU overrides (``Engine.channel``)."""
        return Call("GET", f"/v1/channels/{_seg(channel)}", _model(ChannelSettings))

    @route("PUT /v1/channels/{channel}/skus/{sku}")
    def set_channel_sku(
        self,
        channel: str,
        sku: str,
        *,
        buffer_units: int = 0,
        buffer_percent: int = 0,
        floor: int = 0,
        idempotency_key: str | None = None,
    ) -> Call[ChannelSkuRule]:
        """The channel's buffer for one SKU (``Engine.set_channel_sku``)."""
        body = {"buffer_units": buffer_units, "buffer_percent": buffer_percent, "floor": floor}
        path = f"/v1/channels/{_seg(channel)}/skus/{_seg(sku)}"
        return Call(
            "PUT",
            path,
            _model(ChannelSkuRule),
            json=body,
            write=True,
            idempotency_key=idempotency_key,
        )

    @route("DELETE /v1/channels/{channel}/skus/{sku}")
    def remove_channel_sku(
        self, channel: str, sku: str, *, idempotency_key: str | None = None
    ) -> Call[ChannelSkuRule]:
        """Remove the channel's override of one SKU (``Engine.remove_channel_sku``)."""
        path = f"/v1/channels/{_seg(channel)}/skus/{_seg(sku)}"
        return Call(
            "DELETE", path, _model(ChannelSkuRule), write=True, idempotency_key=idempotency_key
        )

    @route("POST /v1/channels/{channel}/allocations")
    def allocate(
        self,
        channel: str,
        sku: str,
        location: str = DEFAULT_LOCATION,
        *,
        qty: int,
        idempotency_key: str | None = None,
    ) -> Call[Allocation]:
        """Fence ``qty`` units for the channel, or give them back (< 0) (``Engine.allocate``)."""
        body = {"sku": sku, "location": location, "qty": qty}
        path = f"/v1/channels/{_seg(channel)}/allocations"
        return self._write(path, body, Allocation, idempotency_key)

    @route("DELETE /v1/channels/{channel}/allocations/{sku}")
    def deallocate(
        self,
        channel: str,
        sku: str,
        location: str = DEFAULT_LOCATION,
        *,
        idempotency_key: str | None = None,
    ) -> Call[Allocation]:
        """Give the channel's whole allocation back (``Engine.deallocate``)."""
        path = f"/v1/channels/{_seg(channel)}/allocations/{_seg(sku)}"
        return Call(
            "DELETE",
            path,
            _model(Allocation),
            params={"location": location},
            write=True,
            idempotency_key=idempotency_key,
        )

    # -- shared -------------------------------------------------------------------------

    def _write(self, path: str, body: Json, result: type[M], key: str | None) -> Call[M]:
        return Call("POST", path, _model(result), json=body, write=True, idempotency_key=key)

    def _transition(
        self, reservation_id: str, action: str, body: Json | None, key: str | None
    ) -> Call[Reservation]:
        path = f"/v1/reservations/{_seg(reservation_id)}/{action}"
        return Call("POST", path, _model(Reservation), json=body, write=True, idempotency_key=key)
