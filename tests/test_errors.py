"""The one error table: every refusal a Lua script can return has one row in ``OUTCOMES``
naming an ``EarmarkError`` whose code is the problem code, and every code is declared once."""

from __future__ import annotations

import re

from earmark import errors
from earmark.engine.scripts import lua_dir

# Replies of the rebuild's restore script: read by rebuild itself, never shown to a caller.
REBUILD_ONLY = {"ready", "stream_not_drained"}

REFUSAL = re.compile(r"error\s*=\s*'([a-z_]+)'")


def script_refusals() -> dict[str, set[str]]:
    """Every ``{error = '...'}`` a script's code (not its header) can return, by file."""
    found: dict[str, set[str]] = {}
    root = lua_dir()
    entries = [*root.iterdir(), *(root / "includes").iterdir()]
    for entry in sorted(entries, key=lambda e: e.name):
        if not entry.name.endswith(".lua"):
            continue
        code = [
            line for line in entry.read_text().splitlines() if not line.lstrip().startswith("--")
        ]
        for line in code:
            for name in REFUSAL.findall(line):
                found.setdefault(name, set()).add(entry.name)
    return found


def test_every_refusal_a_script_returns_has_one_outcome_row() -> None:
    refusals = script_refusals()
    assert refusals, "no refusal found in the scripts: the pattern no longer matches"
    missing = {
        code: sorted(files)
        for code, files in refusals.items()
        if code not in errors.OUTCOMES and code not in REBUILD_ONLY
    }
    assert missing == {}


def test_each_outcome_raises_an_error_of_a_declared_code() -> None:
    for name, outcome in errors.OUTCOMES.items():
        assert issubclass(outcome.error, errors.EarmarkError), name
        assert errors.ERRORS[outcome.error.code] is outcome.error, name


def test_every_error_class_is_registered_under_its_own_code() -> None:
    for code, cls in errors.ERRORS.items():
        assert cls.code == code
        assert 400 <= cls.http_status <= 599, code
