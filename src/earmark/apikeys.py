"""API keys: named bearer tokens with scopes. Only a token's SHA-256 is ever stored;
the token itself is shown once, when it is created. Keys are kept in the durable record
(``Ledger.create_api_key`` and its siblings), so they survive a Redis loss and the
embedded store reads them too; this module holds what every part agrees on: scopes,
principals, hashing, and making a new key."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from earmark import validation
from earmark.errors import InvalidRequest

SCOPES = ("read", "reserve", "stock")
TOKEN_PREFIX = "em_"
TOKEN_BYTES = 32
NAME_LENGTH_MAX = 64  # the name becomes the actor on events (ACTOR_LENGTH_MAX is 128)
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    created_at: datetime
    sha256: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's name is the actor recorded on every event it writes."""

    name: str
    scopes: frozenset[str]


ANONYMOUS_PRINCIPAL = Principal(ANONYMOUS, frozenset(SCOPES))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(raw: str | Iterable[str]) -> frozenset[str]:
    """``"read,reserve"`` or an iterable of names; each must be one of ``SCOPES``."""
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = frozenset(name.strip() for name in names if name.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise InvalidRequest(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {sorted(scopes)}",
            field="scopes",
        )
    return scopes


def by_sha256(api_keys: Iterable[ApiKey]) -> dict[str, Principal]:
    """The lookup table a server keeps in memory: token hash -> principal."""
    return {key.sha256: Principal(key.name, key.scopes) for key in api_keys}


def new_key(name: str, scopes: frozenset[str]) -> tuple[str, ApiKey]:
    """A new key and its token (shown once, never stored)."""
    name = validation.name(name, "name", NAME_LENGTH_MAX)
    if not scopes or not scopes <= set(SCOPES):
        raise InvalidRequest(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    return token, ApiKey(name, frozenset(scopes), datetime.now(UTC), token_sha256(token))
