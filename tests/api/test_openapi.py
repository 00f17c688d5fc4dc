"""``/openapi.json`` is accurate: schemathesis generates requests from it against the app
(over ASGI, lifespan included) and checks every response against it."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import fakeredis
import hypothesis
import orjson
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from earmark import AsyncEngine, Engine, EngineConfig, apikeys
from earmark.api.app import create_app
from tests.support.api import make_settings
from tests.support.backends import fresh_prefix

MAX_EXAMPLES = 50
NO_INPUT = {"/healthz", "/readyz", "/metrics"}


def app_with_stock() -> Any:
    """A fresh embedded store with stock and one all-scopes key; the app starts it."""
    server = fakeredis.FakeServer()
    config = EngineConfig(prefix=fresh_prefix())
    with Engine.embedded(config, server=server) as setup:
        for sku in ("A", "B", "0"):
            setup.receive(sku, 1_000)
    # Generated webhook URLs name hosts like "0" and "a.b": allow private addresses so
    # they are accepted without DNS (what a local setup does), and say so.
    settings = make_settings(webhooks_allow_private=True)
    app = create_app(settings, AsyncEngine.embedded(config, server=server))
    token, key = apikeys.new_key("schemathesis", frozenset(apikeys.SCOPES))

    async def add_key() -> None:
        assert await (await app.state.durable.ledger_for_reads()).create_api_key(key)

    asyncio.run(add_key())
    return app, token


def documented_rules_hold(case: schemathesis.Case) -> bool:
    """The documented rules JSON Schema cannot say: each (sku, location) once a cart (or
    a purchase order, a delivery), a transfer between two different locations, and
    lease_seconds exactly for a floating seat pool."""
    body = case.body if isinstance(case.body, dict) else {}
    if "cap" in body and bool(body.get("floating")) != (body.get("lease_seconds") is not None):
        return False  # a seat pool has lease_seconds exactly when it is floating
    if "from_location" in body and body.get("from_location") == body.get("to_location"):
        return False
    if body.get("closes_at") and not body.get("opens_at"):
        return False  # a drop change whose closes_at may come before the drop's opens_at
    if body.get("opens_at") and body.get("closes_at"):  # a drop closes after it opens
        opens, closes = (datetime.fromisoformat(body[k]) for k in ("opens_at", "closes_at"))
        if closes <= opens:
            return False
    # reorder points re-arm above the point; counts name each (sku, location) once and
    # were taken in the past (docs/reconciliation.md)
    if "rearm_above" in body and not body["rearm_above"] > body.get("reorder_point", 0):
        return False
    counted_at = body.get("counted_at")
    if isinstance(counted_at, str) and counted_at >= "2026":
        return False
    counts = body.get("counts")
    if isinstance(counts, list):
        keys = [(c.get("sku"), c.get("location", "default")) for c in counts]
        if len(set(keys)) != len(keys):
            return False
    lines = body.get("lines")
    if not isinstance(lines, list):
        return True
    seen = [(line.get("sku"), line.get("location", "default")) for line in lines]
    return len(set(seen)) == len(seen)


def without_cursor(case: schemathesis.Case) -> schemathesis.Case:
    """A ledger cursor is only valid as the server gave it ("pass next_cursor as
    given"): a generated one is rightly refused, so valid requests send none."""
    if case.query:
        case.query.pop("cursor", None)
    return case


@pytest.mark.scenario
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_matches_its_openapi_document(mode: GenerationMode) -> None:
    """Every operation, with valid (positive) then invalid (negative) generated requests;
    one test per mode, so each stays within the per-test timeout."""
    app, token = app_with_stock()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @schema.auth()
    class BearerToken:
        """Schemathesis then knows the requests are authenticated on purpose."""

        def get(self, case: schemathesis.Case, context: Any) -> str:
            return str(token)

        def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
            if case.headers is None:
                case.headers = {}
            case.headers["Authorization"] = f"Bearer {data}"

    headers: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 41  # 26 of the engine and the ledger, 8 of webhooks, 7 of seats
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path in NO_INPUT:
            continue  # nothing to make invalid
        fuzz(operation, mode, headers, statuses)
    if mode is GenerationMode.POSITIVE:
        # the requests were authenticated and many were valid: not a run of 401s
        assert sum(n for status, n in statuses.items() if status < 300) > 100, statuses
    else:
        # invalid requests were refused, with documented answers (checked per case)
        assert sum(n for status, n in statuses.items() if status >= 400) > 100, statuses


def fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], statuses: Counter[int]
) -> None:
    positive = mode is GenerationMode.POSITIVE
    strategy = operation.as_strategy(mode)
    if positive:
        strategy = strategy.filter(documented_rules_hold).map(without_cursor)

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        sent = dict(headers)
        if positive and "Idempotency-Key" in (case.headers or {}):
            # generated keys repeat across cases: a repeat is a (correct) conflict
            sent["Idempotency-Key"] = uuid.uuid4().hex
        statuses[case.call_and_validate(headers=sent).status_code] += 1

    check()


HOSTILE_EXAMPLES = 5


def test_hostile_requests_get_documented_answers() -> None:
    """The commonest hostile or careless writes, made from valid generated requests: no
    Idempotency-Key (400), JSON sent as text/plain (415), no token (401). Each answer
    must be a documented status with a body that matches the document."""
    app, token = app_with_stock()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
        not_a_server_error,
    ]
    seen: Counter[tuple[str, int]] = Counter()
    writes = [
        op for op in (r.ok() for r in schema.get_all_operations()) if op.method.upper() == "POST"
    ]
    assert len(writes) >= 19
    for operation in writes:
        strategy = operation.as_strategy(GenerationMode.POSITIVE).filter(documented_rules_hold)

        @hypothesis.given(case=strategy)
        @hypothesis.settings(
            max_examples=HOSTILE_EXAMPLES,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            keyed = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
            case.headers = {"Authorization": f"Bearer {token}"}
            answer = case.call_and_validate(checks=checks)
            seen[("no idempotency key", answer.status_code)] += 1
            case.headers = {}
            answer = case.call_and_validate(checks=checks, headers={"Idempotency-Key": "k"})
            seen[("no token", answer.status_code)] += 1
            if isinstance(case.body, dict):
                case.headers = dict(keyed)
                case.body = orjson.dumps(case.body).decode()
                case.media_type = "text/plain"
                answer = case.call_and_validate(checks=checks)
                seen[("json as text/plain", answer.status_code)] += 1

        check()
    assert set(seen) >= {
        ("no idempotency key", 400),
        ("no token", 401),
        ("json as text/plain", 415),
    }
    allowed = {"no idempotency key": {400}, "no token": {401}, "json as text/plain": {415}}
    assert all(status in allowed[kind] for kind, status in seen), seen
