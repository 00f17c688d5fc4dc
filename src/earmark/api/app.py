"""The HTTP sidecar: ``create_app()`` builds it; the lifespan owns every connection.

Nothing is created at import time. Start-up (the lifespan) runs, in order:

1. the engine: the given one, or one from the settings (``EARMARK_REDIS_URL``, or the
   embedded in-process fakeredis when it is unset);
2. the durable record's ``prepare`` (``api/hooks.py``), then ``AsyncEngine.start`` with
   the ``initialize`` flag it returned: scripts loaded, partitions and markers read;
3. authentication: the API keys in Redis; with none, the service refuses to start unless
   it is bound to a loopback address, and warns loudly that auth is off;
4. the durable record's ``start`` and its lag source (readiness, metrics);
5. the in-process sweeper task.

Shutdown undoes them in reverse order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from earmark import __version__, apikeys
from earmark.api import docs, problems, responses
from earmark.api.auth import Authenticator, AuthMode
from earmark.api.guard import Limits, RequestGuard
from earmark.api.hooks import DurableRecord, durable_record_for
from earmark.api.hot import TEMPLATES as HOT_TEMPLATES
from earmark.api.hot import HotRoutes
from earmark.api.metrics import LatencyMiddleware, Metrics
from earmark.api.routes import ROUTERS, reservations
from earmark.apikeys import ApiKey
from earmark.engine.async_engine import AsyncEngine
from earmark.engine.sweeper import log_if_crashed, run_sweeper
from earmark.errors import StartupRefused
from earmark.settings import Settings, get_settings, is_loopback

log = logging.getLogger("earmark")

DESCRIPTION = """Redis-backed stock reservation engine.

Every error is `application/problem+json` (RFC 9457) with a stable `code`.
Send `Authorization: Bearer <token>` (from `earmark keys create`); scopes: `read`
(every GET), `reserve` (reserve, commit, release, extend) and `stock` (receipts,
adjustments, ship, and the stock lifecycle: transfers, returns, damage, write-offs,
counts, purchase orders; webhook endpoints). Writes record the key's name as actor. A
reservation belongs to the key that created it: commit, release and extend by another key
are 403 `not_owner` unless that key has the `stock` scope.
Webhooks (`/v1/webhooks`) are signed per Standard Webhooks; see docs/webhooks.md.
Every POST changes stock and requires an `Idempotency-Key` (400
`idempotency_key_required` without one): a replay of a success returns the original status
and body with `Idempotent-Replayed: true`; the same key with another body is 422
`idempotency_conflict`; a refusal is not stored, so a retry is evaluated again.
"""

EMBEDDED_BANNER = """\
earmark is running in EMBEDDED mode: an in-process Redis (fakeredis with Lua), for
development and small single-process use.
Durable record: {database} (EARMARK_DATABASE_URL). Each start restores the stock from
it: on_hand, committed and the other buckets survive a restart; live holds (reservations
not yet committed) do not.
For production point it at Redis with EARMARK_REDIS_URL=redis://HOST:6379/0 and at
PostgreSQL with EARMARK_DATABASE_URL=postgresql://USER@HOST/DB."""


def without_native_telemetry() -> dict[str, Any]:
    """Newer FastAPI checks for OpenTelemetry providers on every request (an environment
    lookup each time, ~3 % of a reserve's CPU in a profile). earmark exports Prometheus
    metrics instead, so switch it off where FastAPI has the option."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def build_engine(settings: Settings) -> AsyncEngine:
    """One connection pool for the whole process (redis-py's, per client)."""
    config = settings.engine_config()
    if settings.redis_url is None:
        return AsyncEngine.embedded(config)
    return AsyncEngine.from_url(settings.redis_url, config, cluster=settings.redis_cluster)


CREATE_KEY = "`earmark keys create NAME --scopes read,reserve,stock`"

NO_AUTH_MESSAGE = (
    f"AUTH IS OFF (earmark serve --no-auth): every request acts as {apikeys.ANONYMOUS!r} "
    "with every scope, API keys or not. Loopback only; restart without --no-auth to "
    "require tokens."
)
FIRST_RUN_MESSAGE = (
    f"AUTH IS OFF (embedded first run): no API key exists, so every request acts as "
    f"{apikeys.ANONYMOUS!r} with every scope, on this loopback address only. To turn auth "
    f"on, create a key with {CREATE_KEY} (it is kept in EARMARK_DATABASE_URL, which this "
    "server reads): once a key exists, every request needs a token until a restart."
)
NO_KEYS_MESSAGE = (
    f"no API key exists: every request is refused (401) until one is created with "
    f"{CREATE_KEY}. To serve without auth on this machine, restart with "
    "`earmark serve --no-auth` (loopback only)."
)


def refuse_open_bind(settings: Settings) -> None:
    """Beyond loopback, a server must require tokens and have a key to accept."""
    if is_loopback(settings.host):
        return
    if settings.no_auth:
        raise StartupRefused(
            f"refusing to serve on {settings.host} with --no-auth: anyone could write "
            "stock. --no-auth is for a loopback address (127.0.0.1) only."
        )
    raise StartupRefused(
        f"refusing to serve on {settings.host} without API keys: no client could "
        f"authenticate (and an embedded store would run with auth off). Create one with "
        f"{CREATE_KEY}, or bind to 127.0.0.1."
    )


async def no_keys() -> list[ApiKey]:
    """The key source of a service without a durable record (tests, a bare engine)."""
    return []


async def start_auth(durable: DurableRecord | None, settings: Settings) -> Authenticator:
    """Decides, once, whether tokens are required (``AuthMode``) and says so loudly when
    they are not. Open is never a state the server drifts into later. The keys are the
    durable record's."""
    source = no_keys if durable is None else durable.api_keys
    authenticator = Authenticator(source, settings.api_key_cache_seconds, AuthMode.REQUIRED)
    if settings.no_auth:
        refuse_open_bind(settings)
        log.warning(NO_AUTH_MESSAGE)
        authenticator.mode = AuthMode.OFF
    elif not await authenticator.refresh():
        refuse_open_bind(settings)
        if settings.embedded:
            log.warning(FIRST_RUN_MESSAGE)
            authenticator.mode = AuthMode.UNTIL_FIRST_KEY
        else:
            log.warning(NO_KEYS_MESSAGE)
    return authenticator


async def start_sweeper(stack: AsyncExitStack, engine: AsyncEngine, app: FastAPI) -> None:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    stopping = asyncio.Event()
    task = asyncio.create_task(
        run_sweeper(
            engine,
            settings.sweep_interval_seconds,
            metrics.swept,
            stop=stopping,
            on_failure=metrics.sweep_failed,
        ),
        name="sweeper",
    )
    task.add_done_callback(log_if_crashed)

    async def stop() -> None:
        stopping.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)


def lifespan_for(engine: AsyncEngine | None, durable: DurableRecord | None) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        async with AsyncExitStack() as stack:
            running = engine or build_engine(settings)
            if engine is None or engine.state is None:  # we start it, we close it (last)
                stack.push_async_callback(running.close)
                initialize = True if durable is None else await durable.prepare(running)
                await running.start(initialize=initialize)
            app.state.engine = running
            app.state.authenticator = await start_auth(durable, settings)
            if settings.embedded and engine is None:
                log.warning(EMBEDDED_BANNER.format(database=settings.database_description()))
            if durable is not None:
                await durable.start(running)
                stack.push_async_callback(durable.stop)
                if app.state.lag_source is None:
                    app.state.lag_source = durable.lag_source()
            await start_sweeper(stack, running, app)
            yield

    return lifespan


def create_app(
    settings: Settings | None = None,
    engine: AsyncEngine | None = None,
    *,
    durable: DurableRecord | None = None,
) -> FastAPI:
    """The service. ``engine``: use this one, else the lifespan builds one from
    ``settings``. The lifespan closes the engine it starts (a given engine that is already
    started stays the caller's, and the durable record's ``prepare`` is then skipped).
    ``durable``: defaults to ``durable_record_for(settings)``."""
    settings = settings or get_settings()
    metrics = Metrics()
    if durable is None:
        durable = durable_record_for(settings, metrics.webhooks, metrics.discrepancies_overdue.set)
    app = FastAPI(
        title="earmark",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan_for(engine, durable),
        docs_url=None,  # docs.install: the same pages, assets from the sidecar
        redoc_url=None,
        **without_native_telemetry(),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.lag_source = None  # set by the durable record, or directly by a test
    problems.install(app)
    docs.install(app)
    app.state.durable = durable  # GET /v1/ledger reads through it
    for router in ROUTERS:
        app.include_router(router)
    limits = Limits(
        max_body_bytes=settings.max_body_bytes,
        max_concurrent_requests=settings.max_concurrent_requests,
        request_timeout_seconds=settings.request_timeout_seconds,
    )
    app.add_middleware(RequestGuard, state=app.state, limits=limits, hot=hot_routes(app))
    app.add_middleware(LatencyMiddleware, metrics=metrics)  # outermost: refusals count too

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = responses.openapi(
                app.title, app.version, app.description, app.routes
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def hot_routes(app: FastAPI) -> HotRoutes:
    """The reservation routes served in one pass (earmark.api.hot)."""
    by_path = {
        route.path: route
        for route in reservations.router.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or set())
    }
    missing = [t for t in HOT_TEMPLATES.values() if t not in by_path]
    if missing:  # pragma: no cover - a wiring bug
        raise RuntimeError(f"no POST route for {missing}")
    return HotRoutes(app.state, {op: by_path[t] for op, t in HOT_TEMPLATES.items()})


def create_app_from_env() -> FastAPI:
    """For ``uvicorn --factory earmark.api.app:create_app_from_env`` (one per worker)."""
    return create_app(get_settings())
