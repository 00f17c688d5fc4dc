"""The launch drill: its verdict against engine doubles, and a short real drill.

The verdict and the scenario are plain modules, imported here. Locust monkey-patches its
process with gevent, so the drill itself only runs as a subprocess
(``python -m loadtests.drill.run_local``), against 127.0.0.1 only.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from loadtests.drill import verdict
from loadtests.drill.scenario import Scenario, ScenarioError, timespan_seconds
from loadtests.drill.verdict import (
    Check,
    DrillError,
    LedgerReading,
    Level,
    Observed,
    Plan,
    Tally,
)

from earmark import models
from earmark.store import ledger

ROOT = Path(__file__).resolve().parents[2]
PLAN = Plan(skus=("A", "B"), location="default", ttl_seconds=5, sweep_interval_seconds=1)
STOCK = 10


def level(
    sku: str, on_hand: int = STOCK, reserved: int = 0, committed: int = 0, **other: int
) -> Level:
    buckets = {"on_hand": on_hand, "reserved": reserved, "committed": committed}
    buckets["available"] = on_hand - reserved - committed
    return Level(sku, "default", {**buckets, **other})


def stocked() -> list[Level]:
    return [level("A"), level("B")]


class FakeClock:
    """time.monotonic and time.sleep for the judge: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


class FakeApi:
    """An engine double: each read returns the next scripted answer; the last repeats.
    An answer may be a DrillError to raise (the API unreachable)."""

    def __init__(self, *answers: list[Level] | DrillError) -> None:
        self.answers = list(answers)
        self.reads = 0

    def levels(self, skus: Sequence[str], location: str) -> list[Level]:
        answer = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        if isinstance(answer, DrillError):
            raise answer
        return [x for x in answer if x.sku in skus]


class FakeLedger:
    def __init__(self, *readings: LedgerReading | DrillError) -> None:
        self.readings = list(readings)
        self.reads = 0

    def read(self, skus: Sequence[str], location: str) -> LedgerReading:
        reading = self.readings[min(self.reads, len(self.readings) - 1)]
        self.reads += 1
        if isinstance(reading, DrillError):
            raise reading
        return reading


def sold(committed_a: int = 6, committed_b: int = 4) -> Tally:
    tally = Tally(accepted=12, refused=30, units_held=12, abandoned=2)
    tally.record_commit([("A", committed_a)])
    tally.record_commit([("B", committed_b)])
    return tally


def judge(
    api: FakeApi,
    tally: Tally | None = None,
    *,
    baseline: list[Level] | None = None,
    unread_at_start: bool = False,
    ledger_source: FakeLedger | None = None,
    clock: FakeClock | None = None,
    **observed: object,
) -> verdict.Verdict:
    clock = clock or FakeClock()
    seen = Observed(
        baseline=None if unread_at_start else baseline or stocked(),
        tally=tally or sold(),
        **observed,  # type: ignore[arg-type]
    )
    return verdict.judge(api, PLAN, seen, ledger_source, clock=clock, sleep=clock.sleep)


def status(result: verdict.Verdict, name: str) -> Check:
    return next(check for check in result.checks if check.name == name)


# -- a correct engine passes --------------------------------------------------------------


def test_a_correct_engine_passes() -> None:
    final = [level("A", committed=6), level("B", committed=4)]
    latency = verdict.Latency("POST /v1/reservations", 50, 0, 4, 12, 30)
    result = judge(FakeApi(final), latencies=[latency])
    assert result.passed
    assert result.exit_code == 0
    assert result.oversold_units == 0
    assert result.phantom_units == 0
    assert status(result, "ledger equals API").status == "SKIP"
    block = verdict.render(result)
    assert block.splitlines()[0].strip("= ") == "earmark drill verdict: PASS"
    assert "12 accepted, 30 refused" in block
    assert "POST /v1/reservations" in block


def test_holds_that_drain_within_the_bound_pass() -> None:
    clock = FakeClock()
    held = [level("A", reserved=3, committed=6), level("B", committed=4)]
    drained = [level("A", committed=6), level("B", committed=4)]
    api = FakeApi(held, held, held, drained)
    result = judge(api, clock=clock)
    assert result.passed
    assert "3 units held when the users stopped" in status(result, "no phantom locks").detail
    assert api.reads == 4
    assert clock.slept == pytest.approx(3 * PLAN.poll_seconds)


def test_sold_out_exactly_passes() -> None:
    final = [level("A", committed=STOCK), level("B", committed=STOCK)]
    assert judge(FakeApi(final), sold(STOCK, STOCK)).passed


# -- a broken engine fails ------------------------------------------------------------------


def test_committed_beyond_stock_fails() -> None:
    final = [level("A", on_hand=STOCK, committed=STOCK + 3), level("B", committed=4)]
    result = judge(FakeApi(final))
    assert not result.passed
    assert result.exit_code == 1
    assert result.oversold == {"A": 3}
    assert status(result, "no oversell").status == "FAIL"
    assert "oversold units: 3" in verdict.render(result)


def test_commits_confirmed_beyond_stock_fail_even_if_the_api_hides_them() -> None:
    final = [level("A", committed=STOCK), level("B", committed=4)]
    result = judge(FakeApi(final), sold(committed_a=STOCK + 2))
    assert result.oversold == {"A": 2}
    assert status(result, "no oversell").status == "FAIL"


def test_a_commit_the_api_lost_fails() -> None:
    final = [level("A", committed=2), level("B", committed=4)]
    result = judge(FakeApi(final), sold(committed_a=6))
    check = status(result, "no lost commit")
    assert check.status == "FAIL"
    assert "told 6 units committed, API counts 2" in check.detail


def test_reserved_stuck_fails_after_a_bounded_wait() -> None:
    clock = FakeClock()
    stuck = [level("A", reserved=2, committed=6), level("B", committed=4)]
    api = FakeApi(stuck)
    result = judge(api, clock=clock)
    assert not result.passed
    assert result.phantom_units == 2
    assert "A reserved=2" in status(result, "no phantom locks").detail
    assert clock.slept == pytest.approx(PLAN.settle_bound_seconds)
    assert api.reads <= PLAN.settle_bound_seconds / PLAN.poll_seconds + 2


@pytest.mark.parametrize(
    "broken",
    [
        level("A", on_hand=-1),
        level("A", reserved=-2),
        level("A", committed=-1),
        Level("A", "default", {"on_hand": 10, "committed": 12, "available": -2}),
        level("A", damaged=-1),
    ],
    ids=["on_hand", "reserved", "committed", "available", "damaged"],
)
def test_a_negative_bucket_fails(broken: Level) -> None:
    result = judge(FakeApi([broken, level("B")]), sold(0, 0))
    check = status(result, "no negative bucket")
    assert check.status == "FAIL"
    assert "=-" in check.detail


def test_buckets_that_do_not_add_up_fail() -> None:
    wrong = Level("A", "default", {"on_hand": 10, "reserved": 0, "committed": 6, "available": 9})
    check = status(judge(FakeApi([wrong, level("B", committed=4)])), "no negative bucket")
    assert check.status == "FAIL"
    assert "available=9" in check.detail


def test_no_stock_at_the_start_fails() -> None:
    empty = [level("A", on_hand=0), level("B", on_hand=0)]
    result = judge(FakeApi(empty), Tally(refused=40), baseline=empty)
    assert status(result, "stock at the start").status == "FAIL"
    assert "no reservation was accepted" in status(result, "traffic as expected").detail


def test_unexpected_responses_and_scenario_exceptions_fail() -> None:
    tally = sold()
    tally.record_unexpected("POST /v1/reservations", 500)
    final = [level("A", committed=6), level("B", committed=4)]
    result = judge(FakeApi(final), tally, exceptions=["1 x KeyError('id')"])
    detail = status(result, "traffic as expected").detail
    assert "1 x POST /v1/reservations -> 500" in detail
    assert "KeyError" in detail
    assert not result.passed


def test_an_unreachable_api_fails_without_raising() -> None:
    at_start = judge(FakeApi(stocked()), unread_at_start=True, baseline_error="refused")
    assert at_start.baseline == ()
    assert "could not read the API at the start: refused" in verdict.render(at_start)
    assert not at_start.passed
    at_end = judge(FakeApi(DrillError("connection refused")))
    assert "connection refused" in status(at_end, "no phantom locks").detail
    assert not at_end.passed
    assert at_end.phantom_units is None
    assert "phantom-locked units: unknown" in verdict.render(at_end)


# -- the durable record ---------------------------------------------------------------------


FINAL = [level("A", committed=6), level("B", committed=4)]


def test_a_ledger_equal_to_the_api_passes() -> None:
    result = judge(FakeApi(FINAL), ledger_source=FakeLedger(LedgerReading(FINAL, (), 12)))
    check = status(result, "ledger equals API")
    assert check.status == "PASS"
    assert "12 flushed" in check.detail


def test_a_ledger_that_catches_up_passes() -> None:
    behind = LedgerReading([level("A", reserved=2, committed=6), level("B", committed=4)])
    source = FakeLedger(behind, behind, LedgerReading(FINAL))
    assert status(judge(FakeApi(FINAL), ledger_source=source), "ledger equals API").status == "PASS"
    assert source.reads == 3


def test_a_ledger_that_disagrees_fails_after_a_bounded_wait() -> None:
    clock = FakeClock()
    wrong = LedgerReading([level("A", committed=5), level("B", committed=4)])
    result = judge(FakeApi(FINAL), ledger_source=FakeLedger(wrong), clock=clock)
    check = status(result, "ledger equals API")
    assert check.status == "FAIL"
    assert "A (API/ledger): committed 6/5" in check.detail
    assert clock.slept <= PLAN.ledger_wait_seconds + PLAN.poll_seconds


def test_a_sku_missing_from_the_ledger_fails() -> None:
    result = judge(FakeApi(FINAL), ledger_source=FakeLedger(LedgerReading([FINAL[0]])))
    assert "B (API/ledger): on_hand 10/0" in status(result, "ledger equals API").detail


def test_ledger_drift_and_read_errors_fail() -> None:
    drift = LedgerReading(FINAL, ("Redis/ledger drift on A@default: reserved 1/0",))
    assert not judge(FakeApi(FINAL), ledger_source=FakeLedger(drift)).passed
    broken = FakeLedger(DrillError("database is locked"))
    check = status(judge(FakeApi(FINAL), ledger_source=broken), "ledger equals API")
    assert check.status == "FAIL"
    assert "database is locked" in check.detail


def test_the_verdict_knows_every_bucket_the_engine_keeps() -> None:
    assert verdict.RECORDED_BUCKETS == ledger.BUCKETS
    level_fields = set(models.StockLevel.model_fields) - {"sku", "location", "version"}
    assert set(verdict.BUCKETS) == level_fields


def test_levels_parse_every_integer_bucket_but_version() -> None:
    parsed = Level.from_json(
        {"sku": "A", "location": "x", "on_hand": 3, "version": 9, "new_bucket": 1, "flag": True}
    )
    assert dict(parsed.buckets) == {"on_hand": 3, "new_bucket": 1}
    assert parsed["committed"] == 0


def test_a_plan_bounds_its_waits() -> None:
    with pytest.raises(ValueError, match="waits"):
        dataclasses.replace(PLAN, ttl_seconds=10**9)
    with pytest.raises(ValueError, match="SKU"):
        dataclasses.replace(PLAN, skus=())


# -- the scenario ---------------------------------------------------------------------------


def test_carts_hold_distinct_skus_within_bounds() -> None:
    scenario = Scenario(skus=5, qty_max=3, lines_max=3)
    rng = random.Random(7)
    for _ in range(200):
        cart = scenario.cart(rng)
        skus = [sku for sku, _ in cart]
        assert 1 <= len(cart) <= 3
        assert len(set(skus)) == len(skus)
        assert set(skus) <= set(scenario.sku_names)
        assert all(1 <= qty <= 3 for _, qty in cart)


def test_outcomes_follow_the_probabilities() -> None:
    scenario = Scenario(commit_probability=0.5, release_probability=0.3)
    rng = random.Random(11)
    counts = Counter(scenario.outcome(rng) for _ in range(10_000))
    assert counts["commit"] == pytest.approx(5000, rel=0.05)
    assert counts["release"] == pytest.approx(3000, rel=0.07)
    assert counts["abandon"] == pytest.approx(2000, rel=0.08)


@pytest.mark.parametrize(
    "knobs",
    [
        {"commit_probability": 0.8, "release_probability": 0.3},
        {"skus": 0},
        {"lines_max": 4, "skus": 3},
        {"ttl_seconds": 0.5},
        {"think_seconds_min": 3, "think_seconds_max": 1},
        {"sku_prefix": "no spaces"},
    ],
)
def test_scenario_refuses_knobs_out_of_bounds(knobs: dict[str, object]) -> None:
    with pytest.raises(ScenarioError):
        Scenario(**knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1m5s", 65)]
)
def test_run_time_spans(text: str, seconds: int) -> None:
    assert timespan_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "1d", "-5s", "abc"])
def test_bad_run_time_spans(text: str) -> None:
    with pytest.raises(ScenarioError):
        timespan_seconds(text)


# -- the drill, for real (subprocesses on 127.0.0.1) -----------------------------------------


DRILL_TIMEOUT_SECONDS = 55


def run_drill(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``run_local --embedded``: no server binaries needed; nothing from our env leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EARMARK_", "LOCUST_"))}
    command = [sys.executable, "-m", "loadtests.drill.run_local", "--embedded"]
    command += ["--out", str(out), *args]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.timeout(60)
def test_a_short_drill_passes(tmp_path: Path) -> None:
    done = run_drill(
        tmp_path,
        *("--users", "20", "--skus", "2", "--stock", "30"),
        *("--run-time", "5s", "--ttl", "2", "--think-min", "0.2", "--think-max", "1"),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "earmark drill verdict: PASS" in done.stdout, output
    for check in ("no oversell", "no negative bucket", "no phantom locks", "ledger equals API"):
        assert f"[PASS] {check}" in done.stdout, output
    assert "POST /v1/reservations/{id}/commit" in done.stdout
    assert (tmp_path / "drill.html").stat().st_size > 0
    # The stats CSV counts the reserves the verdict counts (accepted + refused here: the
    # run passed, so nothing unexpected), also those of the last second.
    found = re.search(r"reservations: (\d+) accepted, (\d+) refused", done.stdout)
    assert found, output
    with (tmp_path / "drill_stats.csv").open(encoding="utf-8") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    reserves = int(rows["/v1/reservations"]["Request Count"])
    assert reserves == int(found[1]) + int(found[2]) > 0, output
    assert re.search(r"^drill +\d+s: sold \d+ units .* p99 so far ", done.stdout, re.M), output


@pytest.mark.timeout(60)
def test_a_drill_with_nothing_to_sell_fails(tmp_path: Path) -> None:
    done = run_drill(tmp_path, "--users", "5", "--stock", "0", "--run-time", "2s", "--ttl", "1")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "earmark drill verdict: FAIL" in done.stdout, output
    assert "had nothing to sell" in done.stdout


def test_the_progress_line_says_elapsed_sold_refused_held_and_p99() -> None:
    tally = verdict.Tally(accepted=10, refused=4, committed=3, released=2, gone=1)
    tally.record_commit([("A", 2), ("B", 1)])
    line = verdict.progress_line(12.4, tally, 38.0)
    assert line == "drill    12s: sold 3 units (4 carts), refused 4, held 3, p99 so far 38 ms"
    assert verdict.progress_line(0, verdict.Tally(), None).endswith("p99 so far -")
