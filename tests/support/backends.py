"""Engines on fakeredis, on a real redis-server and on a real Redis Cluster.

Real servers are throwaway processes on free loopback ports (tests/support/servers.py). When one
cannot be started the test is skipped on a developer machine and FAILS under CI=true.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import fakeredis
import pytest
import time_machine

from earmark import AsyncEngine, Engine, EngineConfig, StockLevel
from tests.support.servers import RedisCluster, RedisServer, ServerUnavailable, unavailable

BACKENDS = ["fake", "redis", pytest.param("cluster", marks=pytest.mark.cluster)]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except ServerUnavailable as error:
        unavailable(f"redis-server: {error}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    try:
        cluster = RedisCluster()
        cluster.start()
    except ServerUnavailable as error:
        unavailable(f"Redis Cluster: {error}")
    yield cluster
    cluster.close()


def fresh_prefix() -> str:
    """Each test writes under its own prefix, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


class Backend:
    """Builds engines on one backend and moves its clock (see ``advance``)."""

    def __init__(self, name: str, request: pytest.FixtureRequest) -> None:
        self.name = name
        self.request = request
        self.server = fakeredis.FakeServer() if name == "fake" else None
        self.traveller: Any = None

    @property
    def real(self) -> bool:
        return self.name != "fake"

    def url(self) -> str:
        fixture = "redis_cluster" if self.name == "cluster" else "redis_server"
        return str(self.request.getfixturevalue(fixture).url)

    def engine(self, **config: Any) -> Engine:
        config.setdefault("prefix", fresh_prefix())
        if self.name == "cluster":
            config.setdefault("partitions", 4)
        settings = EngineConfig(**config)
        if self.name == "fake":
            engine = Engine.embedded(settings, server=self.server)
        else:
            engine = Engine.from_url(self.url(), settings, cluster=self.name == "cluster")
        self.request.addfinalizer(engine.close)
        return engine.start()

    def freeze(self, *, tick: bool = True) -> None:
        """On fakeredis, Redis TIME is Python's clock: take control of it.

        With ``tick=False`` the clock stands still until ``advance`` moves it, for a test
        whose steps must fall within one second however slow the machine is.
        """
        if not self.real and self.traveller is None:
            travel = time_machine.travel(datetime.now().astimezone(), tick=tick)
            self.traveller = travel.start()
            self.request.addfinalizer(travel.stop)

    def advance(self, seconds: float) -> None:
        """Move the server's clock: time-machine on fakeredis, a real wait on a real server."""
        if self.real:
            import time

            time.sleep(seconds)
        else:
            self.freeze()
            self.traveller.shift(seconds)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend(request.param, request)


@pytest.fixture
def engine(backend: Backend) -> Engine:
    return backend.engine()


@pytest.fixture
def fake_engine(request: pytest.FixtureRequest) -> Engine:
    return Backend("fake", request).engine()


@pytest.fixture
def clock(backend: Backend) -> Callable[[float], None]:
    backend.freeze()
    return backend.advance


def level_of(engine: Engine, sku: str, location: str = "default") -> StockLevel:
    """One (sku, location)'s buckets and version (``Engine.stock`` answers the network)."""
    return engine.stock(sku, location).locations[0]


async def alevel_of(engine: AsyncEngine, sku: str, location: str = "default") -> StockLevel:
    return (await engine.stock(sku, location)).locations[0]


def stream_lengths(engine: Engine) -> list[int]:
    return [int(engine.client.xlen(engine.keys.events(p))) for p in range(engine.partitions)]


@pytest.fixture
def untouched(engine: Engine) -> Callable[[], Any]:
    """A snapshot of every stream length, to prove a refused request wrote nothing."""
    return lambda: stream_lengths(engine)
