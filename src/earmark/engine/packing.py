"""Commands packed into the Redis protocol by hiredis (C) on the asyncio clients.

redis-py's blocking connections pack with hiredis when it is installed; its asyncio
connections always pack in Python, one join per argument. A batched reserve call
(earmark.engine.coalesce) carries every key and argument of dozens of carts, and that
packing was a fifth of the engine's CPU per reservation under load (py-spy, hot SKU, 128
callers). ``hiredis_packed`` gives a connection class the same packer the blocking
client uses: the same bytes on the wire, and the same ``DataError`` for a value Redis
cannot take.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.exceptions


def _pack_command(self: Any, *args: Any) -> list[bytes]:
    # As redis-py's packers: a command name with a space is several arguments.
    if isinstance(args[0], str):
        args = (*args[0].encode().split(), *args[1:])
    elif b" " in args[0]:
        args = (*args[0].split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]
    except TypeError as error:
        raise redis.exceptions.DataError(str(error)) from None


_PACKED: dict[type[Any], type[Any]] = {}


def hiredis_packed(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` (a redis.asyncio connection class) packing with hiredis; the
    same class for the same class, and a class that packs so already stays as it is."""
    if getattr(connection_class, "pack_command", None) is _pack_command:
        return connection_class
    packed = _PACKED.get(connection_class)
    if packed is None:
        name = connection_class.__name__
        packed = _PACKED[connection_class] = type(
            name, (connection_class,), {"pack_command": _pack_command}
        )
    return packed
