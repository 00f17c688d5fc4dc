"""Dependencies of the routes, as ``Annotated`` aliases.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a thread
pool, a hop that cost this service more than half its throughput.

``Reading``, ``Reserving`` and ``Stocking`` resolve the caller's API key and check its
scope (401 without a valid key, 403 without the scope). ``/openapi.json`` documents the
bearer scheme on every operation that answers 401 (see ``responses.openapi``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from earmark import limits
from earmark.api.auth import Authenticator, require_scope
from earmark.api.metrics import Metrics
from earmark.api.schemas import PRINTABLE_PATTERN
from earmark.apikeys import Principal
from earmark.engine.async_engine import AsyncEngine
from earmark.settings import Settings

BEARER_SCHEME = "bearer"


@dataclass(frozen=True, slots=True)
class Context:
    """What a route on the engine needs: the engine, the metrics and the caller (whose
    name is the actor of every event the request writes)."""

    engine: AsyncEngine
    metrics: Metrics
    caller: Principal


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == BEARER_SCHEME else None


def scoped(scope: str) -> Callable[[Request], Awaitable[Context]]:
    """One dependency per scope: authenticate, check the scope, hand over the context.
    (One node instead of five: FastAPI's dependency solving costs per node.)"""

    async def context(request: Request) -> Context:
        state = request.app.state
        authenticator: Authenticator = state.authenticator
        token = bearer_token(request.headers.get("authorization"))
        caller = require_scope(await authenticator.authenticate(token), scope)
        return Context(state.engine, state.metrics, caller)

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

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=limits.IDEMPOTENCY_KEY_LENGTH_MAX,
        pattern=PRINTABLE_PATTERN,
        description="a replay with the same key and body returns the original response",
    ),
]
RequiredIdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=limits.IDEMPOTENCY_KEY_LENGTH_MAX,
        pattern=PRINTABLE_PATTERN,
        description="required: a replay with the same key and body returns the original "
        "response; the same key with another body is refused (422 idempotency_conflict)",
    ),
]
