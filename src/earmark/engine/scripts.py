"""Loads the Lua scripts shipped in the wheel and registers them once per client.

``lua/`` in the repository is the source; the wheel carries it as ``earmark/lua``.
A line ``--- @include "name"`` inlines ``lua/includes/name.lua`` (BullMQ style),
so shared helpers live once in the source while each script stays self-contained
for Redis.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str


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


@cache
def load_scripts() -> dict[str, LuaScript]:
    """Every script, with its includes inlined. Cached: the files never change at run time.
    A script is known by its file name: adding ``lua/verb_noun.lua`` is all it takes."""
    root = lua_dir()
    scripts = {}
    for name in script_names(root):
        text = (root / f"{name}.lua").read_text()
        scripts[name] = LuaScript(name=name, source=_inline(text, root))
    if not scripts:
        raise FileNotFoundError(f"no Lua scripts in {root}")
    return scripts
