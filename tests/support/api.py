"""Fixtures for the HTTP API: the app on fakeredis, driven in-process over ASGI.

The app's lifespan runs explicitly (``app.router.lifespan_context``), so start-up and
shutdown are exercised exactly as under uvicorn.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi import FastAPI

from earmark import AsyncEngine, EngineConfig, apikeys
from earmark.api.app import create_app
from earmark.durable.service import DurableService
from earmark.settings import Settings
from tests.support.backends import fresh_prefix

BASE_URL = "http://testserver"
SCOPE_SETS = {
    "reader": "read",
    "reserver": "reserve",
    "stocker": "stock",
    "admin": "read,reserve,stock",
}


def make_settings(**overrides: Any) -> Settings:
    """Settings that ignore the environment's EARMARK_* (tests must not depend on it);
    the durable record is a throwaway in-memory SQLite, never ./earmark.db."""
    values: dict[str, Any] = {
        "api_key_cache_seconds": 0,
        "sweep_interval_seconds": 3600,
        "database_url": "sqlite:///:memory:",
    }
    return Settings.model_validate({**values, **overrides})


async def with_idempotency_key(request: httpx.Request) -> None:
    """Every POST changes stock and needs an Idempotency-Key: the test clients send a fresh
    one with each POST that names none, as a well-behaved client does (a retry reuses
    its key; each of these requests is a new one). ``Api.bare`` clients send only what
    the test gives."""
    if request.method == "POST" and "idempotency-key" not in request.headers:
        request.headers["Idempotency-Key"] = f"test-{uuid.uuid4().hex}"


def with_idempotency_key_sync(request: httpx.Request) -> None:
    """``with_idempotency_key`` for a blocking ``httpx.Client``."""
    if request.method == "POST" and "idempotency-key" not in request.headers:
        request.headers["Idempotency-Key"] = f"test-{uuid.uuid4().hex}"


KEYED_HOOKS: dict[str, list[Any]] = {"request": [with_idempotency_key]}
KEYED_SYNC_HOOKS: dict[str, list[Any]] = {"request": [with_idempotency_key_sync]}


@dataclass
class Api:
    """One app on one fakeredis, with a client per API key (``anon`` sends none). The
    clients add an Idempotency-Key to POSTs that lack one; ``bare`` has the same clients
    without that."""

    app: FastAPI
    engine: AsyncEngine
    durable: DurableService
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    bare: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def __getattr__(self, name: str) -> httpx.AsyncClient:
        try:
            return self.clients[name]
        except KeyError:
            raise AttributeError(name) from None

    async def create_key(self, name: str, scopes: frozenset[str]) -> str:
        """A new API key in the app's durable record; returns its token."""
        token, key = apikeys.new_key(name, scopes)
        assert await (await self.durable.ledger_for_reads()).create_api_key(key)
        return token

    async def revoke_key(self, name: str) -> bool:
        return await (await self.durable.ledger_for_reads()).revoke_api_key(name)

    async def levels(self, sku: str, location: str = "default") -> tuple[int, int, int, int]:
        (s,) = await self.engine.availability([(sku, location)])
        return s.on_hand, s.reserved, s.committed, s.available

    async def stream_lengths(self) -> list[int]:
        client, keys = self.engine.client, self.engine.keys
        return [int(await client.xlen(keys.events(p))) for p in range(self.engine.partitions)]

    async def events(self) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        for p in range(self.engine.partitions):
            found += [f for _, f in await self.engine.client.xrange(self.engine.keys.events(p))]
        return found


@asynccontextmanager
async def open_api(
    settings: Settings, *, keys: bool = True, engine: AsyncEngine | None = None
) -> AsyncIterator[Api]:
    engine = engine or AsyncEngine.embedded(
        EngineConfig(prefix=fresh_prefix()), server=fakeredis.FakeServer()
    )
    await engine.start()
    # The real durable record (its lag feeds /readyz, it keeps the API keys), without the
    # flusher task: the HTTP suites read the event streams, which a flusher would trim.
    durable = DurableService(settings.database_url, flusher_in_process=False)
    tokens: dict[str, str] = {}
    if keys:
        ledger = await durable.ledger_for_reads()
        for name, scopes in SCOPE_SETS.items():
            token, key = apikeys.new_key(name, apikeys.parse_scopes(scopes))
            assert await ledger.create_api_key(key)
            tokens[name] = token
    app = create_app(settings, engine, durable=durable)
    api = Api(app, engine, durable, tokens=tokens)
    transport = httpx.ASGITransport(app=app)
    try:
        async with app.router.lifespan_context(app):
            for name in [*tokens, "anon"]:
                headers = {"Authorization": f"Bearer {tokens[name]}"} if name in tokens else {}
                api.clients[name] = httpx.AsyncClient(
                    transport=transport, base_url=BASE_URL, headers=headers, event_hooks=KEYED_HOOKS
                )
                api.bare[name] = httpx.AsyncClient(
                    transport=transport, base_url=BASE_URL, headers=headers
                )
            yield api
            for client in [*api.clients.values(), *api.bare.values()]:
                await client.aclose()
    finally:
        await engine.close()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """Auth on: keys reader/reserver/stocker/admin; ``api.admin`` has every scope."""
    async with open_api(make_settings()) as opened:
        yield opened


@pytest.fixture
async def open_access() -> AsyncIterator[Api]:
    """No API key at all, bound to loopback: auth is off, actor 'anonymous'."""
    async with open_api(make_settings(), keys=False) as opened:
        yield opened


def problem_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Asserts an RFC 9457 problem with this status and code; returns its body."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert (response.status_code, body["code"], body["status"]) == (status, code, status), body
    assert body["type"].endswith(code) and body["title"] and body["detail"]
    return body
