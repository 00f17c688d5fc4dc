"""One exception tree and one outcome table.

Every error earmark raises on purpose is an ``EarmarkError``. Each class declares, once,
its stable ``code`` (the problem ``code`` over HTTP), its ``http_status`` and the problem
``title``; ``ERRORS`` maps every code to its class (filled as the classes are defined, so a
code declared twice fails at import).

``OUTCOMES`` is the other half: each refusal code a Lua script can return, with the class
it raises and the message it reads (formatted with the script's reply and the subject of
the call, e.g. a reservation id). ``earmark.engine.replies.raise_for_error`` reads it;
the HTTP exception handler and ``/openapi.json`` read the classes. Adding an outcome is one
row here (and, for a new kind of error, one class).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

ERRORS: dict[str, type[EarmarkError]] = {}


class EarmarkError(Exception):
    """Base of every error earmark raises on purpose. ``code`` is stable for clients."""

    code: ClassVar[str] = "earmark_error"
    http_status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    # Reply fields a script's refusal carries into ``details`` (see ``from_reply``).
    reply_details: ClassVar[tuple[str, ...]] = ()
    # The name under which the call's subject (an id) is kept in ``details``, if any.
    subject_detail: ClassVar[str | None] = None
    # Seconds a client should wait before retrying (HTTP ``Retry-After``); None: do not.
    retry_after_seconds: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in vars(cls):
            raise TypeError(f"{cls.__name__} must declare its own code")
        if cls.code in ERRORS:
            raise TypeError(f"error code {cls.code!r} is declared twice")
        ERRORS[cls.code] = cls

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], subject: str, message: str) -> EarmarkError:
        """The error for a script's refusal; ``message`` is the outcome's template."""
        details = {name: reply[name] for name in cls.reply_details if name in reply}
        if cls.subject_detail is not None:
            details[cls.subject_detail] = subject
        fields = {k: v for k, v in reply.items() if k != "error"}
        return cls(message.format(subject=subject, **fields), **details)

    @classmethod
    def from_problem(cls, message: str, members: dict[str, Any]) -> EarmarkError:
        """The error for a problem the service answered (``earmark.client``): ``members``
        are those beyond RFC 9457's, as ``details`` were sent."""
        return cls(message, **members)

    @classmethod
    def outcome(cls, reply: Mapping[str, Any], subject: str = "") -> EarmarkError:
        """The error for a script reply's ``error`` code, through ``OUTCOMES``."""
        code = str(reply["error"])
        found = OUTCOMES.get(code)
        if found is None:
            return InternalError(f"unexpected script outcome {code!r}")
        error = found.error.from_reply(reply, subject, found.message)
        error.details.update(found.details)
        return error


ERRORS[EarmarkError.code] = EarmarkError


class InternalError(EarmarkError):
    """A state that should be impossible (a bug, or a stale caller); nothing to retry."""

    code = "internal_error"
    http_status = 500
    title = "Internal server error"


class InvalidRequest(EarmarkError):
    """The request is malformed or outside a documented bound; nothing was written."""

    code = "invalid_request"
    http_status = 422
    title = "The request is invalid"
    reply_details = ("field",)


class InsufficientStock(EarmarkError):
    """A reservation was refused; ``shortfalls`` names every short line."""

    code = "insufficient_stock"
    http_status = 409
    title = "Not enough stock available"

    def __init__(self, message: str, shortfalls: list[Any]) -> None:
        super().__init__(message, lines=shortfalls)
        self.shortfalls = shortfalls

    @classmethod
    def for_lines(cls, shortfalls: list[Any]) -> InsufficientStock:
        names = ", ".join(f"{s.sku}@{s.location} ({s.available}/{s.requested})" for s in shortfalls)
        return cls(f"not enough stock for: {names}", shortfalls)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], subject: str, message: str) -> EarmarkError:
        from earmark.models import Shortfall

        return cls.for_lines([Shortfall(**line) for line in reply["lines"]])

    @classmethod
    def from_problem(cls, message: str, members: dict[str, Any]) -> EarmarkError:
        from earmark.models import Shortfall

        return cls(message, [Shortfall(**line) for line in members.get("lines", [])])


class WouldOversell(EarmarkError):
    """A decrease would push available below zero and was not forced."""

    code = "would_oversell"
    http_status = 409
    title = "The decrease would oversell"
    reply_details = ("available", "requested")


class InsufficientOnHand(EarmarkError):
    """Fewer units are physically on hand than the operation removes."""

    code = "insufficient_on_hand"
    http_status = 409
    title = "Not enough units on hand"
    reply_details = ("on_hand", "requested", "lines")


class ReservationNotFound(EarmarkError):
    code = "reservation_not_found"
    http_status = 404
    title = "No such reservation"
    subject_detail = "id"


class NotOwner(EarmarkError):
    """The reservation was created by another actor (over HTTP: another API key), and the
    caller asked to act only on its own (HTTP does for keys without the ``stock`` scope).
    Nothing was written."""

    code = "not_owner"
    http_status = 403
    title = "The reservation belongs to another caller"
    subject_detail = "id"


class SkuNotFound(EarmarkError):
    """No stock record: for a read, at the (sku, location) asked; for a reservation, a
    line whose SKU has no stock record at any location (``details['lines']`` names each),
    which is a typo or a product never received rather than a sell-out."""

    code = "sku_not_found"
    http_status = 404
    title = "No stock record for this SKU"
    reply_details = ("sku", "location")

    @classmethod
    def for_lines(cls, lines: list[tuple[str, str]]) -> SkuNotFound:
        names = ", ".join(f"{sku}@{location}" for sku, location in lines)
        return cls(
            f"no stock record for these SKUs at any location: {names}",
            lines=[{"sku": sku, "location": location} for sku, location in lines],
        )


class ReservationNotHeld(EarmarkError):
    """The reservation is not in a state that allows the operation; ``status`` says which."""

    code = "invalid_transition"
    http_status = 409
    title = "The reservation cannot make this transition"

    def __init__(self, message: str, status: str, **details: Any) -> None:
        super().__init__(message, status=status, **details)
        self.status = status  # the record's status

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], subject: str, message: str) -> EarmarkError:
        fields = {k: v for k, v in reply.items() if k not in ("error", "reservation")}
        return cls(message.format(subject=subject, **fields), str(reply["status"]))

    @classmethod
    def from_problem(cls, message: str, members: dict[str, Any]) -> EarmarkError:
        rest = dict(members)
        status = str(rest.pop("reservation_status", rest.pop("status", "")))
        return cls(message, status, **rest)


class ReservationExpired(ReservationNotHeld):
    code = "reservation_expired"
    http_status = 410
    title = "The reservation has expired"


class ReservationReleased(ReservationNotHeld):
    code = "reservation_released"
    http_status = 410
    title = "The reservation was released"


class CommitInProgress(ReservationNotHeld):
    """Another caller is committing this multi-partition reservation right now; retry."""

    code = "commit_in_progress"
    title = "The reservation is being committed by another request"


class IdempotencyConflict(EarmarkError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"
    http_status = 422
    title = "The idempotency key was used for another request"


class StoreNotReady(EarmarkError):
    """Redis cannot be trusted to answer: it lacks the generation marker (lost, or never
    set up) or it is fenced (it lacks writes the durable record holds, e.g. after a
    failover to a replica that was behind). Reads and writes are refused until stock is
    rebuilt from the durable record (``earmark rebuild``)."""

    code = "store_not_ready"
    http_status = 503
    title = "The store is not ready"
    retry_after_seconds = 5
    reply_details = ("reason",)

    @property
    def unverified(self) -> bool:
        """Refused only because this primary was not yet checked against the durable
        record (a failover or restart): the engine's verifier may clear it at once."""
        return str(self.details.get("reason", "")).startswith("unverified")


class EngineClosed(EarmarkError):
    """The engine was closed (``close()``): it makes no more calls. Start a new one."""

    code = "engine_closed"
    http_status = 503
    title = "The engine is closed"


class ReclaimBacklog(EarmarkError):
    """More expired holds wait to be given back on a line than one request may give back
    (``RECLAIM_ROUNDS_MAX`` rounds of ``reclaim_per_line_max``); those given back stay
    given back. Retry: refusing now could be false. The sweeper gives back the rest."""

    code = "reclaim_backlog"
    http_status = 503
    title = "Too many expired holds to give back in one request; retry"


class StoreUnavailable(EarmarkError):
    """Redis did not answer or refused to serve for now (unreachable, timed out, failing
    over); retrying later with the same idempotency key is safe."""

    code = "store_unavailable"
    http_status = 503
    title = "Redis is unavailable"
    retry_after_seconds = 1


class StoreFull(StoreUnavailable):
    """Redis reached its maxmemory and refuses writes (OOM)."""

    code = "store_full"
    title = "Redis is out of memory"
    retry_after_seconds = 5


class StoreReadOnly(StoreUnavailable):
    """The Redis answering is a replica (READONLY), e.g. a primary demoted by a failover;
    the client reconnects to the new primary."""

    code = "store_read_only"
    title = "Redis is read-only (a replica)"


class StoreBusy(StoreUnavailable):
    """Redis is busy running a script (BUSY)."""

    code = "store_busy"
    title = "Redis is busy"


class StoreLoading(StoreUnavailable):
    """Redis is loading its dataset into memory (LOADING)."""

    code = "store_loading"
    title = "Redis is loading its data"
    retry_after_seconds = 2


class ReplicationTimeout(StoreUnavailable):
    """The write was applied on the primary but fewer replicas than
    ``EARMARK_MIN_REPLICAS_ACK`` confirmed it in time: it is not acknowledged. A retry with
    the same idempotency key returns the original result once the replicas have it."""

    code = "replication_timeout"
    title = "The replicas did not confirm the write in time"


class DurabilityBacklog(EarmarkError):
    """More events wait for the durable record than ``EARMARK_DURABILITY_BACKLOG_MAX``
    (the record is down or far behind): new demand is refused rather than letting Redis
    run out of memory. Commits, releases and shipments of existing holds still go on."""

    code = "durability_backlog"
    http_status = 503
    title = "Too many events wait for the durable record"
    retry_after_seconds = 5
    reply_details = ("waiting", "limit")


class InsufficientUnits(EarmarkError):
    """A bucket other than on_hand (``returned``, ``damaged``) holds fewer units than the
    operation moves out of it; ``bucket`` names it. Nothing was written."""

    code = "insufficient_units"
    http_status = 409
    title = "Not enough units in the bucket"
    reply_details = ("bucket", "available", "requested")


class StaleCount(EarmarkError):
    """A cycle count named a stock version the engine can no longer (or cannot yet) answer
    for: older than the remembered on_hand changes, not newer than the last applied count
    of the (sku, location) (that shelf was counted since), or newer than the stock. Read
    the stock again and recount; nothing was written."""

    code = "stale_count"
    http_status = 409
    title = "The count's stock version is too old or too new"
    reply_details = ("version", "current", "oldest")


class TransferNotFound(EarmarkError):
    code = "transfer_not_found"
    http_status = 404
    title = "No such transfer"
    subject_detail = "id"


class TransferAlreadyReceived(EarmarkError):
    """The transfer was already received with another quantity; ``transfer`` is its record.
    (Receiving it again with the same quantity returns the record and changes nothing.)"""

    code = "transfer_already_received"
    http_status = 409
    title = "The transfer was received with another quantity"

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], subject: str, message: str) -> EarmarkError:
        from earmark.models import Transfer

        record = Transfer.from_record(reply["transfer"])
        return cls(
            message.format(subject=subject, qty_received=record.qty_received),
            transfer=record.model_dump(mode="json"),
        )


class ReturnExceedsShipped(EarmarkError):
    """A return of more units than the reservation shipped of that line, minus what was
    already returned. Nothing was written."""

    code = "return_exceeds_shipped"
    http_status = 409
    title = "The return exceeds what the reservation shipped"
    reply_details = ("shipped", "returned", "requested")


class PurchaseOrderNotFound(EarmarkError):
    code = "purchase_order_not_found"
    http_status = 404
    title = "No such purchase order"
    subject_detail = "id"


class PurchaseOrderClosed(EarmarkError):
    """The purchase order is closed or cancelled (``status``): it takes no more receipts,
    and a closed order cannot be cancelled (nor the other way round)."""

    code = "purchase_order_closed"
    http_status = 409
    title = "The purchase order is closed or cancelled"

    def __init__(self, message: str, status: str, **details: Any) -> None:
        super().__init__(message, status=status, **details)
        self.status = status  # the order's status

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], subject: str, message: str) -> EarmarkError:
        status = str(reply["status"])
        received = reply.get("received", [])
        return cls(message.format(subject=subject, status=status), status, received_before=received)

    @classmethod
    def from_problem(cls, message: str, members: dict[str, Any]) -> EarmarkError:
        rest = dict(members)
        status = str(rest.pop("purchase_order_status", rest.pop("status", "")))
        return cls(message, status, **rest)


class LedgerError(EarmarkError):
    """The durable record refused or could not understand a write."""

    code = "ledger_error"
    http_status = 500
    title = "The durable record refused the write"


class LedgerUnavailable(LedgerError):
    """The durable record cannot be reached right now; retrying later is safe."""

    code = "ledger_unavailable"
    http_status = 503
    title = "The durable record is unavailable"


class LedgerConflict(LedgerError):
    """An event arrived with the id of a recorded event but other content: Redis reuses
    ids the record already holds (a failover to a replica that was behind, or a clock
    going backwards). The flusher stops rather than drop either event; see
    docs/design/durability.md (Topologies) for the runbook."""

    code = "ledger_conflict"
    http_status = 500
    title = "An event collides with a recorded one"


class LedgerMismatch(LedgerError):
    """The durable record belongs to another store (key prefix or partition count)."""

    code = "ledger_mismatch"
    http_status = 500
    title = "The durable record belongs to another store"


class StartupRefused(EarmarkError):
    """The configuration is unsafe to serve with; the message says how to fix it."""

    code = "startup_refused"
    http_status = 500
    title = "The service refused to start"


class RebuildRefused(EarmarkError):
    """Redis still has its generation markers: rebuilding would overwrite live stock."""

    code = "rebuild_refused"
    http_status = 409
    title = "Rebuild refused"


class WebhookEndpointNotFound(EarmarkError):
    code = "webhook_endpoint_not_found"
    http_status = 404
    title = "No such webhook endpoint"
    subject_detail = "id"


class InvalidWebhookUrl(EarmarkError):
    """The endpoint URL is not http(s), or names an address webhooks may not reach
    (private, loopback, link-local) while EARMARK_WEBHOOKS_ALLOW_PRIVATE is off."""

    code = "invalid_webhook_url"
    http_status = 422
    title = "The webhook URL is not allowed"


class WebhookEndpointsFull(EarmarkError):
    """The store holds the most webhook endpoints it allows; delete one first."""

    code = "webhook_endpoints_full"
    http_status = 409
    title = "Too many webhook endpoints"


class WebhookVerificationError(EarmarkError):
    """A webhook did not verify: a header is missing or malformed, its timestamp is
    outside the tolerance, or no signature matches (``earmark.webhooks.verify``)."""

    code = "webhook_verification_failed"
    http_status = 400
    title = "The webhook signature does not verify"


class UnexpectedResponse(EarmarkError):
    """The client (``earmark.client``) got an answer it cannot read as a result or as a
    problem of a known code (a proxy's error page, a newer server), or no answer at all
    after its retries; ``status`` and ``code`` say what came back, when anything did."""

    code = "unexpected_response"
    http_status = 502
    title = "The service's answer could not be read"


# -- refused by the HTTP service around the operation (earmark.api) -----------------


class MalformedJson(EarmarkError):
    code = "malformed_json"
    http_status = 400
    title = "The request body is not valid JSON"


class UnsupportedMediaType(EarmarkError):
    """A body was sent with a Content-Type other than JSON (``curl -d`` sends form
    encoding): the body is not read as JSON, so say which header to send."""

    code = "unsupported_media_type"
    http_status = 415
    title = "The request body must be JSON"


class IdempotencyKeyRequired(EarmarkError):
    code = "idempotency_key_required"
    http_status = 400
    title = "An Idempotency-Key header is required"


class Unauthorized(EarmarkError):
    """No bearer token, or one that matches no API key."""

    code = "unauthorized"
    http_status = 401
    title = "Authentication required"


class Forbidden(EarmarkError):
    """The API key lacks the scope the operation needs."""

    code = "forbidden"
    http_status = 403
    title = "The API key lacks the scope for this operation"


class BodyTooLarge(EarmarkError):
    """The body is larger than ``EARMARK_MAX_BODY_BYTES``; refused before it is read (by
    ``Content-Length``) or as soon as a chunked body passes the bound."""

    code = "body_too_large"
    http_status = 413
    title = "The request body is too large"


class HeadersTooLarge(EarmarkError):
    """The request line and headers are larger than ``EARMARK_MAX_HEADER_BYTES``
    (answered by the HTTP protocol, ``earmark.api.protocol``, before the app runs)."""

    code = "headers_too_large"
    http_status = 431
    title = "The request headers are too large"


class RequestTimeout(EarmarkError):
    """The headers or the body did not arrive within ``EARMARK_REQUEST_TIMEOUT_SECONDS``:
    a slow client cannot hold a connection."""

    code = "request_timeout"
    http_status = 408
    title = "The request did not arrive in time"


class Overloaded(EarmarkError):
    """More requests are in flight than ``EARMARK_MAX_CONCURRENT_REQUESTS``; retry after
    ``Retry-After`` seconds."""

    code = "overloaded"
    http_status = 503
    title = "The service is handling too many requests"


class RouteNotFound(EarmarkError):
    code = "not_found"
    http_status = 404
    title = "No such resource"


class MethodNotAllowed(EarmarkError):
    code = "method_not_allowed"
    http_status = 405
    title = "Method not allowed"


class NotReady(EarmarkError):
    """A readiness check failed (``/readyz``); ``checks`` says which."""

    code = "not_ready"
    http_status = 503
    title = "The service is not ready"


# -- drops (docs/drops.md) ---------------------------------------------------------------


class DropNotFound(EarmarkError):
    code = "drop_not_found"
    http_status = 404
    title = "No such drop"
    subject_detail = "id"


class DropExists(EarmarkError):
    """A drop with this id exists already; nothing was written."""

    code = "drop_exists"
    http_status = 409
    title = "The drop exists already"
    subject_detail = "id"


class SkuInDrop(EarmarkError):
    """A SKU belongs to another drop already (a SKU is in at most one drop)."""

    code = "sku_in_drop"
    http_status = 409
    title = "The SKU belongs to another drop"
    reply_details = ("sku", "drop")


class DropAlreadyOpen(EarmarkError):
    """A drop's times and limits change only before it opens (Redis clock)."""

    code = "drop_already_open"
    http_status = 409
    title = "The drop has opened: its rules no longer change"
    reply_details = ("opens_at",)


class CustomerRequired(EarmarkError):
    """A reservation of a drop's SKU names no customer; nothing was written."""

    code = "customer_required"
    http_status = 422
    title = "A customer is required for this drop"
    reply_details = ("drop",)


class DropNotOpen(EarmarkError):
    """Before ``opens_at`` or from ``closes_at`` on (Redis clock); nothing was held."""

    code = "drop_not_open"
    http_status = 409
    title = "The drop is not open"
    reply_details = ("drop",)

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any], subject: str, message: str) -> EarmarkError:
        """``opens_at`` and ``closes_at`` (Redis ms) as RFC 3339, as every other time."""
        from earmark.models import from_ms

        error = super().from_reply(reply, subject, message)
        for name in ("opens_at", "closes_at"):
            when = from_ms(reply.get(name))
            error.details[name] = None if when is None else when.isoformat()
        return error


class CustomerLimitExceeded(EarmarkError):
    """The customer's live holds and committed units of the drop plus this request would
    exceed its per-customer limit; nothing was held."""

    code = "customer_limit_exceeded"
    http_status = 409
    title = "The customer's limit for this drop would be exceeded"
    reply_details = ("drop", "limit", "used", "requested")


class RateLimited(EarmarkError):
    """More reserve attempts by this customer on this drop in this second than allowed."""

    code = "rate_limited"
    http_status = 429
    title = "Too many attempts; retry shortly"
    retry_after_seconds = 1
    reply_details = ("drop", "per_second", "retry_after_ms")


class CartSpansDrops(EarmarkError):
    """A cart takes SKUs of two drops; each drop's rules apply to its own cart."""

    code = "cart_spans_drops"
    http_status = 422
    title = "A cart may take the SKUs of one drop only"
    reply_details = ("drops",)


class SkuNotInDrop(EarmarkError):
    """The SKU named is not one of the drop's (a drop's SKUs never change)."""

    code = "sku_not_in_drop"
    http_status = 409
    title = "The SKU is not one of the drop's"
    reply_details = ("sku", "drop")


class WaitlistDisabled(EarmarkError):
    """The drop was created with ``waitlist`` false; nobody was added."""

    code = "waitlist_disabled"
    http_status = 409
    title = "This drop has no waitlist"
    subject_detail = "drop"


class WaitlistEntryNotFound(EarmarkError):
    """The customer never joined the waitlist of this SKU of the drop."""

    code = "waitlist_entry_not_found"
    http_status = 404
    title = "No waitlist entry for this customer"
    reply_details = ("customer", "sku")


# -- end of drops -------------------------------------------------------------------------
# -- channels (docs/channels.md) ---------------------------------------------------------


class InvalidChannelRule(InvalidRequest):
    """A buffer rule with a negative number, a percent above 100 or a bound passed;
    nothing was written."""

    code = "invalid_channel_rule"
    title = "The channel rule is out of range"


class AllocationShort(EarmarkError):
    """More units to give back than the channel's allocation of the (sku, location)
    holds; nothing was moved."""

    code = "allocation_short"
    http_status = 409
    title = "The channel's allocation holds fewer units"
    reply_details = ("channel", "allocated", "requested")


class ChannelRulesFull(EarmarkError):
    """The channel keeps the most rules a partition allows; remove an override first."""

    code = "channel_rules_full"
    http_status = 409
    title = "The channel has too many rules"
    reply_details = ("limit",)


# -- end of channels ----------------------------------------------------------------------
# -- seats (docs/seats.md) ---------------------------------------------------------------


class TenantNotFound(EarmarkError):
    """The tenant has no seat pool: set its cap first (``PUT /v1/tenants/{t}/seats``)."""

    code = "tenant_not_found"
    http_status = 404
    title = "No seat pool for this tenant"
    subject_detail = "tenant"


class InvalidSeatCap(InvalidRequest):
    code = "invalid_seat_cap"
    title = "The seat cap is not a whole number in range"


class InvalidOverage(InvalidRequest):
    code = "invalid_overage"
    title = "The overage is not one of none, 1.25x, 1.5x, 2x"


class InvalidUserId(InvalidRequest):
    code = "invalid_user_id"
    title = "The user id is empty, too long or has characters a user id may not"


class SeatLimitReached(EarmarkError):
    """Every seat the tenant may hold (floor(cap x factor), assigned plus pending
    invites) is taken; nothing was written."""

    code = "seat_limit_reached"
    http_status = 409
    title = "The tenant's seats are all taken"
    reply_details = ("cap", "used", "limit")
    subject_detail = "tenant"


class OverCap(EarmarkError):
    """The cap was lowered below the seats in use: nobody was evicted, but no seat is
    assigned or invited until use falls to the limit."""

    code = "over_cap"
    http_status = 409
    title = "The tenant uses more seats than its cap allows"
    reply_details = ("cap", "used", "limit")
    subject_detail = "tenant"


class SeatNotFound(EarmarkError):
    """The user holds no seat of the tenant (never, freed, or its lease ran out)."""

    code = "seat_not_found"
    http_status = 404
    title = "The user holds no seat"
    reply_details = ("user",)
    subject_detail = "tenant"


class InviteNotFound(EarmarkError):
    """No live invite for the user (never sent, revoked, or expired: its seat was freed)."""

    code = "invite_not_found"
    http_status = 404
    title = "No live invite for this user"
    reply_details = ("user",)
    subject_detail = "tenant"


class SeatAlreadyAssigned(EarmarkError):
    """An invite for a user who already holds a seat."""

    code = "seat_already_assigned"
    http_status = 409
    title = "The user already holds a seat"
    reply_details = ("user",)
    subject_detail = "tenant"


# --- reconciliation and low-stock alerts (issue 15) ---


class InvalidReorderPoint(InvalidRequest):
    """A reorder setting is inconsistent (e.g. rearm_above not above reorder_point)."""

    code = "invalid_reorder_point"
    http_status = 422
    title = "The reorder setting is invalid"


class InvalidReconciliation(InvalidRequest):
    """A reconciliation upload is malformed (a bad line, a duplicate (sku, location),
    a threshold out of range); ``details.line`` names the first bad line."""

    code = "invalid_reconciliation"
    http_status = 422
    title = "The reconciliation is invalid"


class ReconciliationTooLarge(EarmarkError):
    """More count lines than one request may carry; use ``earmark reconcile``."""

    code = "reconciliation_too_large"
    http_status = 413
    title = "Too many count lines in one request"


class ReconciliationNotFound(EarmarkError):
    code = "reconciliation_not_found"
    http_status = 404
    title = "No such reconciliation"


class DiscrepancyNotFound(EarmarkError):
    code = "discrepancy_not_found"
    http_status = 404
    title = "No such discrepancy case"


class DiscrepancyResolved(EarmarkError):
    """The case is resolved already: nothing more may change it."""

    code = "discrepancy_resolved"
    http_status = 409
    title = "The discrepancy case is resolved"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A refusal a Lua script can return: the error it raises and its message template
    (``str.format`` with the reply's fields and ``subject``)."""

    error: type[EarmarkError]
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


NOT_READY_MESSAGE = (
    "Redis cannot be trusted for this partition ({reason}): reads and writes are refused "
    "until stock is rebuilt from the durable record (earmark rebuild)"
)

OUTCOMES: dict[str, Outcome] = {
    "store_not_ready": Outcome(StoreNotReady, NOT_READY_MESSAGE),
    "durability_backlog": Outcome(
        DurabilityBacklog,
        "{waiting} events wait for the durable record (at most {limit} per partition): "
        "new demand is refused until the flusher catches up",
    ),
    "idempotency_conflict": Outcome(
        IdempotencyConflict, "this idempotency key was already used for another request"
    ),
    "insufficient_stock": Outcome(InsufficientStock, "not enough stock"),
    "reclaim_more": Outcome(
        ReclaimBacklog,
        "more expired holds wait to be given back ({subject}) than one request may give "
        "back; retry: those given back so far stay given back, and the sweeper frees the "
        "rest",
    ),
    "would_oversell": Outcome(
        WouldOversell,
        "a decrease of {requested} is more than the {available} units available; force the "
        "decrease to record it anyway",
    ),
    "insufficient_on_hand": Outcome(
        InsufficientOnHand, "fewer units are on hand than the operation removes"
    ),
    "reservation_not_found": Outcome(ReservationNotFound, "no reservation {subject}"),
    "not_owner": Outcome(
        NotOwner,
        "reservation {subject} was created by another caller: only it, or an operator (an "
        "API key with the stock scope), may change it",
    ),
    "reservation_expired": Outcome(ReservationExpired, "reservation {subject} has expired"),
    "reservation_released": Outcome(ReservationReleased, "reservation {subject} was released"),
    "commit_in_progress": Outcome(
        CommitInProgress, "reservation {subject} is being committed by another request; retry"
    ),
    "invalid_transition": Outcome(
        ReservationNotHeld, "reservation {subject} is {status}: the operation is not allowed"
    ),
    "stale_count": Outcome(
        StaleCount,
        "stock version {version} cannot be counted against: a count may name a version "
        "from {oldest} to {current} (older ones are forgotten or were counted since); read "
        "the stock again and recount",
    ),
    "insufficient_units": Outcome(
        InsufficientUnits, "only {available} units are {bucket}, {requested} requested"
    ),
    "return_exceeds_shipped": Outcome(
        ReturnExceedsShipped,
        "reservation {subject} shipped {shipped} of the line and {returned} already came "
        "back; {requested} more cannot",
    ),
    "no_line": Outcome(
        InvalidRequest, "{subject} has no line for {sku} at {location}", {"field": "lines"}
    ),
    "transfer_not_found": Outcome(TransferNotFound, "no transfer {subject}"),
    "transfer_already_received": Outcome(
        TransferAlreadyReceived,
        "transfer {subject} was already received with {qty_received} units",
    ),
    "purchase_order_not_found": Outcome(PurchaseOrderNotFound, "no purchase order {subject}"),
    "purchase_order_closed": Outcome(PurchaseOrderClosed, "purchase order {subject} is {status}"),
    "sku_not_found": Outcome(SkuNotFound, "no stock record for {sku} {at}"),
    # channels (docs/channels.md)
    "allocation_short": Outcome(
        AllocationShort,
        "channel {channel} holds {allocated} allocated units here; {requested} cannot go back",
    ),
    "channel_rules_full": Outcome(
        ChannelRulesFull, "channel {subject} keeps {limit} rules in this partition already"
    ),
    # drops (docs/drops.md)
    "drop_not_found": Outcome(DropNotFound, "no drop {subject}"),
    "drop_exists": Outcome(DropExists, "drop {subject} exists already"),
    "sku_in_drop": Outcome(SkuInDrop, "{sku} belongs to drop {drop} already"),
    "drop_already_open": Outcome(
        DropAlreadyOpen, "drop {subject} has opened: its times and limits no longer change"
    ),
    "customer_required": Outcome(CustomerRequired, "drop {drop} needs a customer"),
    "drop_not_open": Outcome(DropNotOpen, "drop {drop} is not open"),
    "customer_limit_exceeded": Outcome(
        CustomerLimitExceeded,
        "drop {drop} allows {limit} units per customer: {used} used, {requested} more asked",
    ),
    "rate_limited": Outcome(
        RateLimited, "at most {per_second} attempts per second per customer on drop {drop}"
    ),
    "cart_spans_drops": Outcome(CartSpansDrops, "a cart may take the SKUs of one drop only"),
    "waitlist_disabled": Outcome(WaitlistDisabled, "drop {subject} has no waitlist"),
    "sku_not_in_drop": Outcome(SkuNotInDrop, "{sku} is not a SKU of drop {drop}"),
    "waitlist_entry_not_found": Outcome(
        WaitlistEntryNotFound, "the customer has no waitlist entry on drop {subject}"
    ),
    # decline_waitlist found an offer that the release of its reservation did not end
    # (earmark.engine.ops.waitlist: the release runs first, so this means a stale read).
    "waitlist_offered": Outcome(
        InternalError, "the waitlist entry still holds offer {reservation} on drop {subject}"
    ),
    # The head of a drop's waitlist moved under every round of a freeing call
    # (earmark.engine.ops.offers): heavy contention on one SKU's line.
    "offer_keys": Outcome(
        RateLimited, "the waitlist of drop {drop} changed under every attempt; retry"
    ),
    # The same customer's entries changed under every round of its reserve call
    # (earmark.engine.ops.drops): concurrent attempts by one identity.
    "drop_keys": Outcome(
        RateLimited, "concurrent reserve attempts by one customer on drop {drop}; retry"
    ),
    "lines_mismatch": Outcome(
        InternalError, "the lines sent for {subject} are not the record's (a stale caller)"
    ),
    # seats (docs/seats.md)
    "tenant_not_found": Outcome(TenantNotFound, "tenant {subject} has no seat pool"),
    "seat_limit_reached": Outcome(
        SeatLimitReached, "tenant {subject} uses {used} of its {limit} seats (cap {cap})"
    ),
    "over_cap": Outcome(
        OverCap,
        "tenant {subject} uses {used} seats, more than its limit {limit} (cap {cap}): no new "
        "seat until use falls to the limit",
    ),
    "seat_not_found": Outcome(SeatNotFound, "{user} holds no seat of tenant {subject}"),
    "invite_not_found": Outcome(InviteNotFound, "no live invite for {user} at tenant {subject}"),
    "seat_already_assigned": Outcome(
        SeatAlreadyAssigned, "{user} already holds a seat of tenant {subject}"
    ),
}
