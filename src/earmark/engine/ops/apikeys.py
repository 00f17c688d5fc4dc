"""API keys: named bearer tokens with scopes, stored in Redis as hashes only.

The hash ``Keys.api_keys()`` maps a key's name to JSON ``{sha256, scopes, created_at}``.
The token itself is shown once, when it is created, and never stored. Like the engine's
operations, each function here is a generator of Redis steps, so the blocking CLI and
the asyncio service run the same code (``Engine.run`` / ``AsyncEngine.run``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from earmark import validation
from earmark.engine.steps import Op, Pipeline
from earmark.errors import InvalidRequest
from earmark.keys import Keys

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


def _decode(name: str, raw: str) -> ApiKey:
    record = orjson.loads(raw)
    return ApiKey(
        name=name,
        scopes=frozenset(record["scopes"]),
        created_at=datetime.fromisoformat(record["created_at"]),
        sha256=str(record["sha256"]),
    )


def create_key(keys: Keys, name: str, scopes: frozenset[str]) -> Op[tuple[str, ApiKey]]:
    """A new key; returns (token, key). The token is not stored and cannot be shown again."""
    name = validation.name(name, "name", NAME_LENGTH_MAX)
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    key = ApiKey(name, scopes, datetime.now(UTC), token_sha256(token))
    record = {
        "sha256": key.sha256,
        "scopes": sorted(scopes),
        "created_at": key.created_at.isoformat(),
    }
    replies = yield Pipeline([("HSETNX", keys.api_keys(), name, orjson.dumps(record).decode())])
    if not int(replies[0]):
        raise InvalidRequest(f"an API key named {name!r} already exists; revoke it first")
    return token, key


def list_keys(keys: Keys) -> Op[list[ApiKey]]:
    """Every key, by name. Bounded by what an operator creates by hand."""
    replies = yield Pipeline([("HGETALL", keys.api_keys())])
    return sorted((_decode(n, raw) for n, raw in replies[0].items()), key=lambda k: k.name)


def revoke_key(keys: Keys, name: str) -> Op[bool]:
    """Removes the key; False when there was none of that name."""
    name = validation.name(name, "name", NAME_LENGTH_MAX)
    replies = yield Pipeline([("HDEL", keys.api_keys(), name)])
    return bool(int(replies[0]))


def count_keys(keys: Keys) -> Op[int]:
    replies = yield Pipeline([("HLEN", keys.api_keys())])
    return int(replies[0])


def by_sha256(api_keys: Iterable[ApiKey]) -> dict[str, Principal]:
    """The lookup table a server keeps in memory: token hash -> principal."""
    return {key.sha256: Principal(key.name, key.scopes) for key in api_keys}
