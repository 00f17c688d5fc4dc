"""What every ``earmark`` subcommand shares: the parser types, the engine on the
configured Redis (or the clear exit-2 message when the store is embedded), and the text
table the commands print."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TypeAlias

from earmark.engine.async_engine import AsyncEngine
from earmark.engine.sync_engine import Engine
from earmark.errors import EarmarkError
from earmark.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class NeedsRedis(EarmarkError):
    code = "needs_redis"


def require_redis(settings: Settings, command: str) -> str:
    if settings.redis_url is None:
        raise NeedsRedis(
            f"`earmark {command}` needs EARMARK_REDIS_URL: without it the store is embedded "
            "in the `earmark serve` process and no other process can reach it."
        )
    return settings.redis_url


@asynccontextmanager
async def started_engine(settings: Settings, command: str) -> AsyncIterator[AsyncEngine]:
    """An asyncio engine on the configured Redis, started without initializing (nothing
    is written: a Redis that lost its data stays fenced), closed on exit."""
    url = require_redis(settings, command)
    engine = AsyncEngine.from_url(url, settings.engine_config(), cluster=settings.redis_cluster)
    try:
        await engine.start(initialize=False)
        yield engine
    finally:
        await engine.close()


@contextmanager
def sync_engine(settings: Settings, command: str) -> Iterator[Engine]:
    """An engine on the configured Redis, closed on exit. Not started: plain commands need
    no scripts, and ``start(initialize=False)`` reads the partitions without writing."""
    url = require_redis(settings, command)
    engine = Engine.from_url(url, settings.engine_config(), cluster=settings.redis_cluster)
    try:
        yield engine
    finally:
        engine.close()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned text, right-aligned numbers (``int`` cells)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    # A column of numbers (blank cells allowed, e.g. a total's) is right-aligned.
    numeric = [
        all(isinstance(row[i], int) or row[i] == "" for row in rows) for i in range(len(headers))
    ]

    def fmt(row: list[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [fmt(row) for row in cells]
