"""Bearer-token authentication against the API keys of the durable record, cached per
process.

Each process keeps the table ``sha256(token) -> principal`` and reloads it when it is
older than ``api_key_cache_seconds``, so a request costs no round trip for auth and a
revoked key stops working within that many seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from earmark import apikeys
from earmark.api.problems import Forbidden, Unauthorized
from earmark.apikeys import ANONYMOUS_PRINCIPAL, ApiKey, Principal
from earmark.errors import LedgerUnavailable

KeySource = Callable[[], Awaitable[list[ApiKey]]]

log = logging.getLogger("earmark.api")


class Authenticator:
    """Resolves a bearer token to a principal.

    ``open_when_empty``: while no key exists at all, every request acts as ``anonymous``
    with every scope (development on a loopback address). As soon as one key exists,
    tokens are required.
    """

    def __init__(self, keys: KeySource, cache_seconds: float, *, open_when_empty: bool):
        self.keys = keys
        self.cache_seconds = cache_seconds
        self.open_when_empty = open_when_empty
        self._table: dict[str, Principal] = {}
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, Principal]:
        """Reloads the keys from the durable record now; concurrent callers share one
        reload. A record that cannot be reached keeps the table already loaded (a server
        that never loaded one refuses every token: it fails closed)."""
        started = time.monotonic()
        async with self._lock:
            if self._loaded_at < started:
                try:
                    keys = await self.keys()
                except LedgerUnavailable as error:
                    log.warning("API keys not reloaded, the durable record is down: %s", error)
                    self._loaded_at = time.monotonic()  # retry after the cache period
                    return self._table
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
