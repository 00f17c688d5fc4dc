"""The yardstick for ``bench_http.py``: the least a FastAPI reservation endpoint can do.

One POST route that parses the JSON body and runs one EVALSHA of a minimal decrement
script on the same Redis, then answers with a small JSON body. Served by the same
uvicorn (uvloop, httptools, no access log) as earmark, so the ratio measures what
earmark adds on top: auth, validation, idempotency, the full reserve script, events.

    MINIMAL_REDIS_URL=redis://127.0.0.1:6379/0 \
        uvicorn loadtests.minimal_app:create_app --factory --port 8001
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import redis.asyncio
from fastapi import FastAPI, Request
from starlette.responses import Response

STOCK_KEY = "minimal:stock"
DECREMENT = """
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[1])
if left < qty then return -1 end
return redis.call('DECRBY', KEYS[1], qty)
"""


def create_app() -> FastAPI:
    url = os.environ.get("MINIMAL_REDIS_URL", "redis://127.0.0.1:6379/0")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        app.state.decrement = client.register_script(DECREMENT)
        await client.script_load(DECREMENT)
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/reservations")
    async def reserve(request: Request) -> Response:
        body = orjson.loads(await request.body())
        left = await request.app.state.decrement(keys=[STOCK_KEY], args=[body["lines"][0]["qty"]])
        status = 201 if left >= 0 else 409
        return Response(orjson.dumps({"left": left}), status, media_type="application/json")

    return app
