"""Typed results and requests of the engine (pydantic models), and the sidecar's answers
that have no engine twin (health, the overview, ledger pages, webhook endpoints...): the
routes declare them and ``earmark.client``, which may import no API or store code,
returns them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from earmark import limits

ReservationStatus = Literal["held", "committed", "released", "expired", "shipped"]


STATUSES = frozenset(ReservationStatus.__args__)  # type: ignore[attr-defined]


def combined_status(statuses: list[str]) -> ReservationStatus:
    """One status for a reservation whose parts live in several partitions.

    A committed part means the commit decision was taken (the rest follow);
    otherwise any part that ended makes the whole reservation ended.
    """
    kinds = set(statuses)
    if len(kinds) == 1:
        (only,) = kinds
        if only not in STATUSES:
            raise ValueError(f"unknown reservation status {only!r}")
        return only  # type: ignore[return-value]
    if kinds & {"committed", "shipped"}:
        return "committed"
    if "expired" in kinds:
        return "expired"
    if "released" in kinds:
        return "released"
    return "held"


def from_ms(ms: int | None) -> datetime | None:
    """Redis server time (ms since the epoch) as an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # True on a result the engine replayed from its idempotency record (the same key and
    # request as an earlier success) instead of executing: HTTP answers it with
    # `Idempotent-Replayed: true`. Not a field, so equality, hashing and JSON ignore it
    # (set by ``earmark.engine.replies.replayed``).
    replayed: ClassVar[bool] = False


class Line(Frozen):
    """One line of a cart: ``qty`` units of ``sku`` at ``location``."""

    sku: str
    qty: int
    location: str = limits.DEFAULT_LOCATION


class ReservationLine(Frozen):
    sku: str
    location: str
    qty: int


class Shortfall(Frozen):
    """A line a reservation could not hold: what was asked and what was free."""

    sku: str
    location: str
    requested: int
    available: int


class StockLevel(Frozen):
    """Every bucket of one (sku, location). ``available = on_hand - reserved - committed``."""

    sku: str
    location: str
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0
    available: int = 0
    in_transit: int = 0
    returned: int = 0
    damaged: int = 0
    written_off: int = 0
    inbound: int = 0
    version: int = 0


class Reservation(Frozen):
    id: str
    status: ReservationStatus
    lines: list[ReservationLine]
    channel: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    committed_at: datetime | None = None
    released_at: datetime | None = None
    expired_at: datetime | None = None
    shipped_at: datetime | None = None


class ReservationPage(Frozen):
    """One page of held reservations (``GET /v1/reservations``): pass ``next_cursor``
    back for the next; None when there are no more."""

    items: list[Reservation]
    next_cursor: str | None = None


class SweepReport(Frozen):
    """What one sweeper pass did, per kind of work."""

    expired: int = Field(0, description="held reservations found expired and given back")
    pins_resolved: int = Field(0, description="stale multi-partition pins resolved")
    offered: int = Field(0, description="waitlist offers made of a drop's free units")


class StockPage(Frozen):
    """One page of the stock index (``GET /v1/skus``): pass ``next_cursor`` back for the
    next; None when the index is done."""

    items: list[StockLevel]
    next_cursor: str | None = None


class SkuStock(Frozen):
    """A SKU across the network: every bucket summed over its locations, and each location."""

    sku: str
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0
    available: int = 0
    in_transit: int = 0
    returned: int = 0
    damaged: int = 0
    written_off: int = 0
    inbound: int = 0
    locations: list[StockLevel] = Field(default_factory=list)
    channel: str | None = Field(None, description="the channel whose view `available` is")
    unbuffered_available: int | None = Field(
        None, description="with a channel: available to a reserve with no channel"
    )
    allocated: int | None = Field(None, description="with a channel: its allocated units")
    channel_locations: list[ChannelLevel] | None = Field(
        None, description="with a channel: its view of each location"
    )


class ChannelLevel(Frozen):
    """One location of a SKU as a channel sees it (``GET /v1/skus/{sku}?channel=``)."""

    location: str
    available: int = Field(description="what the channel may reserve here")
    unbuffered_available: int = Field(description="available to a reserve with no channel")
    allocated: int = Field(0, description="units ring-fenced for the channel here")


class ChannelRule(Frozen):
    """A channel's safety buffer (docs/channels.md): over ``free`` shared units the
    channel sees 0 when free <= floor, else
    max(0, free - max(buffer_units, ceil(free * buffer_percent / 100)))."""

    buffer_units: int = 0
    buffer_percent: int = 0
    floor: int = 0


class ChannelSettings(Frozen):
    """A channel's default rule (None: plain availability) and its SKU overrides."""

    channel: str
    default: ChannelRule | None = None
    skus: dict[str, ChannelRule] = Field(default_factory=dict)


class ChannelSkuRule(Frozen):
    """The outcome of setting or removing one SKU's override of a channel."""

    channel: str
    sku: str
    rule: ChannelRule | None = Field(None, description="None once removed")
    removed: bool = Field(False, description="a removal found an override to remove")


class Allocation(Frozen):
    """Units of a (sku, location) ring-fenced for one channel: counted in ``reserved``,
    reservable by that channel only, drawn down by its reserves."""

    channel: str
    sku: str
    location: str
    allocated: int = Field(description="units fenced for the channel after the move")
    moved: int = Field(0, description="signed units this move fenced (+) or gave back (-)")
    levels: StockLevel | None = None


TransferStatus = Literal["in_transit", "received"]


class Transfer(Frozen):
    """Units on their way from one location of a SKU to another."""

    id: str
    sku: str
    from_location: str
    to_location: str
    qty_shipped: int
    qty_received: int = Field(0, description="units booked in at to_location (once received)")
    status: TransferStatus
    reference: str = ""
    created_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def discrepancy(self) -> int:
        """Received minus shipped once received: negative when units went missing."""
        return self.qty_received - self.qty_shipped if self.status == "received" else 0

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Transfer:
        """A transfer from its record in Redis (a script's view, or the hash as read)."""
        received_at = record.get("received_at")
        return cls(
            id=str(record["id"]),
            sku=str(record["sku"]),
            from_location=str(record["from"]),
            to_location=str(record["to"]),
            qty_shipped=int(record["qty_shipped"]),
            qty_received=int(record.get("qty_received") or 0),
            status=str(record["status"]),
            reference=str(record.get("reference", "")),
            created_at=from_ms(int(record["created_at"])),
            received_at=from_ms(int(received_at)) if received_at else None,
        )


class ReturnReceipt(Frozen):
    """Units of a shipped reservation line back in the ``returned`` bucket."""

    reservation_id: str
    sku: str
    location: str
    qty: int
    returned: int = Field(description="units of the line returned so far, this return included")
    shipped: int = Field(description="units the reservation shipped of the line")
    stock: StockLevel


class CountResult(Frozen):
    """A cycle count: on_hand moved by ``delta = counted - expected``, where ``expected`` is
    on_hand as it stood at the version the counter read."""

    stock: StockLevel
    counted: int
    expected: int
    delta: int
    exposure: int = Field(0, description="units promised beyond on hand that this count added")


PurchaseOrderStatus = Literal["open", "closed", "cancelled"]


class PurchaseOrderLine(Frozen):
    sku: str
    location: str
    expected: int
    received: int = 0
    outstanding: int = Field(0, description="units still counted in inbound (0 once closed)")


class PurchaseOrder(Frozen):
    id: str
    status: PurchaseOrderStatus
    supplier: str
    expected_date: str = Field(description="ISO date the supplier promised delivery")
    reference: str = ""
    lines: list[PurchaseOrderLine]
    created_at: datetime | None = None
    closed_at: datetime | None = None


class Unchanged(enum.Enum):
    """``update_drop``'s default: the field keeps its value (None means 'none')."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


class Drop(Frozen):
    """A drop: SKUs of one partition sold under rules enforced in the reserve script
    (docs/drops.md). ``sold`` and ``held`` are the SKUs' committed and reserved units
    over every location, read with the rules."""

    id: str
    skus: tuple[str, ...]
    opens_at: datetime
    closes_at: datetime | None = None
    per_customer_limit: int | None = None
    hold_ttl_seconds: float
    waitlist: bool = False
    offer_ttl_seconds: float
    created_at: datetime | None = None
    updated_at: datetime | None = None
    actor: str = ""
    open: bool = False
    sold: int = 0
    held: int = 0
    waiting: int = 0
    customers_at_limit: int | None = Field(
        None,
        description="customers whose live holds and sales equal the per-customer limit "
        "now; null when the drop has no limit (or too many to check in one read)",
    )
    offered: int = 0
    # The fair opening (docs/drops.md): the seed that ordered the customers who joined the
    # waitlist before opens_at, published once the drop has opened, and its SHA-256,
    # published from the start so the seed cannot change after the fact.
    opening_seed: str | None = None
    opening_seed_sha256: str | None = None


WaitlistStatus = Literal["waiting", "offered", "converted", "expired", "declined", "skipped"]


class WaitlistOffer(Frozen):
    """The hold offered to a waiting customer: an ordinary reservation to commit."""

    reservation_id: str
    expires_at: datetime


class WaitlistEntry(Frozen):
    """A customer's place on the waitlist of one SKU of a drop (docs/drops.md).
    ``position`` is 1 for the next in line while ``waiting``, else 0."""

    drop: str
    customer: str
    sku: str
    qty: int
    status: WaitlistStatus
    position: int
    offer: WaitlistOffer | None = None
    joined_at: datetime
    changed_at: datetime


class DropSkuFigures(Frozen):
    """One SKU of a drop: committed (``sold``) and reserved (``held``) units over every
    location."""

    sku: str
    sold: int = 0
    held: int = 0


class DropFigures(Frozen):
    """A drop's live figures as ``/metrics`` exports them (``Engine.drop_figures``):
    whether it is open on the server clock, its units sold and held, and per SKU."""

    id: str
    open: bool = False
    sold: int = 0
    held: int = 0
    skus: tuple[DropSkuFigures, ...] = ()


# -- seats (docs/seats.md) ---------------------------------------------------------------

SeatOverage = Literal["none", "1.25x", "1.5x", "2x"]


class SeatPool(Frozen):
    """A tenant's seats: ``limit = floor(cap x factor)`` seats may be held at once,
    assigned plus pending invites. ``over_cap`` while more are held than the limit (a cap
    lowered below use): nothing new is assigned or invited until use falls to it."""

    tenant: str
    cap: int
    overage: SeatOverage
    factor: float
    limit: int
    assigned: int
    invited: int
    available: int
    over_cap: bool
    floating: bool
    lease_seconds: int | None
    period: str = Field(description="billing period of high_water_mark: YYYY-MM (UTC)")
    high_water_mark: int = Field(description="most seats assigned at once in the period")


class Seat(Frozen):
    """A user's seat: ``created`` is False when the user already held it (an idempotent
    repeat). A floating seat is a lease until ``lease_expires_at``."""

    tenant: str
    user: str
    created: bool
    lease_expires_at: datetime | None = None


class SeatFreed(Frozen):
    """``freed``: an assigned seat was given back; ``revoked``: a pending invite was.
    Both False: the user held nothing (an idempotent repeat)."""

    tenant: str
    user: str
    freed: bool
    revoked: bool


class SeatInvite(Frozen):
    """A seat held for ``user`` until ``expires_at``; ``created`` is False when that
    invite already existed (it is returned unchanged)."""

    tenant: str
    user: str
    created: bool
    expires_at: datetime


class SeatUser(Frozen):
    user: str
    lease_expires_at: datetime | None = None


class SeatUserPage(Frozen):
    """Assigned users in user-id order; ``next_cursor`` (the last user) or None at the end."""

    tenant: str
    users: list[SeatUser]
    next_cursor: str | None


# --- reconciliation and low-stock alerts (issue 15) ---


class ReorderSetting(Frozen):
    """The reorder point of one (sku, location) and its alert's state."""

    sku: str
    location: str
    reorder_point: int
    rearm_above: int
    lead_time_days: int | None = None
    low: bool = Field(False, description="the alert fired and waits to re-arm")
    low_since: datetime | None = None


class LowStockAlert(Frozen):
    """A (sku, location) whose available fell to or below its reorder point and has not
    risen above ``rearm_above`` since."""

    sku: str
    location: str
    available: int
    on_hand: int
    reorder_point: int
    rearm_above: int
    lead_time_days: int | None = None
    low_since: datetime = Field(description="when available crossed the reorder point")


CaseStatusName = Literal["open", "investigating", "resolved"]


class DiscrepancyCase(Frozen):
    """A counted line over a threshold: open -> investigating -> resolved
    (docs/reconciliation.md)."""

    id: str
    reconciliation_id: str
    source: str
    sku: str
    location: str
    expected: int = Field(description="on_hand the durable record held at counted_at")
    counted: int = Field(description="the source's count")
    difference: int = Field(description="counted - expected")
    counted_at: datetime
    status: CaseStatusName
    assignee: str | None = None
    root_cause: str | None = None
    notes: str | None = None
    resolution: Literal["adjust", "write_off", "dismiss"] | None = None
    reason: str | None = None
    resolved_by: str | None = None
    opened_at: datetime
    due_at: datetime = Field(description="opened_at + EARMARK_DISCREPANCY_SLA_HOURS")
    resolved_at: datetime | None = None
    overdue: bool = Field(description="past due_at and not resolved")


class StockPlace(Frozen):
    sku: str
    location: str


class ReconciliationReport(Frozen):
    """What a reconciliation found, as of ``counted_at``."""

    id: str
    source: str
    counted_at: datetime
    status: Literal["running", "complete", "failed"]
    threshold_units: int | None = None
    threshold_percent: float | None = None
    lines: int = Field(description="count lines compared")
    matched: int = Field(description="lines within both thresholds")
    discrepancies: int = Field(description="lines over a threshold: one case each")
    not_counted: int = Field(description="(sku, location)s of the counted locations not counted")
    cases: list[DiscrepancyCase] = Field(
        description="the cases opened (the first REPORT_LISTED_MAX; all: GET /v1/discrepancies)"
    )
    not_counted_skus: list[StockPlace] = Field(description="the first REPORT_LISTED_MAX")
    created_by: str
    created_at: datetime
    completed_at: datetime | None = None


class DropPage(Frozen):
    """One page of drops by id (``GET /v1/drops``): pass ``next_cursor`` back for the
    next; None when there are no more."""

    items: list[Drop]
    next_cursor: str | None = None


class DiscrepancyPage(BaseModel):
    """One page of discrepancy cases by id (``GET /v1/discrepancies``)."""

    items: list[DiscrepancyCase]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


# --- the service's own answers (health, overview, ledger, webhooks) ----------------------
# The sidecar's routes answer these and ``earmark.client`` parses them; they live here,
# not in ``earmark.api``, because the client may import no API code. Plain models (not
# ``Frozen``): the service builds some field by field.


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str = ""
    required: bool = Field(
        True, description="false: reported only; readiness does not depend on it"
    )


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Check]


class HoldCounts(BaseModel):
    live: int = Field(description="held reservation parts not yet past their expiry")
    overdue: int = Field(description="past their expiry, not yet given back by the sweeper")
    expiring_next_minute: int = Field(description="live parts whose expiry is within 60 s")


class DurableBacklog(BaseModel):
    waiting_events: int = Field(description="events in Redis not yet in the durable record")
    oldest_age_seconds: float = Field(description="age of the oldest waiting event")


class WebhookBacklog(BaseModel):
    pending_messages: int = Field(description="messages not yet delivered, enabled endpoints")
    dispatch_behind: int = Field(description="ledger rows the dispatcher has not read yet")


class Overview(BaseModel):
    """``GET /v1/overview``: holds, the durable lag, the webhook backlog, health checks."""

    holds: HoldCounts
    durable: DurableBacklog
    webhooks: WebhookBacklog | None = Field(description="null when the record cannot be read now")
    checks: dict[str, Check]


# ``earmark.store.events.ledger_entry`` builds one from a stored event.
class LedgerEntry(BaseModel):
    """One recorded event (docs/design/lifecycle.md lists the types and their deltas)."""

    id: str = Field(description="<partition>/<stream id>: unique for the life of the store")
    type: str
    sku: str
    location: str
    qty: int
    deltas: dict[str, int] = Field(description="bucket -> signed units")
    actor: str
    reason: str | None
    channel: str
    reservation_id: str | None
    idempotency_key: str | None
    occurred_at: datetime
    attributes: dict[str, str] = Field(
        description="every other field of the event (transfer, purchase_order, forced, ...)"
    )


class LedgerPage(BaseModel):
    """One page of ledger events (``GET /v1/ledger``)."""

    items: list[LedgerEntry]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class WebhookEndpoint(BaseModel):
    """A webhook endpoint as ``/v1/webhooks/endpoints`` shows it (never its secret)."""

    id: str
    url: str
    events: list[str]
    description: str
    disabled: bool
    disabled_reason: str | None = Field(description="gone (410), failing (5 days), operator")
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="the first failed attempt since the last success"
    )
    previous_secret_expires_at: datetime | None = Field(
        description="until then the previous secret signs beside the current one"
    )
    created_at: datetime
    updated_at: datetime


class CreatedWebhookEndpoint(WebhookEndpoint):
    secret: str = Field(description="whsec_<base64>: shown only now; store it")


class WebhookEndpoints(BaseModel):
    items: list[WebhookEndpoint]


class RotatedSecret(BaseModel):
    id: str
    secret: str = Field(description="the new whsec_ secret: shown only now")
    previous_secret_expires_at: datetime


class WebhookReplay(BaseModel):
    id: str
    endpoint_id: str
    after_seq: int
    until_seq: int = Field(description="the newest record_seq when the replay was asked for")
    since: datetime | None
    status: str = Field(description="running or done")
    messages: int = Field(description="messages queued so far")
    created_at: datetime


class DeliveryAttempt(BaseModel):
    id: int
    message_id: str = Field(description="the webhook-id header: the same on every retry")
    type: str
    record_seq: int
    attempt: int = Field(description="1 for the first attempt of the message's schedule")
    attempted_at: datetime
    status_code: int | None = Field(description="null: no response (timeout, refused)")
    latency_ms: int
    outcome: str = Field(description="delivered, failed, timeout, throttled, gone, refused")
    error: str | None
    next_attempt_at: datetime | None


class DeliveryAttempts(BaseModel):
    items: list[DeliveryAttempt]
    next_cursor: str | None = Field(description="pass as `cursor` for older attempts; null: last")
