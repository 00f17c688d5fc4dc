"""Real concurrent clients race for a tenant's seats on a real redis-server and a real
Redis Cluster: the limit holds exactly, and an invited seat cannot be taken."""

from __future__ import annotations

import asyncio

import pytest

from earmark import AsyncEngine, EngineConfig, SeatLimitReached
from tests.support.backends import fresh_prefix
from tests.support.servers import RedisCluster, RedisServer

CLIENTS = 300
CAP = 50


async def assign_race(engine: AsyncEngine, tenant: str, users: list[str]) -> list[str]:
    start = asyncio.Event()

    async def client(user: str) -> str | None:
        await start.wait()
        try:
            await engine.assign_seat(tenant, user, idempotency_key=f"assign-{user}")
        except SeatLimitReached:
            return None
        return user

    tasks = [asyncio.create_task(client(user)) for user in users]
    await asyncio.sleep(0)
    start.set()
    return [user for user in await asyncio.gather(*tasks) if user is not None]


async def check_race(engine: AsyncEngine) -> None:
    async with engine:
        await engine.set_seat_cap("acme", CAP)
        won = await assign_race(engine, "acme", [f"u{n}" for n in range(CLIENTS)])
        assert len(won) == CAP
        pool = await engine.seats("acme")
        assert (pool.assigned, pool.available, pool.high_water_mark) == (CAP, 0, CAP)
        page = await engine.seat_users("acme", limit=1000)
        assert sorted(u.user for u in page.users) == sorted(won)


async def check_invites_hold(engine: AsyncEngine) -> None:
    async with engine:
        await engine.set_seat_cap("beta", CAP)
        invited = [f"inv{n}" for n in range(20)]
        for user in invited:
            await engine.invite_seat("beta", user, 600)
        start = asyncio.Event()

        async def accept(user: str) -> bool:
            await start.wait()
            return (await engine.accept_invite("beta", user)).created

        accepts = [asyncio.create_task(accept(u)) for u in invited]
        rivals = asyncio.create_task(assign_race(engine, "beta", [f"r{n}" for n in range(CLIENTS)]))
        await asyncio.sleep(0)
        start.set()
        assert all(await asyncio.gather(*accepts))  # every live invite is accepted
        assert len(await rivals) == CAP - len(invited)  # rivals took only the free seats
        pool = await engine.seats("beta")
        assert (pool.assigned, pool.invited) == (CAP, 0)


@pytest.mark.redis_server
async def test_300_assigns_to_a_cap_of_50_on_redis(redis_server: RedisServer) -> None:
    await check_race(AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix())))


@pytest.mark.cluster
async def test_300_assigns_to_a_cap_of_50_on_a_cluster(redis_cluster: RedisCluster) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    await check_race(AsyncEngine.from_url(redis_cluster.url, config, cluster=True))


@pytest.mark.redis_server
async def test_accepts_race_assigns_without_losing_a_seat(redis_server: RedisServer) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    await check_invites_hold(engine)


@pytest.mark.cluster
async def test_accepts_race_assigns_on_a_cluster(redis_cluster: RedisCluster) -> None:
    config = EngineConfig(prefix=fresh_prefix(), partitions=4)
    await check_invites_hold(AsyncEngine.from_url(redis_cluster.url, config, cluster=True))
