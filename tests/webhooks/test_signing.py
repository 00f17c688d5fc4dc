"""Signatures: ours agree with the ``standardwebhooks`` reference library both ways, and
``earmark.webhooks.verify`` refuses everything it should."""

from __future__ import annotations

import base64
import datetime
import subprocess
import sys
import time

import pytest
import standardwebhooks

from earmark.webhooks import WebhookVerificationError, generate_secret, headers_for, sign, verify
from earmark.webhooks.signing import secret_key

BODY = b'{"type":"stock.changed","timestamp":"2025-01-01T00:00:00.000Z","data":{"seq":3}}'


def test_a_secret_is_whsec_and_24_to_64_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert secret != generate_secret()
    for bad in ("whsec_", "whsec_!!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="webhook secret"):
            secret_key(bad)


def test_the_reference_library_verifies_what_we_sign() -> None:
    secret = generate_secret()
    headers = headers_for([secret], "msg_1", int(time.time()), BODY)
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == verify(secret, headers, BODY)


def test_we_verify_what_the_reference_library_signs() -> None:
    secret = generate_secret()
    reference = standardwebhooks.Webhook(secret)
    now = datetime.datetime.now(tz=datetime.UTC)
    signature = reference.sign("msg_2", now, BODY.decode())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert sign(secret, "msg_2", int(now.timestamp()), BODY) == signature
    assert verify(secret, headers, BODY)["data"] == {"seq": 3}


def test_during_a_rotation_either_secret_verifies_both_libraries() -> None:
    old, new = generate_secret(), generate_secret()
    headers = headers_for([new, old], "msg_3", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        verify(secret, headers, BODY)
        standardwebhooks.Webhook(secret).verify(BODY, headers)
    stranger = generate_secret()
    with pytest.raises(WebhookVerificationError, match="no webhook signature"):
        verify(stranger, headers, BODY)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(stranger).verify(BODY, headers)


def test_headers_are_read_in_any_case() -> None:
    secret = generate_secret()
    headers = {k.upper(): v for k, v in headers_for([secret], "m", int(time.time()), BODY).items()}
    assert verify(secret, headers, BODY)["type"] == "stock.changed"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "no webhook signature"),
        (lambda h, b: (h, b.replace(b"3", b"4")), "no webhook signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-signature": ""}, b), "missing"),
        (lambda h, b: ({**h, "webhook-timestamp": "12.5"}, b), "whole seconds"),
        (lambda h, b: ({**h, "webhook-signature": "v2,AAAA"}, b), "no webhook signature"),
        (lambda h, b: ({**h, "webhook-signature": "v1,not base64!"}, b), "no webhook signature"),
        (lambda h, b: ({**h, "webhook-signature": " ".join(["v1,AAAA"] * 17)}, b), "too many"),
    ],
    ids=["id", "body", "no-id", "no-signature", "fraction", "version", "garbage", "flood"],
)
def test_tampering_is_refused(change: object, message: str) -> None:
    secret = generate_secret()
    headers = headers_for([secret], "msg_4", int(time.time()), BODY)
    changed_headers, changed_body = change(headers, BODY)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError, match=message):
        verify(secret, changed_headers, changed_body)


def test_the_timestamp_must_be_within_the_tolerance() -> None:
    secret = generate_secret()
    signed_at = 1_700_000_000
    headers = headers_for([secret], "msg_5", signed_at, BODY)
    assert verify(secret, headers, BODY, now=signed_at + 299)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, headers, BODY, now=signed_at + 301)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(secret, headers, BODY, now=signed_at - 301)
    assert verify(secret, headers, BODY, 3_600, now=signed_at + 3_000)
    # the reference library agrees: its window is 5 minutes around its clock
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        standardwebhooks.Webhook(secret).verify(BODY, headers)


def test_a_body_that_is_not_a_json_object_is_refused_after_the_signature() -> None:
    secret = generate_secret()
    for body in (b"[1]", b"not json"):
        headers = headers_for([secret], "msg_6", int(time.time()), body)
        with pytest.raises(WebhookVerificationError, match="JSON"):
            verify(secret, headers, body)


def test_the_receiver_helper_imports_no_service_code() -> None:
    code = (
        "import sys, earmark.webhooks; "
        "bad = [m for m in sys.modules if m.startswith(('earmark.api.', 'earmark.durable', "
        "'earmark.store', 'earmark.webhooks.delivery', 'httpx', 'fastapi', 'asyncpg'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
