"""Fixtures for the durable-record suites (flusher, ledger, rebuild); test modules load
(loaded for every test by the root conftest).

A session-scoped throwaway PostgreSQL (tests/support/servers.py) with a fresh database per test;
SQLite files under tmp_path; asyncio engines on the session redis-server of conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from earmark import AsyncEngine, EngineConfig
from earmark.store.ledger import Ledger
from tests.support.backends import fresh_prefix
from tests.support.durable import migrated
from tests.support.servers import PostgresServer, RedisServer, ServerUnavailable, unavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except ServerUnavailable as error:
        server.close()
        unavailable(f"PostgreSQL: {error}")
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database of the session server."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/earmark.db"


@pytest.fixture
async def pg_ledger(pg_url: str) -> AsyncIterator[Ledger]:
    ledger = await migrated(pg_url)
    yield ledger
    await ledger.close()


@pytest.fixture
async def sqlite_ledger(sqlite_url: str) -> AsyncIterator[Ledger]:
    ledger = await migrated(sqlite_url)
    yield ledger
    await ledger.close()


@pytest.fixture
async def aengine(redis_server: RedisServer) -> AsyncIterator[AsyncEngine]:
    """An asyncio engine with 4 partitions on the session redis-server, own prefix."""
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    engine = AsyncEngine.from_url(redis_server.url, config)
    await engine.start()
    yield engine
    await engine.close()
