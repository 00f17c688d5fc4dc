"""The reservation engine: Lua scripts in Redis, driven by ``Engine`` (blocking) and
``AsyncEngine`` (asyncio). Other parts use it through these names and the engines'
operations; its modules below are its own business (see docs/design/architecture.md)."""

from earmark.engine.async_engine import AsyncEngine
from earmark.engine.bootstrap import StoreState
from earmark.engine.config import EngineConfig
from earmark.engine.ops.status import Lag, PartitionLag
from earmark.engine.sync_engine import Engine

__all__ = ["AsyncEngine", "Engine", "EngineConfig", "Lag", "PartitionLag", "StoreState"]
