"""API keys in Redis: the hash ``Keys.api_keys()`` maps a key's name to JSON
``{sha256, scopes, created_at}`` (see ``earmark.apikeys``)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import orjson

from earmark import validation
from earmark.apikeys import NAME_LENGTH_MAX, TOKEN_BYTES, TOKEN_PREFIX, ApiKey, token_sha256
from earmark.engine.operation import operation
from earmark.engine.ops.base import OpsBase
from earmark.engine.steps import Op, Pipeline
from earmark.errors import InvalidRequest


def _decode(name: str, raw: str) -> ApiKey:
    record = orjson.loads(raw)
    return ApiKey(
        name=name,
        scopes=frozenset(record["scopes"]),
        created_at=datetime.fromisoformat(record["created_at"]),
        sha256=str(record["sha256"]),
    )


class KeyOps(OpsBase):
    @operation
    def create_api_key(self, name: str, scopes: frozenset[str]) -> Op[tuple[str, ApiKey]]:
        """A new key; returns (token, key). The token is not stored and cannot be shown
        again."""
        name = validation.name(name, "name", NAME_LENGTH_MAX)
        token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        key = ApiKey(name, scopes, datetime.now(UTC), token_sha256(token))
        record = {
            "sha256": key.sha256,
            "scopes": sorted(scopes),
            "created_at": key.created_at.isoformat(),
        }
        document = orjson.dumps(record).decode()
        replies = yield Pipeline([("HSETNX", self.keys.api_keys(), name, document)])
        if not int(replies[0]):
            raise InvalidRequest(f"an API key named {name!r} already exists; revoke it first")
        return token, key

    @operation
    def api_keys(self) -> Op[list[ApiKey]]:
        """Every key, by name. Bounded by what an operator creates by hand."""
        replies = yield Pipeline([("HGETALL", self.keys.api_keys())])
        return sorted((_decode(n, raw) for n, raw in replies[0].items()), key=lambda k: k.name)

    @operation
    def revoke_api_key(self, name: str) -> Op[bool]:
        """Removes the key; False when there was none of that name."""
        name = validation.name(name, "name", NAME_LENGTH_MAX)
        replies = yield Pipeline([("HDEL", self.keys.api_keys(), name)])
        return bool(int(replies[0]))

    @operation
    def api_key_count(self) -> Op[int]:
        """How many keys exist."""
        replies = yield Pipeline([("HLEN", self.keys.api_keys())])
        return int(replies[0])
