"""The naive FastAPI reservation endpoint ``bench_http.py`` measures earmark against: what
a team would write first, without earmark.

A pydantic body model and one EVALSHA of a reserve-like script that checks and
decrements the stock, writes the hold with a TTL index (a hash of units and a sorted
set of expiries) and XADDs an event: the same kinds of writes earmark's reserve makes,
without its idempotency, drops, alerts, fences or partition checks. Served by the same
uvicorn (uvloop, httptools, no access log) as earmark.

    NAIVE_REDIS_URL=redis://127.0.0.1:6379/0 \
        uvicorn loadtests.naive_app:create_app --factory --port 8002
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

STOCK_KEY = "naive:stock"
HOLDS_KEY = "naive:holds"
EXPIRIES_KEY = "naive:expiries"
EVENTS_KEY = "naive:events"
RESERVE = """
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[2])
if left < qty then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires_at = now + tonumber(ARGV[3])
redis.call('DECRBY', KEYS[1], qty)
redis.call('HSET', KEYS[2], ARGV[1], qty)
redis.call('ZADD', KEYS[3], expires_at, ARGV[1])
redis.call('XADD', KEYS[4], '*', 'type', 'reserved', 'sku', ARGV[4], 'qty', qty,
           'reservation', ARGV[1], 'expires_at', expires_at)
return expires_at
"""


class LineIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=1, le=1_000_000)


class ReservationIn(BaseModel):
    lines: list[LineIn] = Field(min_length=1, max_length=1)
    ttl_seconds: int = Field(900, ge=1, le=86_400)


class ReservationOut(BaseModel):
    id: str
    sku: str
    qty: int
    expires_at: int


def create_app() -> FastAPI:
    url = os.environ.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/0")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        app.state.reserve = client.register_script(RESERVE)
        await client.script_load(RESERVE)
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/reservations", status_code=201)
    async def reserve(body: ReservationIn, request: Request) -> ReservationOut:
        line = body.lines[0]
        rid = uuid.uuid4().hex
        keys = [STOCK_KEY, HOLDS_KEY, EXPIRIES_KEY, EVENTS_KEY]
        args = [rid, line.qty, body.ttl_seconds * 1000, line.sku]
        expires_at = await request.app.state.reserve(keys=keys, args=args)
        if expires_at < 0:
            raise HTTPException(409, "insufficient stock")
        return ReservationOut(id=rid, sku=line.sku, qty=line.qty, expires_at=expires_at)

    return app
