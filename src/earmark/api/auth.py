"""Bearer-token authentication against the API keys of the durable record, cached per
process.

Each process keeps the table ``sha256(token) -> principal`` and reloads it when it is
older than ``api_key_cache_seconds``, so a request costs no round trip for auth and a
revoked key stops working within that many seconds.

Whether tokens are required is decided once, at start-up (``AuthMode``), never by what
the table holds later: an empty table (every key revoked, or the record unreachable at
start) means nobody is authorized, not that auth is off.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable

from earmark import apikeys
from earmark.apikeys import ANONYMOUS_PRINCIPAL, ApiKey, Principal
from earmark.errors import Forbidden, LedgerUnavailable, Unauthorized

KeySource = Callable[[], Awaitable[list[ApiKey]]]

log = logging.getLogger("earmark")


class AuthMode(enum.Enum):
    """How a server treats requests; chosen at start-up (``earmark.api.app.start_auth``)."""

    # Every request needs a valid token, until the process ends.
    REQUIRED = "required"
    # ``earmark serve --no-auth``: every request acts as ``anonymous`` with every scope;
    # loopback only, chosen explicitly by the operator.
    OFF = "off"
    # The embedded first run (no key exists at start): open like OFF until the first key
    # appears, then REQUIRED for good (auth only ever closes by itself, never opens).
    UNTIL_FIRST_KEY = "until_first_key"


class Authenticator:
    """Resolves a bearer token to a principal, under the mode chosen at start-up."""

    def __init__(self, keys: KeySource, cache_seconds: float, mode: AuthMode):
        self.keys = keys
        self.cache_seconds = cache_seconds
        self.mode = mode
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
        if self.mode is AuthMode.OFF:
            return ANONYMOUS_PRINCIPAL
        table = await self.table()
        if self.mode is AuthMode.UNTIL_FIRST_KEY:
            if not table:
                return ANONYMOUS_PRINCIPAL
            self.mode = AuthMode.REQUIRED
            log.warning(
                "an API key exists now: every request needs a token from here on "
                "(auth stays on until a restart, even if the key is revoked)"
            )
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
