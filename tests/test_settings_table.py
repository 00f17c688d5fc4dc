"""The README's settings table is generated from the settings model and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts import settings_table

from earmark.settings import Settings


def test_the_readme_table_is_the_generated_one() -> None:
    text = settings_table.README.read_text(encoding="utf-8")
    _, body, _ = settings_table.section(text)
    assert body.strip() == settings_table.table(), (
        f"README.md's settings table is stale: run {settings_table.REGENERATE}"
    )


def test_every_setting_has_a_row_with_its_description() -> None:
    rows = settings_table.table().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for row, (name, field) in zip(rows, Settings.model_fields.items(), strict=True):
        assert row.startswith(f"| `EARMARK_{name.upper()}` |")
        assert field.description and row.endswith(f"| {field.description} |")


def test_check_mode_reports_a_stale_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    stale = settings_table.README.read_text(encoding="utf-8").replace("EARMARK_PORT", "X", 1)
    readme.write_text(stale, encoding="utf-8")
    monkeypatch.setattr(settings_table, "README", readme)
    assert settings_table.main(["--check"]) == 1
    assert settings_table.REGENERATE in capsys.readouterr().err
    assert settings_table.main([]) == 0
    assert settings_table.main(["--check"]) == 0
