"""Calling earmark's scripts as Redis functions (``FCALL``), and loading them again on a
server that has lost them (a restart without persistence, ``FUNCTION FLUSH``): the
answer is then ``Function not found`` and nothing ran, so loading and calling once
more is safe. ``earmark.engine.scripts`` builds the libraries."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from earmark.engine.scripts import LuaScript
from earmark.engine.steps import Call

MISSING = "Function not found"


def fcall(script: LuaScript, call: Call) -> tuple[Any, ...]:
    """The command that runs ``call``: FCALL, its function, its keys and arguments (EVAL
    and the source for a script without a library, ``scripts.PLAIN``)."""
    if not script.function:
        return ("EVAL", script.source, len(call.keys), *call.keys, *call.args)
    return ("FCALL", script.function, len(call.keys), *call.keys, *call.args)


def missing(reply: object) -> bool:
    """Whether a reply says the server does not know the function (nothing ran)."""
    return isinstance(reply, ResponseError) and str(reply).startswith(MISSING)


def run(client: Any, script: LuaScript, call: Call) -> Any:
    """One call on a blocking client, loading the library once if the server lost it."""
    try:
        return client.execute_command(*fcall(script, call))
    except ResponseError as error:
        if not missing(error):
            raise
    client.function_load(script.library, replace=True)
    return client.execute_command(*fcall(script, call))


async def run_async(client: Any, script: LuaScript, call: Call) -> Any:
    """``run`` on an asyncio client."""
    try:
        return await client.execute_command(*fcall(script, call))
    except ResponseError as error:
        if not missing(error):
            raise
    await client.function_load(script.library, replace=True)
    return await client.execute_command(*fcall(script, call))
