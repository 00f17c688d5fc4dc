"""``earmark reconcile FILE.csv`` on a real redis-server and PostgreSQL: a 100,000-line
file streamed within a bounded memory, the report as a table, exit 1 when cases opened."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from earmark import Engine, EngineConfig
from earmark import console as cli
from earmark.settings import get_settings
from tests.support.backends import fresh_prefix
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.postgres]

LINES = 100_000
STOCKED = 500  # SKUs with stock in the record; the others are counted 0 (matched)
SHORT = 20  # stocked SKUs the source counts 3 short: cases
# tracemalloc's peak while reconciling 100,000 lines (1.8 MB of CSV; about 2.5 MB
# measured): chunks of 2,000 lines keep it flat, where holding every line as a
# CountLine alone takes 12 MB.
PEAK_BYTES_MAX = 8 * 1024 * 1024


@pytest.fixture
def engine(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, pg_url: str
) -> Iterator[Engine]:
    prefix = fresh_prefix()
    for name in [n for n in os.environ if n.startswith("EARMARK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EARMARK_REDIS_URL", redis_server.url)
    monkeypatch.setenv("EARMARK_PREFIX", prefix)
    monkeypatch.setenv("EARMARK_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    engine = Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)).start()
    yield engine
    engine.close()
    get_settings.cache_clear()


def write_csv(path: Path) -> None:
    with path.open("w") as out:
        out.write("sku,location,qty\n")
        for i in range(LINES):
            qty = (10 - 3 if i < SHORT else 10) if i < STOCKED else 0
            out.write(f"S{i:06d},default,{qty}\n")


def test_a_100k_line_csv_is_streamed_in_bounded_memory(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(STOCKED):
        engine.receive(f"S{i:06d}", 10)
    engine.receive("UNCOUNTED", 4)
    time.sleep(0.002)  # the receipts happened strictly before the count
    counted_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    path = tmp_path / "counts.csv"
    write_csv(path)
    tracemalloc.start()
    try:
        code = cli.main(
            [
                "reconcile", str(path), "--source", "3pl-east", "--counted-at", counted_at,
                "--threshold-units", "2", "--actor", "cron",
            ]
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    print(f"100,000 lines ({path.stat().st_size:,} bytes): tracemalloc peak {peak:,} bytes")
    assert code == 1  # cases were opened
    assert f"{LINES} lines, {LINES - SHORT} matched, {SHORT} discrepancies" in out
    assert "1 known but not counted" in out and "UNCOUNTED@default" in out
    assert out.count("3pl-east") >= 1 and "S000019" in out and "S000020" not in out
    assert "100%" in err and f"{LINES:,} lines" in err
    assert peak < PEAK_BYTES_MAX


def test_no_cases_exit_0_and_bad_input_exit_2(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.receive("A", 5)
    time.sleep(0.002)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    path = tmp_path / "ok.csv"
    path.write_text("sku,qty\nA,5\n")
    assert (
        cli.main(["reconcile", str(path), "--source", "wms", "--counted-at", now, "--no-progress"])
        == 0
    )
    assert "1 lines, 1 matched, 0 discrepancies" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,qty\nA,5\nA,minus\n")
    assert cli.main(["reconcile", str(bad), "--source", "wms", "--counted-at", now]) == 2
    assert "line 2" in capsys.readouterr().err
    headless = tmp_path / "headless.csv"
    headless.write_text("A,5\n")
    assert cli.main(["reconcile", str(headless), "--source", "wms", "--counted-at", now]) == 2
