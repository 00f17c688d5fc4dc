"""API keys that earlier versions kept in Redis (the hash ``Keys.api_keys()``): read them
once so the durable record can take them over (``DurableService.start``), then forget
them. Keys now live in the durable record (``earmark.apikeys``)."""

from __future__ import annotations

from datetime import datetime

import orjson

from earmark.apikeys import ApiKey
from earmark.engine.operation import operation
from earmark.engine.ops.base import OpsBase
from earmark.engine.steps import Op, Pipeline


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
    def legacy_api_keys(self) -> Op[list[ApiKey]]:
        """The keys an earlier version stored in Redis, by name (usually none)."""
        replies = yield Pipeline([("HGETALL", self.keys.api_keys())])
        return sorted((_decode(n, raw) for n, raw in replies[0].items()), key=lambda k: k.name)

    @operation
    def forget_legacy_api_keys(self) -> Op[int]:
        """Deletes the Redis copy once the durable record holds the keys."""
        replies = yield Pipeline([("HLEN", self.keys.api_keys()), ("DEL", self.keys.api_keys())])
        return int(replies[0])
