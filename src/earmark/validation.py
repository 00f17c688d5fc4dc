"""Request validation: a bad request raises ``InvalidRequest`` before any write."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable

from earmark import limits
from earmark.errors import InvalidRequest
from earmark.models import Line

# The shapes of our ids. An id of another shape names nothing: the operations answer the
# resource's NotFound (not InvalidRequest), as HTTP answers 404.
RESERVATION_ID = re.compile(r"^rsv_[0-9a-f]{24}_[0-9]{1,4}(-[0-9]{1,4})*$")
TRANSFER_ID = re.compile(r"^trf_[0-9a-f]{24}_[0-9]{1,4}$")
PURCHASE_ORDER_ID = re.compile(r"^po_[0-9a-f]{24}_[0-9]{1,4}(-[0-9]{1,4})*$")
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


def name(value: object, what: str, length_max: int) -> str:
    """A SKU or location: 1..length_max of letters, digits, '.', '_' and '-'."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} must be a non-empty string", field=what)
    if len(value) > length_max:
        raise InvalidRequest(f"{what} is longer than {length_max} characters", field=what)
    if not limits.NAME_PATTERN.fullmatch(value):
        raise InvalidRequest(
            f"{what} {value!r} may hold only letters, digits, '.', '_' and '-' "
            "and must start with a letter or digit",
            field=what,
        )
    return value


def sku(value: object) -> str:
    return name(value, "sku", limits.SKU_LENGTH_MAX)


def location(value: object) -> str:
    return name(value, "location", limits.LOCATION_LENGTH_MAX)


def whole(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an integer", field=what)
    if not low <= value <= high:
        raise InvalidRequest(f"{what} must be between {low} and {high}", field=what)
    return value


def qty(value: object) -> int:
    return whole(value, "qty", 1, limits.QTY_MAX)


def text(value: object, what: str, length_max: int, *, required: bool = False) -> str:
    """Free text recorded on events: printable ASCII, bounded."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string", field=what)
    if required and not value:
        raise InvalidRequest(f"{what} is required", field=what)
    if len(value) > length_max:
        raise InvalidRequest(f"{what} is longer than {length_max} characters", field=what)
    if not PRINTABLE.fullmatch(value):
        raise InvalidRequest(f"{what} may hold only printable ASCII characters", field=what)
    return value


def idempotency_key(value: object, *, required: bool) -> str:
    if value is None:
        if required:
            raise InvalidRequest("an idempotency key is required", field="idempotency_key")
        return ""
    return text(value, "idempotency_key", limits.IDEMPOTENCY_KEY_LENGTH_MAX, required=True)


def ttl_ms(seconds: object, default_ms: int, max_ms: int) -> int:
    """A hold's TTL in whole milliseconds from seconds, fractions rounded (None: the
    default). The bounds apply to the number given, as the HTTP schema states them, so
    0.9996 is refused by both rather than rounded up to the minimum by one."""
    if seconds is None:
        return default_ms
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidRequest("ttl_seconds must be a number", field="ttl_seconds")
    if not math.isfinite(seconds):
        raise InvalidRequest("ttl_seconds must be finite", field="ttl_seconds")
    ms = round(seconds * 1000)
    if not limits.TTL_MS_MIN <= seconds * 1000 <= max_ms:
        raise InvalidRequest(
            f"ttl_seconds must be between {limits.TTL_MS_MIN / 1000:g} and {max_ms / 1000:g}",
            field="ttl_seconds",
        )
    return ms


def lines(
    items: Iterable[Line | tuple[str, int] | tuple[str, int, str]], what: str = "cart"
) -> list[Line]:
    """A cart (or a purchase order, a delivery): 1..LINES_MAX lines, each (sku, location)
    at most once."""
    cart: list[Line] = []
    for item in items:
        if isinstance(item, Line):
            line = item
        elif isinstance(item, tuple) and len(item) in (2, 3):
            where = item[2] if len(item) == 3 else limits.DEFAULT_LOCATION
            line = Line.model_construct(sku=item[0], qty=item[1], location=where)
        else:
            raise InvalidRequest("a line is a Line or a (sku, qty[, location]) tuple")
        # Every field is checked above: construct without pydantic validating it again.
        cart.append(
            Line.model_construct(
                sku=sku(line.sku), qty=qty(line.qty), location=location(line.location)
            )
        )
        if len(cart) > limits.LINES_MAX:
            raise InvalidRequest(f"a {what} holds at most {limits.LINES_MAX} lines", field="lines")
    if not cart:
        raise InvalidRequest(f"a {what} needs at least one line", field="lines")
    seen = {(line.sku, line.location) for line in cart}
    if len(seen) != len(cart):
        raise InvalidRequest(f"each (sku, location) may appear once per {what}", field="lines")
    return cart


def iso_date(value: object, what: str) -> str:
    """A calendar date as ``YYYY-MM-DD``."""
    message = f"{what} must be an ISO date (YYYY-MM-DD)"
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise InvalidRequest(message, field=what)
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError as error:
        raise InvalidRequest(message, field=what) from error


def choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(f"{what} must be one of {', '.join(allowed)}", field=what)
    return value


def flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{what} must be true or false", field=what)
    return value


# -- drops ---------------------------------------------------------------------------------


def customer(value: object) -> str:
    """A customer id as the caller's checkout trusts it (account id, hashed email):
    trimmed and case-folded, so ' Ann@X ' and 'ann@x' are one customer; '' for none."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("customer must be a string", field="customer")
    normal = value.strip().casefold()
    if len(normal) > limits.CUSTOMER_LENGTH_MAX:
        raise InvalidRequest(
            f"customer is longer than {limits.CUSTOMER_LENGTH_MAX} characters", field="customer"
        )
    if not PRINTABLE.fullmatch(normal):
        raise InvalidRequest("customer may hold only printable ASCII characters", field="customer")
    return normal
