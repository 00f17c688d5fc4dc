"""A client call written once for both clients.

Each method of ``earmark.client.ops.ClientOps`` builds a ``Call``: the HTTP request it
makes and how its answer becomes a result. ``@route`` records which route of
``/openapi.json`` the method stands for (``tests/client`` checks that every route has
one), and the client class the method is read from decides how it is sent:
``Client.reserve`` blocks, ``AsyncClient.reserve`` is a coroutine function, one
signature and one docstring (as ``earmark.engine.operation`` does for the engines).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx

P = ParamSpec("P")
T = TypeVar("T")

Params = Mapping[str, str | int | float | bool | list[str] | None]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the reading of its answer.

    ``write``: the request changes state and carries an ``Idempotency-Key`` (the one given,
    or one the client generates); only such requests, reads, and DELETEs are retried."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Params | None = None
    write: bool = False
    idempotency_key: str | None = None

    @property
    def retryable(self) -> bool:
        return self.write or self.method in ("GET", "HEAD", "DELETE")


class AsyncSender:
    """Base of ``AsyncClient``: its calls are coroutine functions."""

    async def send(self, call: Call[T]) -> T:
        raise NotImplementedError

    def bind_call(
        self, fn: Callable[Concatenate[Any, P], Call[T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        async def bound(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.send(fn(self, *args, **kwargs))

        return _dressed(bound, fn)


class SyncSender:
    """Base of ``Client``: its calls block until the service answered."""

    def send(self, call: Call[T]) -> T:
        raise NotImplementedError

    def bind_call(self, fn: Callable[Concatenate[Any, P], Call[T]]) -> Callable[P, T]:
        def bound(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.send(fn(self, *args, **kwargs))

        return _dressed(bound, fn)


F = TypeVar("F", bound=Callable[..., Any])


def _dressed(bound: F, fn: Callable[..., Any]) -> F:
    functools.update_wrapper(bound, fn)
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())[1:]
    bound.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    del bound.__wrapped__  # type: ignore[attr-defined]
    return bound


def route(
    *routes: str,
) -> Callable[[Callable[Concatenate[Any, P], Call[T]]], bound_route[P, T]]:
    """Marks a method of ``ClientOps`` as the call of one or more routes (``"GET /v1/x"``)."""

    def mark(fn: Callable[Concatenate[Any, P], Call[T]]) -> bound_route[P, T]:
        return bound_route(fn, routes)

    return mark


class bound_route(Generic[P, T]):
    def __init__(self, fn: Callable[Concatenate[Any, P], Call[T]], routes: tuple[str, ...]):
        self.fn = fn
        self.routes = routes
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(
        self, obj: None, owner: type | None = None
    ) -> Callable[Concatenate[Any, P], Call[T]]: ...

    @overload
    def __get__(
        self, obj: AsyncSender, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __get__(self, obj: SyncSender, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.fn
        bound = obj.bind_call(self.fn)
        obj.__dict__[self.name] = bound
        return bound


def routes_of(cls: type) -> dict[str, str]:
    """Every route a client class calls (``"POST /v1/reservations"``) -> its method name."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, bound_route):
                for r in value.routes:
                    found[r] = name
    return found
