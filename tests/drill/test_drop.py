"""The drill's drop mode: each check against PASS and FAIL inputs, the end of the drill
against an engine double, and one short real ``--drop --embedded`` run."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from loadtests.drill import client, drop, run_local, verdict
from loadtests.drill.drop import DropJudge, DropRules, DropState, DropTally, Entry, Event
from loadtests.drill.scenario import ScenarioError
from loadtests.drill.verdict import DrillError, Level, Observed, Plan, Tally

from earmark import limits
from earmark.store import ledger
from tests.drill.test_drill import FakeClock, level, run_drill, status

OPENS_MS = 1_000_000
NOW_MS = OPENS_MS + 60_000
PLAN = Plan(skus=("A",), location="default", ttl_seconds=2, sweep_interval_seconds=1)


def joined(n: int, customer: str, arrival: int, sku: str = "A", at_ms: int = OPENS_MS) -> Event:
    return Event(f"0/{at_ms + n}-0", "waitlist_joined", sku, 0, at_ms + n, None, customer, arrival)


def event(n: int, kind: str, customer: str, rid: str | None = None, qty: int = 0) -> Event:
    return Event(f"0/{OPENS_MS + n}-0", kind, "A", qty, OPENS_MS + n, rid, customer)


def offered(n: int, customer: str, rid: str) -> Event:
    return event(n, "waitlist_offered", customer, rid)


def committed(n: int, rid: str, qty: int) -> Event:
    return Event(f"0/{OPENS_MS + n}-0", "committed", "A", qty, OPENS_MS + n, rid)


# -- no customer above the limit ------------------------------------------------------------


def test_customers_within_the_limit_pass() -> None:
    check = drop.check_customer_limit(2, {"ann": 1}, {"ann": 1, "bob": 2}, {"bob": 2})
    assert check.status == "PASS"
    assert "the most any holds + bought is 2 (limit 2)" in check.detail


def test_a_customer_above_the_limit_fails() -> None:
    check = drop.check_customer_limit(2, {"ann": 1}, {"ann": 2, "bob": 1}, {})
    assert check.status == "FAIL"
    assert "ann holds 1 + bought 2 > limit 2" in check.detail
    assert "bob" not in check.detail


def test_users_told_they_bought_past_the_limit_fail() -> None:
    check = drop.check_customer_limit(2, {}, {"ann": 2}, {"ann": 3})
    assert check.status == "FAIL"
    assert "ann was told 3 units bought" in check.detail


def test_commits_of_no_known_customer_fail() -> None:
    check = drop.check_customer_limit(2, {}, {}, {}, unowned_units=4)
    assert check.status == "FAIL"
    assert "4 units committed on reservations of no known customer" in check.detail


def test_units_bought_are_the_ledgers_commits_per_customer() -> None:
    events = [
        offered(1, "cat", "rsv-offer"),
        committed(2, "rsv-ann", 2),
        committed(3, "rsv-offer", 1),
        committed(4, "rsv-who", 1),
    ]
    bought, unowned = drop.bought_by_customer(events, {"rsv-ann": "ann"})
    assert bought == {"ann": 2, "cat": 1}
    assert unowned == 1


# -- waitlist order kept ----------------------------------------------------------------------


def test_offers_in_queue_order_pass() -> None:
    events = [
        joined(1, "ann", 1),
        joined(2, "bob", 2),
        joined(3, "cat", 3),
        event(4, "waitlist_skipped", "ann"),  # at its limit: passed over, rightly
        offered(5, "bob", "r1"),
        event(6, "waitlist_declined", "cat"),  # left the line
        joined(7, "dan", 4),
        offered(8, "dan", "r2"),
    ]
    check = drop.check_waitlist_order(events, OPENS_MS, None)
    assert check.status == "PASS"
    assert "2 offers to 4 joins" in check.detail


def test_an_offer_past_someone_waiting_ahead_fails() -> None:
    events = [joined(1, "ann", 1), joined(2, "bob", 2), offered(3, "bob", "r1")]
    check = drop.check_waitlist_order(events, OPENS_MS, None)
    assert check.status == "FAIL"
    assert "A: offer to bob while ann waited ahead" in check.detail


def test_an_offer_to_someone_not_in_line_fails() -> None:
    check = drop.check_waitlist_order([offered(1, "eve", "r1")], OPENS_MS, None)
    assert check.status == "FAIL"
    assert "offer to eve, who was not in line" in check.detail


def test_early_joins_are_ordered_by_the_opening_seed() -> None:
    seed = "00112233445566778899aabbccddeeff"
    early = sorted(["ann", "bob", "cat"], key=lambda c: (drop.opening_rank(seed, "A", c), c))
    assert early == ["cat", "ann", "bob"]  # this seed's order is not the arrival order
    events = [
        joined(i, c, i + 1, at_ms=OPENS_MS - 100) for i, c in enumerate(["ann", "bob", "cat"])
    ]
    events += [joined(10, "late", 4)]
    in_seed_order = [offered(20 + i, c, f"r{i}") for i, c in enumerate([*early, "late"])]
    assert drop.check_waitlist_order(events + in_seed_order, OPENS_MS, seed).status == "PASS"
    by_arrival = [offered(20 + i, c, f"r{i}") for i, c in enumerate(["ann", "bob", "cat"])]
    check = drop.check_waitlist_order(events + by_arrival, OPENS_MS, seed)
    assert check.status == "FAIL"
    assert "offer to ann while cat waited ahead" in check.detail


# -- every freed unit offered -----------------------------------------------------------------


def entry(customer: str, position: int, qty: int = 1, status: str = "waiting") -> Entry:
    return Entry(customer, "A", qty, status, position)


def test_no_free_unit_while_customers_wait_passes() -> None:
    levels = [level("A", committed=10)]
    check = drop.check_idle_units(levels, [entry("ann", 1), entry("bob", 2)], 2, NOW_MS)
    assert check.status == "PASS"
    assert "0 units free, 2 customers waiting" in check.detail


def test_free_units_with_nobody_waiting_pass() -> None:
    done = [entry("ann", 0, status="converted")]
    assert drop.check_idle_units([level("A", committed=7)], done, 0, NOW_MS).status == "PASS"


def test_a_unit_idle_while_someone_waits_fails() -> None:
    levels = [level("A", committed=9)]  # one unit available
    check = drop.check_idle_units(levels, [entry("ann", 1), entry("bob", 2)], 2, NOW_MS)
    assert check.status == "FAIL"
    assert "A: 1 units available while 2 wait (first in line: ann, 1 units)" in check.detail


def test_units_waiting_for_a_larger_head_of_line_pass() -> None:
    """FIFO: the head waits for 2, one is free; nobody behind it jumps ahead."""
    levels = [level("A", committed=9)]
    line = [entry("ann", 1, qty=2), entry("bob", 2)]
    assert drop.check_idle_units(levels, line, 2, NOW_MS).status == "PASS"


def test_units_of_an_offer_past_its_expiry_are_passing_on_not_idle() -> None:
    """The API stops counting an expired offer as reserved before the sweep passes it on."""
    levels = [level("A", committed=9)]
    lapsed = Entry("cat", "A", 1, "offered", 0, offer_expires_ms=NOW_MS - 200)
    line = [lapsed, entry("ann", 1), entry("bob", 2)]
    assert drop.check_idle_units(levels, line, 2, NOW_MS).status == "PASS"
    live = Entry("cat", "A", 1, "offered", 0, offer_expires_ms=NOW_MS + 2000)
    line = [live, entry("ann", 1), entry("bob", 2)]
    assert drop.check_idle_units(levels, line, 2, NOW_MS).status == "FAIL"


def test_waiting_customers_the_drill_did_not_see_fail_when_units_are_free() -> None:
    check = drop.check_idle_units([level("A", committed=8)], [], 3, NOW_MS)
    assert check.status == "FAIL"
    assert "the drop counts 3 waiting" in check.detail


# -- offers converted or passed on ------------------------------------------------------------


def test_offers_that_all_ended_pass() -> None:
    events = [
        offered(1, "ann", "r1"),
        event(2, "waitlist_converted", "ann", "r1"),
        offered(3, "bob", "r2"),
        event(4, "waitlist_expired", "bob", "r2"),
        offered(5, "cat", "r3"),
        event(6, "waitlist_declined", "cat", "r3"),
    ]
    check = drop.check_offers_ended(events)
    assert check.status == "PASS"
    assert "3 offers: 1 converted, 1 expired and passed on, 1 declined" in check.detail


def test_a_stuck_offer_fails() -> None:
    events = [offered(1, "ann", "r1"), event(2, "waitlist_converted", "ann", "r1")]
    check = drop.check_offers_ended([*events, offered(3, "bob", "r2")])
    assert check.status == "FAIL"
    assert "offer r2 never ended" in check.detail


def test_a_line_that_could_not_be_closed_fails() -> None:
    check = drop.check_offers_ended([], ["declining ann: 500"])
    assert check.status == "FAIL"
    assert "declining ann: 500" in check.detail


# -- the rules and the shoppers' choices ------------------------------------------------------


@pytest.mark.parametrize(
    "knobs",
    [
        {"limit": 0},
        {"limit": 101},
        {"offer_ttl_seconds": 0.5},
        {"repeat_share": 1.5},
        {"poll_seconds": 20, "line_wait_seconds": 10},
    ],
)
def test_drop_rules_refuse_knobs_out_of_bounds(knobs: dict[str, object]) -> None:
    with pytest.raises(ScenarioError):
        DropRules(**knobs)  # type: ignore[arg-type]


def test_the_drop_mode_mirrors_the_engines_bounds() -> None:
    assert drop.LIMIT_MAX == limits.DROP_CUSTOMER_LIMIT_MAX
    assert client.RESERVATION_PAGE_MAX == limits.RESERVATION_PAGE_MAX
    assert client.LEDGER_PAGE_MAX == ledger.PAGE_LIMIT_MAX


def test_offer_choices_follow_the_probabilities() -> None:
    rng = random.Random(5)
    picks = [drop.offer_choice(rng, 0.5, 0.3) for _ in range(10_000)]
    assert picks.count("commit") == pytest.approx(5000, rel=0.05)
    assert picks.count("decline") == pytest.approx(3000, rel=0.07)
    assert picks.count("abandon") == pytest.approx(2000, rel=0.08)


# -- the end of the drill, against an engine double -------------------------------------------


class FakeDropApi:
    """The engine at the end of a drop: a line, stock, holds and a ledger. Declines
    move entries to ``declined`` and add their events."""

    def __init__(
        self, levels: list[Level], entries: list[Entry], events: list[Event], sweeps: int = 0
    ) -> None:
        self.stock = levels
        self.entries = {(e.customer, e.sku): e for e in entries}
        self.events = events
        self.sweep_count = sweeps
        self.declined: list[str] = []
        self.held = {("ann", "A"): 1}

    def levels(self, skus: Sequence[str], location: str) -> list[Level]:
        return self.stock

    def drop_state(self, drop_id: str) -> DropState:
        waiting = sum(1 for e in self.entries.values() if e.status == "waiting")
        return DropState(OPENS_MS, OPENS_MS - 10, waiting, 0, 1)

    def waitlist_entry(self, drop_id: str, customer: str, sku: str) -> Entry | None:
        return self.entries.get((customer, sku))

    def decline(self, drop_id: str, customer: str, sku: str) -> Entry:
        found = self.entries[(customer, sku)]
        if found.status == "offered":
            self.events.append(event(900 + len(self.declined), "waitlist_declined", customer, "r2"))
        self.declined.append(customer)
        self.entries[(customer, sku)] = Entry(customer, sku, found.qty, "declined", 0)
        return self.entries[(customer, sku)]

    def held_units(self, customer: str, sku: str, location: str) -> int:
        return self.held.get((customer, sku), 0)

    def drop_events(self, sku: str, since_ms: int) -> list[Event]:
        return list(self.events)

    def sweeps(self) -> int | None:
        self.sweep_count += 1  # a pass per read: the judge waits for two
        return self.sweep_count


def drop_tally() -> DropTally:
    tally = DropTally(customers=3, joined=2)
    tally.entries = {("bob", "A"), ("cat", "A")}
    tally.touched = {("ann", "A")}
    tally.owners = {"r1": "ann"}
    tally.record_commit("ann", 1)
    return tally


def end_of_drop() -> FakeDropApi:
    levels = [level("A", committed=10)]
    entries = [entry("bob", 1), Entry("cat", "A", 1, "offered", 0)]
    events = [
        joined(1, "cat", 1),
        joined(2, "bob", 2),
        offered(3, "cat", "r2"),
        committed(4, "r1", 1),
    ]
    return FakeDropApi(levels, entries, events)


def judge_drop(
    api: FakeDropApi, tally: DropTally, clock: FakeClock | None = None
) -> verdict.Verdict:
    clock = clock or FakeClock()
    rules = DropRules()
    part = DropJudge(api, PLAN, rules, tally, wall=lambda: NOW_MS / 1000)
    baseline = [level("A", committed=9)]
    seen = Observed(baseline=baseline, tally=Tally(accepted=3, committed=1))
    seen.tally.committed_units["A"] = 1
    return verdict.judge(api, PLAN, seen, drop=part, clock=clock, sleep=clock.sleep)


def test_the_end_of_a_good_drop_passes_and_closes_the_line() -> None:
    api = end_of_drop()
    result = judge_drop(api, drop_tally())
    assert result.passed, verdict.render(result)
    assert api.declined == ["bob", "cat"]  # the waiting leave first, then the offered
    names = [check.name for check in result.checks]
    for name in (
        "every freed unit offered",
        "waitlist order kept",
        "offers converted or passed on",
        "no customer above the limit",
    ):
        assert name in names
    block = verdict.render(result)
    assert "2 entries closed at the end" in block
    assert "ann holds" not in block
    assert "the most any holds + bought is 2 (limit 2)" in block  # 1 held + 1 bought


def test_a_drop_with_an_idle_unit_and_a_customer_past_the_limit_fails() -> None:
    api = end_of_drop()
    api.stock = [level("A", committed=9)]  # one unit free, bob waits for one
    api.held = {("ann", "A"): 2}
    result = judge_drop(api, drop_tally())
    assert not result.passed
    assert status(result, "every freed unit offered").status == "FAIL"
    assert (
        "ann holds 2 + bought 1 > limit 2" in status(result, "no customer above the limit").detail
    )


def test_the_end_waits_the_ttl_then_two_sweeps_or_two_intervals_when_uncounted() -> None:
    clock = FakeClock()
    assert judge_drop(end_of_drop(), drop_tally(), clock).passed
    waited_counted = clock.slept

    class Uncounted(FakeDropApi):
        def sweeps(self) -> int | None:
            return None

    base = end_of_drop()
    clock = FakeClock()
    api = Uncounted(base.stock, list(base.entries.values()), base.events)
    assert judge_drop(api, drop_tally(), clock).passed
    assert clock.slept == pytest.approx(PLAN.ttl_seconds + 2 * PLAN.sweep_interval_seconds)
    assert PLAN.ttl_seconds <= waited_counted < clock.slept


def test_an_unreadable_ledger_fails_the_ledger_checks() -> None:
    class Broken(FakeDropApi):
        def drop_events(self, sku: str, since_ms: int) -> list[Event]:
            raise DrillError("ledger_unavailable")

    base = end_of_drop()
    api = Broken(base.stock, list(base.entries.values()), base.events)
    result = judge_drop(api, drop_tally())
    assert (
        "could not read the ledger: ledger_unavailable"
        in status(result, "waitlist order kept").detail
    )


def test_run_local_refuses_drop_rules_out_of_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_local.main(["--drop", "--limit", "0"]) == run_local.EXIT_SETUP_FAILED
    assert "limit must be between 1 and 100" in capsys.readouterr().err


def test_the_default_drill_passes_no_drop_option_to_locust(tmp_path: Path) -> None:
    backend = run_local.Backend(None, "sqlite:///x.db", "embedded")
    plain = run_local.parse_args([])
    scenario = run_local.scenario_of(plain)
    assert "--drop" not in run_local.locust_command(plain, scenario, "u", backend, tmp_path)
    dropped = run_local.parse_args(["--drop", "--limit", "3"])
    command = run_local.locust_command(dropped, scenario, "u", backend, tmp_path)
    assert command[command.index("--limit") + 1] == "3"
    assert run_local.locust_bound_seconds(dropped, 30) > run_local.locust_bound_seconds(plain, 30)


# -- the drop drill, for real (subprocesses on 127.0.0.1) -------------------------------------


@pytest.mark.timeout(60)
def test_a_short_drop_drill_passes(tmp_path: Path) -> None:
    done = run_drill(
        tmp_path,
        *("--drop", "--users", "20", "--skus", "2", "--stock", "15"),
        *("--run-time", "6s", "--ttl", "2", "--offer-ttl", "2"),
        *("--think-min", "0.2", "--think-max", "1"),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "earmark drill verdict: PASS" in done.stdout, output
    for check in (
        "no oversell",
        "no phantom locks",
        "every freed unit offered",
        "waitlist order kept",
        "offers converted or passed on",
        "no customer above the limit",
    ):
        assert f"[PASS] {check}" in done.stdout, output
    found = re.search(r"(\d+) rate_limited \((\d+) bot calls\)", done.stdout)
    assert found and int(found[1]) > 0, output  # the bot met the rate limit
    joins = re.search(r"waitlist: (\d+) joined, (\d+) offers seen", done.stdout)
    assert joins and int(joins[1]) > 0, output  # more shoppers than units: a line formed
