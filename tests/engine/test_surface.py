"""Engine and AsyncEngine are one surface: each operation is written once (an
``@operation`` method of an ops mixin) and both engines expose it with the same name,
signature and docstring; only the way it runs differs."""

from __future__ import annotations

import inspect

import pytest

from earmark import AsyncEngine, Engine
from earmark.engine.operation import operations_of

ENGINES = (Engine, AsyncEngine)


def test_both_engines_expose_the_same_operations() -> None:
    blocking, asyncio_ = operations_of(Engine), operations_of(AsyncEngine)
    assert set(blocking) == set(asyncio_)
    assert {"reserve", "commit", "release", "extend", "ship", "receive", "damage"} <= set(blocking)
    for name in blocking:
        assert blocking[name] is asyncio_[name], name  # one function, not two copies


@pytest.mark.parametrize("name", sorted(operations_of(Engine)))
def test_every_operation_is_documented_and_typed_alike_on_both(
    name: str, fake_engine: Engine
) -> None:
    source = operations_of(Engine)[name]
    assert (source.__doc__ or "").strip(), f"{name} has no docstring"
    async_engine = AsyncEngine(fake_engine.client)  # never started: only read here
    bound_sync, bound_async = getattr(fake_engine, name), getattr(async_engine, name)
    assert not inspect.iscoroutinefunction(bound_sync)
    assert inspect.iscoroutinefunction(bound_async)
    assert inspect.signature(bound_sync) == inspect.signature(bound_async)
    expected = inspect.signature(source)
    assert list(inspect.signature(bound_sync).parameters) == list(expected.parameters)[1:]
    assert bound_sync.__doc__ == bound_async.__doc__ == source.__doc__


def test_the_drivers_offer_the_same_lifecycle() -> None:
    """start, close, run, from_url and embedded: the same names and parameters on both
    (the asyncio ones are coroutine functions, from_url also takes ``coalesce``)."""
    for name in ("start", "close", "run", "embedded"):
        sync_params = list(inspect.signature(getattr(Engine, name)).parameters)
        async_params = list(inspect.signature(getattr(AsyncEngine, name)).parameters)
        assert sync_params == async_params, name
    for name in ("start", "close", "run"):
        assert inspect.iscoroutinefunction(getattr(AsyncEngine, name))
        assert not inspect.iscoroutinefunction(getattr(Engine, name))
    sync_from_url = set(inspect.signature(Engine.from_url).parameters)
    assert sync_from_url <= set(inspect.signature(AsyncEngine.from_url).parameters)
