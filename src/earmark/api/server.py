"""``earmark serve``: checks that the configuration is safe, then runs uvicorn.

uvicorn runs with uvloop and httptools and without the access log (each costs
throughput; ``--access-log`` turns the log on). One worker serves the app object built
here; several workers each build their own from the environment
(``create_app_from_env``), so the settings given on the command line travel as
``EARMARK_*`` variables.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from typing import Any

import uvicorn
import uvicorn.config

from earmark.api.app import create_app, refuse_open_bind
from earmark.durable import service as durable
from earmark.errors import StartupRefused
from earmark.settings import Settings, is_loopback

log = logging.getLogger("earmark")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus the ``earmark`` logger on the same handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["earmark"] = {"handlers": ["default"], "level": level.upper()}
    return config


def stored_key_count(settings: Settings) -> int:
    """API keys in the durable record."""
    return len(asyncio.run(durable.api_keys_at(settings.database_url)))


def check_serve(settings: Settings) -> None:
    """Refuses what would serve unsafely or inconsistently; the app re-checks on start."""
    if settings.embedded and settings.workers > 1:
        raise StartupRefused(
            "the embedded store lives inside one process: several workers would each have "
            "their own stock. Use one worker, or set EARMARK_REDIS_URL."
        )
    if not is_loopback(settings.host) and stored_key_count(settings) == 0:
        refuse_open_bind(settings)


def serve(settings: Settings, *, access_log: bool = False) -> None:
    check_serve(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": access_log,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"EARMARK_{name.upper()}"] = str(value)
    uvicorn.run(
        "earmark.api.app:create_app_from_env", factory=True, workers=settings.workers, **options
    )
