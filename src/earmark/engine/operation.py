"""One surface for both engines: an operation is written once, as a generator method of
an ops mixin, and the engine class it is read from decides how it runs.

``AsyncEngine.reserve`` is a coroutine function and ``Engine.reserve`` a blocking one,
but both are the same ``@operation`` method of ``earmark.engine.ops.reservations``, with
one signature and one docstring. Nothing is generated and nothing can drift: a driver
only supplies ``run`` (execute the steps) and ``bind_operation`` (wrap the generator
function as the caller expects). ``tests/engine/test_surface.py`` checks that the two
engines expose the same operations with the same signatures.

Inside the ops, an operation never calls another through ``self`` (that would return the
driver's wrapper, not the steps): shared work lives in private generator methods, which
both call. The type checker enforces this: ``operation.__get__`` only types for drivers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from earmark.engine.steps import Op
from earmark.errors import EarmarkError

P = ParamSpec("P")
T = TypeVar("T")


class AsyncDriver:
    """Base of the asyncio engine: its operations are coroutine functions."""

    async def run(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def recover(self, error: EarmarkError) -> bool:
        """Whether ``error`` was cleared (e.g. the store was verified) and the operation
        may run once more from the start."""
        return False

    def bind_operation(
        self, fn: Callable[Concatenate[Any, P], Op[T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await self.run(fn(self, *args, **kwargs))
            except EarmarkError as error:
                if not await self.recover(error):
                    raise
            return await self.run(fn(self, *args, **kwargs))

        return _dressed(call, fn)


class SyncDriver:
    """Base of the blocking engine: its operations block until Redis answered."""

    def run(self, op: Op[T]) -> T:
        raise NotImplementedError

    def bind_operation(self, fn: Callable[Concatenate[Any, P], Op[T]]) -> Callable[P, T]:
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.run(fn(self, *args, **kwargs))

        return _dressed(call, fn)


F = TypeVar("F", bound=Callable[..., Any])


def _dressed(call: F, fn: Callable[..., Any]) -> F:
    """The wrapper carries the operation's name, docstring and signature (without self)."""
    functools.update_wrapper(call, fn)
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())[1:]
    call.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    del call.__wrapped__  # type: ignore[attr-defined]  # the signature above is the truth
    return call


class operation(Generic[P, T]):
    """Marks a generator method of an ops mixin as a public engine operation."""

    def __init__(self, fn: Callable[Concatenate[Any, P], Op[T]]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(
        self, obj: None, owner: type | None = None
    ) -> Callable[Concatenate[Any, P], Op[T]]: ...

    @overload
    def __get__(
        self, obj: AsyncDriver, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, obj: SyncDriver, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.fn
        bound = obj.bind_operation(self.fn)
        obj.__dict__[self.name] = bound  # later reads skip the descriptor
        return bound


def operations_of(cls: type) -> dict[str, Callable[..., Any]]:
    """Every public operation of an engine class, by name (its generator function)."""
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, operation) and not name.startswith("_"):
                found[name] = value.fn
    return found
