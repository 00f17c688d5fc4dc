"""Liveness, readiness and Prometheus metrics. None of them needs an API key."""

from __future__ import annotations

import logging
import math

import redis.exceptions
from fastapi import APIRouter, Request
from starlette.responses import Response

from earmark.api.deps import AppMetrics, AppSettings, Engine
from earmark.api.hooks import DurableRecord, LagSource
from earmark.api.metrics import Metrics
from earmark.api.problems import problem
from earmark.api.responses import TRANSPORT, model_response, problem_responses
from earmark.api.schemas import Check, Health, Readiness
from earmark.engine.async_engine import AsyncEngine

log = logging.getLogger("earmark.api")
router = APIRouter(tags=["health"])
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)


async def check_store(engine: AsyncEngine) -> dict[str, Check]:
    try:
        await engine.client.ping()
    except REDIS_ERRORS as error:
        return {"redis": Check(ok=False, detail=f"{type(error).__name__}: {error}")}
    markers = await engine.generation_markers()
    missing = [str(p) for p, marker in enumerate(markers) if not marker]
    detail = f"missing in partitions {', '.join(missing)}" if missing else ""
    fences = await engine.fences()
    fenced = sorted({reason for reason in fences if reason})
    return {
        "redis": Check(ok=True),
        "generations": Check(ok=not missing, detail=detail),
        "fence": Check(ok=not fenced, detail="; ".join(fenced)),
    }


async def check_backlog(engine: AsyncEngine) -> Check:
    """Events waiting for the durable record, against the bound past which new demand is
    refused (durability_backlog). Under it the service stays ready, record up or down."""
    lag = await engine.durable_lag()
    bound = engine.config.backlog_per_partition(engine.partitions)
    full = [str(x.partition) for x in lag.partitions if bound and x.events >= bound]
    limit = f"at most {bound} per partition" if bound else "no bound"
    detail = f"{lag.events} events waiting ({limit})"
    if full:
        detail += f"; full in partitions {', '.join(full)}"
    return Check(ok=not full, detail=detail)


async def read_lag(source: LagSource | None, metrics: Metrics) -> float | None:
    """Asks the lag source (if any) and sets the gauge; None when there is no source."""
    if source is None:
        return None
    lag = await source()
    metrics.flusher_lag.set(lag)
    return lag


@router.get(
    "/healthz",
    response_model=Health,
    responses=problem_responses(auth=False, base=TRANSPORT),
    summary="The process is alive",
)
async def healthz() -> Response:
    return model_response(Health(status="ok"))


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(auth=False),
    summary="Redis reachable, every partition stamped, durable record keeping up",
)
async def readyz(
    request: Request, engine: Engine, metrics: AppMetrics, settings: AppSettings
) -> Response:
    """503 `not_ready` (problem+json, with `checks`) when a required check fails. The
    `database` check is reported but not required: while the durable record is down,
    events wait in Redis and the service stays ready until the `backlog` bound; the
    flusher's lag counts only while the record is reachable (then a lag means the
    flusher itself is stuck)."""
    checks = await check_store(engine)
    refused = None if checks["redis"].ok else not_ready(request, checks)
    if refused is not None:
        return refused
    durable = request.app.state.durable
    database = None if durable is None else await durable.database_check()
    if database is not None:
        checks["database"] = Check(ok=database[0], detail=database[1], required=False)
        checks["backlog"] = await check_backlog(engine)
    try:
        lag = await read_lag(request.app.state.lag_source, metrics)
    except Exception as error:  # a broken lag source makes us unready, whatever it raised
        log.exception("the flusher lag source failed")
        checks["flusher_lag"] = Check(ok=False, detail=f"lag unknown: {error!r}")
    else:
        if lag is not None:
            bound = settings.flusher_lag_seconds_max
            detail = f"{lag:.3f}s (max {bound:g}s)"
            record_down = database is not None and not database[0]
            if record_down:
                detail += "; the record is down: events wait in Redis (see backlog)"
            checks["flusher_lag"] = Check(ok=lag <= bound or record_down, detail=detail)
    return not_ready(request, checks) or model_response(Readiness(status="ready", checks=checks))


def not_ready(request: Request, checks: dict[str, Check]) -> Response | None:
    """The 503 problem when a required check failed, else None."""
    failed = sorted(name for name, check in checks.items() if check.required and not check.ok)
    if not failed:
        return None
    payload = {name: check.model_dump() for name, check in checks.items()}
    detail = f"failing checks: {', '.join(failed)}"
    return problem("not_ready", detail, instance=request.url.path, checks=payload)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {Metrics.content_type: {}}, "description": "Prometheus text"},
        **problem_responses(auth=False, base=TRANSPORT),
    },
    summary="Prometheus metrics",
)
async def metrics_endpoint(request: Request, engine: Engine, metrics: AppMetrics) -> Response:
    """Health gauges are read now: a gauge from a store that is down is NaN (unknown),
    never the last value or 0, which would look healthy."""
    redis_up = await scrape_store(engine, metrics)
    await scrape_database(request.app.state.durable, metrics)
    try:
        lag = await read_lag(request.app.state.lag_source, metrics)
    except Exception:  # the other metrics are still worth scraping
        log.exception("the flusher lag source failed; the gauge reads NaN (unknown)")
        metrics.flusher_lag.set(math.nan)
    else:
        if lag is not None and not redis_up:  # nothing to measure against: unknown
            metrics.flusher_lag.set(math.nan)
    return Response(metrics.render(), media_type=Metrics.content_type)


async def scrape_store(engine: AsyncEngine, metrics: Metrics) -> bool:
    """Sets the Redis gauges; False (and NaN in the gauges) when Redis does not answer."""
    try:
        await engine.client.ping()
        fences = await engine.fences()
        lag = await engine.durable_lag()
        drops = await engine.drop_figures()
    except REDIS_ERRORS as error:
        log.warning("/metrics: Redis did not answer: %s: %s", type(error).__name__, error)
        metrics.redis_up.set(0)
        metrics.fenced.set(math.nan)
        metrics.events_waiting.set(math.nan)
        metrics.set_drops(None)
        return False
    metrics.redis_up.set(1)
    metrics.fenced.set(sum(1 for reason in fences if reason))
    metrics.events_waiting.set(lag.events)
    metrics.set_drops(drops)
    return True


async def scrape_database(durable: DurableRecord | None, metrics: Metrics) -> None:
    check = None if durable is None else await durable.database_check()
    metrics.database_up.set(math.nan if check is None else 1 if check[0] else 0)
