"""Standard Webhooks signatures (https://www.standardwebhooks.com), both sides.

A message is signed over ``"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256
under the endpoint's secret (``whsec_`` + base64 of the key). ``webhook-signature`` holds
one ``v1,<base64>`` per secret, separated by spaces: during a rotation both the new and
the old secret sign, so a receiver verifies with either.

This module is the receiver's helper too (``earmark.webhooks.verify``): it imports
nothing of the service, only the standard library, orjson and the error table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random_secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from earmark.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
SECRET_BYTES_MIN = 24
SECRET_BYTES_MAX = 64
SIGNATURE_VERSION = "v1"
TOLERANCE_SECONDS_DEFAULT = 300
# A signature header with more entries than this is refused unread (several secrets at
# most during a rotation; a flood of entries is an attack on the verifier's time).
SIGNATURES_MAX = 16
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``whsec_<base64>`` (the prefix is optional, as the spec allows).
    Raises ``ValueError`` for anything else."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not SECRET_BYTES_MIN <= len(key) <= SECRET_BYTES_MAX:
        raise ValueError(
            f"a webhook secret holds {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} bytes, not {len(key)}"
        )
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature: ``v1,<base64 of HMAC-SHA256("{msg_id}.{timestamp}.{body}")>``."""
    digest = _digest(secret_key(secret), msg_id, timestamp, body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one signature per secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def headers_for(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(secrets, msg_id, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict may spell it any way; HTTP header names ignore case
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value:
        raise WebhookVerificationError(f"the {name} header is missing")
    return value


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_seconds: float = TOLERANCE_SECONDS_DEFAULT,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Verifies a webhook as its receiver: returns the parsed event (``type``,
    ``timestamp``, ``data``), or raises ``WebhookVerificationError``.

    ``headers`` is any mapping of the request's headers (a Starlette ``Headers``, a
    dict); ``body`` the raw bytes as received (verify before parsing: re-serialized JSON
    does not verify). The timestamp must be within ``tolerance_seconds`` of ``now``
    (default: the clock), which keeps a captured request from being replayed later;
    deduplicate on ``webhook-id`` for the rest. Every ``v1`` signature in the header is
    compared in constant time; one match is enough (during a rotation the service signs
    with the old and the new secret).
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    msg_id = _header(headers, ID_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER).split(" ")
    if not stamp.isdigit() or len(stamp) > 12:
        raise WebhookVerificationError("the webhook-timestamp header is not whole seconds")
    timestamp = int(stamp)
    clock = time.time() if now is None else now
    if timestamp < clock - tolerance_seconds:
        raise WebhookVerificationError("the webhook timestamp is too old")
    if timestamp > clock + tolerance_seconds:
        raise WebhookVerificationError("the webhook timestamp is too new")
    if len(signatures) > SIGNATURES_MAX:
        raise WebhookVerificationError("the webhook-signature header holds too many entries")
    try:
        expected = _digest(secret_key(secret), msg_id, timestamp, raw)
    except ValueError as error:
        raise WebhookVerificationError(f"cannot verify with this secret: {error}") from None
    matched = False
    for entry in signatures:
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError("no webhook signature matches")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise WebhookVerificationError("the webhook body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("the webhook body is not a JSON object")
    return event
