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

# The stock lifecycle scripts (docs/lifecycle.md): transfers, returns, damage, write-offs,
# cycle counts and purchase orders.
LIFECYCLE_SCRIPT_NAMES = (
    "close_purchase_order",
    "count_stock",
    "create_purchase_order",
    "damage_stock",
    "dispose_returned",
    "receive_purchase_order",
    "receive_return",
    "receive_transfer",
    "transfer_stock",
    "write_off_stock",
)

# Every script the engine runs; the loader fails fast if one is missing.
SCRIPT_NAMES = (
    "adjust_stock",
    "claim_idempotency",
    "commit_reservation",
    "extend_reservation",
    "init_partition",
    "pin_reservation",
    "read_reservation",
    "read_stock",
    "receive_stock",
    "release_reservation",
    "reserve",
    "restore_stock",
    "ship_reservation",
    "unpin_reservation",
    *LIFECYCLE_SCRIPT_NAMES,
)


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


@cache
def load_scripts() -> dict[str, LuaScript]:
    """Every script, with its includes inlined. Cached: the files never change at run time."""
    root = lua_dir()
    scripts = {}
    for name in SCRIPT_NAMES:
        text = (root / f"{name}.lua").read_text()
        scripts[name] = LuaScript(name=name, source=_inline(text, root))
    return scripts
