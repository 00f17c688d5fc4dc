"""``earmark serve``: checks that the configuration is safe, then runs uvicorn.

uvicorn runs with uvloop and httptools (``earmark.api.protocol``: the request head is
bounded in size and time) and without the access log (each costs throughput;
``--access-log`` turns the log on). One worker serves the app object built
here; several workers each build their own from the environment
(``served_app_from_env``), so the settings given on the command line travel as
``EARMARK_*`` variables. Each serving process tunes the garbage collector once its app
is built (``tune_gc``).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import os
from typing import Any

import redis
import redis.cluster
import uvicorn
import uvicorn.config

from earmark.api.app import create_app, create_app_from_env, refuse_open_bind
from earmark.api.protocol import protocol_for
from earmark.durable import service as durable
from earmark.engine import connect
from earmark.errors import StartupRefused
from earmark.settings import Settings, is_loopback

log = logging.getLogger("earmark")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus the ``earmark`` logger on the same handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["earmark"] = {"handlers": ["default"], "level": level.upper()}
    return config


# The collector's thresholds while serving (generations 0, 1, 2). With CPython's
# defaults (700, 10, 10) a server answering thousands of requests a second runs a
# collection of the older generations often enough that about one request in a hundred
# waits behind one: p99 ~90 ms at p50 ~10 ms. Here the objects of start-up (modules,
# models, the app) are frozen out of every collection (gc.freeze) and the youngest
# generation is collected every 20,000 net allocations instead of 700. Cycles are still
# collected; the memory they hold between collections stays a few MB.
# python -m loadtests.bench_servers measures both side by side.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    """The collector as a serving process wants it (``GC_THRESHOLDS``); called once the
    app is built, so that what start-up made is frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def served_app_from_env() -> Any:
    """For uvicorn's workers (``--factory``): the app of ``create_app_from_env``, in a
    process tuned as ``earmark serve`` tunes its own."""
    app = create_app_from_env()
    tune_gc()
    return app


# How long serve waits for Redis at start before saying it cannot reach it.
REDIS_PROBE_TIMEOUT_S = 5.0


def stored_key_count(settings: Settings) -> int:
    """API keys in the durable record; before that, a probe of EARMARK_REDIS_URL: a URL
    that is not a Redis URL, or a Redis that does not answer, is ``StartupRefused`` (one
    line, not a traceback from inside uvicorn's start-up)."""
    probe_redis(settings)
    return len(asyncio.run(durable.api_keys_at(settings.database_url)))


def probe_redis(settings: Settings) -> None:
    if settings.redis_url is None:
        return
    where = settings.redis_description()
    options: dict[str, Any] = {
        "socket_connect_timeout": REDIS_PROBE_TIMEOUT_S,
        "socket_timeout": REDIS_PROBE_TIMEOUT_S,
    }
    client: Any
    try:
        if settings.redis_cluster:
            client = redis.cluster.RedisCluster.from_url(settings.redis_url, **options)
        elif connect.sentinel_url(settings.redis_url) is None:
            client = redis.Redis.from_url(settings.redis_url, **options)
        else:  # the sentinels say where the primary is
            client = connect.blocking_client(settings.redis_url, cluster=False, max_connections=1)
    except ValueError as error:
        raise StartupRefused(
            f"EARMARK_REDIS_URL {where!r} is not a Redis URL ({error}); expected "
            "redis://HOST:6379/0 or redis+sentinel://HOST:26379,HOST:26379/SERVICE"
        ) from None
    except redis.exceptions.RedisError as error:  # a cluster client connects at once
        raise StartupRefused(f"cannot reach Redis at {where}: {error}") from None
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as error:
        raise StartupRefused(f"cannot reach Redis at {where}: {error}") from None
    finally:
        connect.close(client)


def check_serve(settings: Settings) -> None:
    """Refuses what would serve unsafely or inconsistently; the app re-checks on start."""
    if settings.embedded and settings.workers > 1:
        raise StartupRefused(
            "the embedded store lives inside one process: several workers would each have "
            "their own stock. Use one worker, or set EARMARK_REDIS_URL."
        )
    keys = stored_key_count(settings)  # also: the Redis URL works, before uvicorn starts
    if not is_loopback(settings.host) and (settings.no_auth or keys == 0):
        refuse_open_bind(settings)


def uvicorn_options(settings: Settings, *, access_log: bool = False) -> dict[str, Any]:
    """How ``earmark serve`` runs uvicorn."""
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, with the request head bounded in size and time (431, 408).
        "http": protocol_for(settings),
        "lifespan": "on",
        "access_log": access_log,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        "timeout_graceful_shutdown": 10,
    }


def serve(settings: Settings, *, access_log: bool = False) -> None:
    check_serve(settings)
    options = uvicorn_options(settings, access_log=access_log)
    if settings.workers == 1:
        app = create_app(settings)
        tune_gc()
        uvicorn.run(app, **options)
        return
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"EARMARK_{name.upper()}"] = str(value)
    uvicorn.run(
        "earmark.api.server:served_app_from_env",
        factory=True,
        workers=settings.workers,
        **options,
    )
