"""Signed outbound webhooks from the durable record (docs/webhooks.md).

For receivers, one import: ``from earmark.webhooks import verify`` checks a request's
Standard Webhooks signature and timestamp and returns the parsed event. This package's
``__init__`` imports only the signing module (no service, no HTTP client); the
dispatcher, the delivery worker and endpoint management are its submodules.
"""

from earmark.errors import WebhookVerificationError
from earmark.webhooks.signing import (
    SECRET_PREFIX,
    TOLERANCE_SECONDS_DEFAULT,
    generate_secret,
    headers_for,
    sign,
    signature_header,
    verify,
)

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_SECONDS_DEFAULT",
    "WebhookVerificationError",
    "generate_secret",
    "headers_for",
    "sign",
    "signature_header",
    "verify",
]
