"""Bearer-token authentication against the API keys in Redis, cached per process.

Each process keeps the table ``sha256(token) -> principal`` and reloads it (one HGETALL)
when it is older than ``api_key_cache_seconds``, so a request costs no Redis round trip
for auth and a revoked key stops working within that many seconds.
"""

from __future__ import annotations

import asyncio
import time

from earmark import apikeys
from earmark.api.problems import Forbidden, Unauthorized
from earmark.apikeys import ANONYMOUS_PRINCIPAL, Principal
from earmark.engine.async_engine import AsyncEngine


class Authenticator:
    """Resolves a bearer token to a principal.

    ``open_when_empty``: while no key exists at all, every request acts as ``anonymous``
    with every scope (development on a loopback address). As soon as one key exists,
    tokens are required.
    """

    def __init__(self, engine: AsyncEngine, cache_seconds: float, *, open_when_empty: bool):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.open_when_empty = open_when_empty
        self._table: dict[str, Principal] = {}
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, Principal]:
        """Reloads the keys now (one HGETALL); concurrent callers share one reload."""
        started = time.monotonic()
        async with self._lock:
            if self._loaded_at < started:
                keys = await self.engine.api_keys()
                self._table = apikeys.by_sha256(keys)
                self._loaded_at = time.monotonic()
        return self._table

    async def table(self) -> dict[str, Principal]:
        if time.monotonic() - self._loaded_at >= self.cache_seconds:
            return await self.refresh()
        return self._table

    async def authenticate(self, token: str | None) -> Principal:
        table = await self.table()
        if not table and self.open_when_empty:
            return ANONYMOUS_PRINCIPAL
        if not token:
            raise Unauthorized("send an API key as 'Authorization: Bearer <token>'")
        principal = table.get(apikeys.token_sha256(token))
        if principal is None:
            raise Unauthorized("unknown or revoked API key")
        return principal


def require_scope(principal: Principal, scope: str) -> Principal:
    if scope not in principal.scopes:
        granted = ", ".join(sorted(principal.scopes)) or "none"
        raise Forbidden(
            f"API key {principal.name!r} lacks the {scope!r} scope (it has: {granted})",
            scope=scope,
        )
    return principal
