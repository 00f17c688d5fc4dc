"""``run_local`` removes the temp directory it made unless ``--keep``; never ``--out``."""

from __future__ import annotations

from pathlib import Path

from loadtests.drill import run_local


def test_the_temp_directory_goes_unless_kept(tmp_path: Path) -> None:
    made = run_local.report_dir(None)
    (made / "drill_stats.csv").write_text("x", encoding="utf-8")
    run_local.clean_up(made, run_local.parse_args([]))
    assert not made.exists()
    kept = run_local.report_dir(None)
    try:
        run_local.clean_up(kept, run_local.parse_args(["--keep"]))
        assert kept.is_dir()
    finally:
        kept.rmdir()
    given = tmp_path / "reports"
    out = run_local.report_dir(given)
    run_local.clean_up(out, run_local.parse_args(["--out", str(given)]))
    assert given.is_dir()  # an --out the operator chose is theirs
