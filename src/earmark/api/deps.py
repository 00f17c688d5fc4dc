"""Dependencies of the routes, as ``Annotated`` aliases.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a thread
pool, a hop that cost this service more than half its throughput.

``Reading``, ``Reserving`` and ``Stocking`` check the scope of the caller's API key (403
without it); ``earmark.api.guard.RequestGuard`` authenticated it (401) before the body
was read. ``/openapi.json`` documents the
bearer scheme on every operation that answers 401 (see ``responses.openapi``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from earmark import limits
from earmark.api.auth import require_scope
from earmark.api.guard import PRINCIPAL
from earmark.api.metrics import Metrics
from earmark.api.schemas import PRINTABLE_PATTERN
from earmark.apikeys import Principal
from earmark.engine.async_engine import AsyncEngine
from earmark.errors import Unauthorized
from earmark.settings import Settings

BEARER_SCHEME = "bearer"


@dataclass(frozen=True, slots=True)
class Context:
    """What a route on the engine needs: the engine, the metrics and the caller (whose
    name is the actor of every event the request writes)."""

    engine: AsyncEngine
    metrics: Metrics
    caller: Principal


def scoped(scope: str) -> Callable[[Request], Awaitable[Context]]:
    """One dependency per scope: check the scope of the caller ``RequestGuard``
    authenticated (before the body was read), hand over the context. (One node instead
    of five: FastAPI's dependency solving costs per node.)"""

    async def context(request: Request) -> Context:
        state = request.app.state
        principal: Principal | None = request.scope.get(PRINCIPAL)
        if principal is None:  # not through the guard: fail closed
            raise Unauthorized("send an API key as 'Authorization: Bearer <token>'")
        return Context(state.engine, state.metrics, require_scope(principal, scope))

    context.__name__ = f"{scope}_scope"
    return context


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Engine = Annotated[AsyncEngine, Depends(get_engine)]
AppMetrics = Annotated[Metrics, Depends(get_metrics)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Reading = Annotated[Context, Depends(scoped("read"))]
Reserving = Annotated[Context, Depends(scoped("reserve"))]
Stocking = Annotated[Context, Depends(scoped("stock"))]

# Every POST changes stock, so every POST requires a key (400 idempotency_key_required
# without one): a client that retries after a timeout must not count a receipt twice.
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=limits.IDEMPOTENCY_KEY_LENGTH_MAX,
        pattern=PRINTABLE_PATTERN,
        description="required: a replay of a success with the same key and body returns the "
        "original response (with `Idempotent-Replayed: true`); the same key with another "
        "body is refused (422 idempotency_conflict); a refusal is not stored",
    ),
]
