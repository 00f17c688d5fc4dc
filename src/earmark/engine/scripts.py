"""Loads the Lua scripts shipped in the wheel and registers them once per client.

``lua/`` in the repository is the source; the wheel carries it as ``earmark/lua``.
A line ``--- @include "name"`` inlines ``lua/includes/name.lua`` (BullMQ style),
so shared helpers live once in the source while each script stays self-contained
for Redis.

Each script reaches Redis as a function library (``FUNCTION LOAD``, called with
``FCALL``): its includes run once, when the library loads, and each call runs only
the script's body. As a plain script (``EVAL``) every call would first define every
helper of every include again, which cost about as much as the body's own work
(docs/benchmarks.md, "Script cost"). ``LuaScript.source`` keeps the ``EVAL`` form,
which the script tests and benchmarks use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.MULTILINE)


def lua_dir() -> Traversable:
    """The installed ``earmark/lua`` directory, or ``lua/`` of a source checkout."""
    packaged = resources.files("earmark") / "lua"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[3] / "lua"
    if source.is_dir():
        return source
    raise FileNotFoundError("earmark's Lua scripts are missing from the installation")


def _inline(source: str, root: Traversable, seen: tuple[str, ...] = ()) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            raise ValueError(f"include cycle through {name!r}")
        text = (root / "includes" / f"{name}.lua").read_text()
        return _inline(text, root, (*seen, name))

    return INCLUDE.sub(include, source)


# Scripts that finish or free what is already held: they run while Redis is at its
# maxmemory (function flag allow-oom), so a full Redis still lets holds be committed,
# shipped, released and extended. Every other write is refused up front when Redis is
# full (OOM, earmark.errors.StoreFull), before it writes anything; reads never are.
FREES_HELD = frozenset(
    {
        "commit_reservation",
        "decline_waitlist",
        "extend_reservation",
        "free_seat",
        "pin_reservation",
        "release_idempotency",
        "release_reservation",
        "ship_reservation",
        "unpin_reservation",
    }
)


# Scripts that write only when they must and so also run on a replica (a start-up that
# reads a partition's marker there): sent as plain scripts (EVAL), which Redis lets run
# on a replica until they write. A function that may write is refused there up front.
PLAIN = frozenset({"init_partition"})


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script: ``source`` as a plain script (EVAL), ``library`` as the function
    library that registers ``function`` (FUNCTION LOAD, then FCALL). The function's name
    carries a digest of the code, so two versions of earmark on one Redis never call
    each other's scripts. A ``PLAIN`` script has no library (``function`` is '')."""

    name: str
    source: str
    library: str = ""
    function: str = ""


def writes(name: str) -> bool:
    """Whether a script may write: every one but the ``read_*`` scripts (a naming rule the
    script tests check against each header's "read only")."""
    return not name.startswith("read_")


def script_names(root: Traversable) -> list[str]:
    """Every script of ``root``: each ``*.lua`` file beside ``includes/``, by name."""
    return sorted(
        entry.name.removesuffix(".lua")
        for entry in root.iterdir()
        if entry.is_file() and entry.name.endswith(".lua")
    )


def _flags(name: str) -> str:
    if not writes(name):
        return "{'no-writes'}"
    if name in FREES_HELD:
        return "{'allow-oom'}"
    return "{}"


def build(name: str, text: str, root: Traversable) -> LuaScript:
    """The script ``text`` (a ``lua/`` file) in both forms. Its includes become the
    library's top level and its body the registered function's body, which starts with
    ``begin_call()`` (lua/includes/common.lua) in both forms."""
    included = "\n".join(_inline(m.group(0), root) for m in INCLUDE.finditer(text))
    body = INCLUDE.sub("", text)
    source = f"{included}\nbegin_call()\n{body}"
    if name in PLAIN:
        return LuaScript(name=name, source=source)
    digest = hashlib.sha1(f"{name}\n{source}".encode()).hexdigest()[:12]
    function = f"earmark_{name}_{digest}"
    library = (
        f"#!lua name={function}\n{included}\n"
        f"redis.register_function{{function_name = '{function}', flags = {_flags(name)},\n"
        f"  callback = function(KEYS, ARGV)\nbegin_call()\n{body}\nend}}\n"
    )
    return LuaScript(name=name, source=source, library=library, function=function)


@cache
def load_scripts() -> dict[str, LuaScript]:
    """Every script, with its includes inlined. Cached: the files never change at run time.
    A script is known by its file name: adding ``lua/verb_noun.lua`` is all it takes."""
    root = lua_dir()
    scripts = {}
    for name in script_names(root):
        text = (root / f"{name}.lua").read_text()
        scripts[name] = build(name, text, root)
    if not scripts:
        raise FileNotFoundError(f"no Lua scripts in {root}")
    return scripts
