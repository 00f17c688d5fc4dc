"""The drill's invariants and its verdict: plain Python, independent of Locust.

``judge`` reads the engine through an ``EngineApi`` (HTTP in the drill, a double in the
tests), waits a bounded time for the holds to drain, optionally compares the durable
record (a ``LedgerSource``), and returns a ``Verdict``; ``render`` prints it.

The checks, each PASS, FAIL or SKIP:

* stock at the start: every SKU had units to sell (else the drill proves nothing);
* no oversell: committed never exceeds the stock, by the API's counts and by the
  commits users were told succeeded;
* no lost commit: the API counts at least every commit a user was told succeeded;
* no negative bucket, and ``available = on_hand - reserved - committed``;
* no phantom locks: ``reserved`` is back to zero within TTL + sweep interval + grace;
* ledger equals API: after a flush, the durable record's buckets equal the API's;
* traffic: reservations were accepted, and no response was unexpected (5xx, transport
  errors, a status outside the contract);
* with a drop (``drop.DropJudge``), the drop's checks: see ``drop.py``.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Status = Literal["PASS", "FAIL", "SKIP"]

# Buckets the durable record keeps (earmark.store.ledger.BUCKETS; a test checks they agree).
RECORDED_BUCKETS = (
    "on_hand",
    "reserved",
    "committed",
    "in_transit",
    "returned",
    "damaged",
    "written_off",
    "inbound",
)
# Every bucket a stock level reports; none may be negative.
BUCKETS = (*RECORDED_BUCKETS[:3], "available", *RECORDED_BUCKETS[3:])
SETTLE_GRACE_SECONDS_DEFAULT = 2.0
POLL_SECONDS_DEFAULT = 0.5
LEDGER_WAIT_SECONDS_DEFAULT = 15.0
WAIT_SECONDS_MAX = 24 * 60 * 60 + 3600  # the longest TTL plus an hour
SHOWN_PROBLEMS_MAX = 5  # per check, in the verdict block


class DrillError(Exception):
    """The engine or its record could not be read; the message says what failed."""


# -- what the drill observes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Level:
    """One (sku, location) as the API (or the record) reports it: bucket -> units."""

    sku: str
    location: str
    buckets: Mapping[str, int]

    def __getitem__(self, bucket: str) -> int:
        return self.buckets.get(bucket, 0)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Level:
        """Every integer field except ``version`` is a bucket (new buckets included)."""
        buckets = {
            name: value
            for name, value in data.items()
            if isinstance(value, int) and not isinstance(value, bool) and name != "version"
        }
        return cls(str(data["sku"]), str(data["location"]), buckets)

    @classmethod
    def empty(cls, sku: str, location: str) -> Level:
        return cls(sku, location, {})


@dataclass(slots=True)
class Tally:
    """What the shoppers saw, counted on the client side."""

    accepted: int = 0  # reservations held (201)
    refused: int = 0  # 409 insufficient_stock
    units_held: int = 0
    committed: int = 0  # commits answered 200
    released: int = 0  # releases answered 200
    abandoned: int = 0  # holds left to expire
    gone: int = 0  # commits or releases answered 410: the hold had expired
    committed_units: Counter[str] = field(default_factory=Counter)  # sku -> units
    unexpected: Counter[str] = field(default_factory=Counter)  # "endpoint -> status"

    @property
    def holding(self) -> int:
        """Holds neither committed nor released (abandoned ones until they expire)."""
        return self.accepted - self.committed - self.released - self.gone

    def record_unexpected(self, endpoint: str, status: int | str) -> None:
        self.unexpected[f"{endpoint} -> {status}"] += 1

    def record_commit(self, lines: Iterable[tuple[str, int]]) -> None:
        self.committed += 1
        for sku, qty in lines:
            self.committed_units[sku] += qty


@dataclass(frozen=True, slots=True)
class Latency:
    """One endpoint's latency from Locust's stats (milliseconds)."""

    endpoint: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What the drill did and how long the checks may wait."""

    skus: tuple[str, ...]
    location: str
    ttl_seconds: float
    sweep_interval_seconds: float
    settle_grace_seconds: float = SETTLE_GRACE_SECONDS_DEFAULT
    poll_seconds: float = POLL_SECONDS_DEFAULT
    ledger_wait_seconds: float = LEDGER_WAIT_SECONDS_DEFAULT

    def __post_init__(self) -> None:
        if not self.skus:
            raise ValueError("a drill needs at least one SKU")
        waits = (self.ttl_seconds, self.sweep_interval_seconds, self.settle_grace_seconds)
        if min(*waits, self.ledger_wait_seconds) < 0 or sum(waits) > WAIT_SECONDS_MAX:
            raise ValueError("waits must be >= 0 and TTL + sweep + grace at most 25 hours")
        if not 0 < self.poll_seconds <= 60:
            raise ValueError("poll_seconds must be in (0, 60]")

    @property
    def settle_bound_seconds(self) -> float:
        """The longest a hold can outlive the test: TTL, then the next sweep, plus grace."""
        return self.ttl_seconds + self.sweep_interval_seconds + self.settle_grace_seconds


class EngineApi(Protocol):
    def levels(self, skus: Sequence[str], location: str) -> list[Level]:
        """Every bucket of each SKU (unknown SKUs as zeros). Raises DrillError."""
        ...


@dataclass(frozen=True, slots=True)
class LedgerReading:
    """The durable record's levels, after a flush; ``drift``: problems its own
    verification (``earmark verify``) reported, if it ran."""

    levels: list[Level]
    drift: tuple[str, ...] = ()
    flushed_events: int | None = None


class LedgerSource(Protocol):
    def read(self, skus: Sequence[str], location: str) -> LedgerReading:
        """Raises DrillError when the record cannot be read."""
        ...


Clock = Callable[[], float]
Sleep = Callable[[float], None]


class DropPart(Protocol):
    """The drop mode's checks (``drop.DropJudge``): some before the holds settle (the
    line as the users left it), some after (the ledger)."""

    def before_settle(self, clock: Clock, sleep: Sleep) -> list[Check]: ...

    def after_settle(
        self, baseline: Mapping[str, Level], final: Mapping[str, Level], clock: Clock, sleep: Sleep
    ) -> list[Check]: ...

    def summary(self) -> list[str]: ...


# -- the checks -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    @classmethod
    def of(cls, name: str, problems: Sequence[str], ok: str) -> Check:
        """PASS with ``ok`` when there is no problem, else FAIL listing the first few."""
        if not problems:
            return cls(name, "PASS", ok)
        shown = "; ".join(problems[:SHOWN_PROBLEMS_MAX])
        more = len(problems) - SHOWN_PROBLEMS_MAX
        return cls(name, "FAIL", shown + (f"; and {more} more" if more > 0 else ""))


def by_sku(levels: Iterable[Level]) -> dict[str, Level]:
    return {level.sku: level for level in levels}


def check_stock_at_start(plan: Plan, baseline: Mapping[str, Level]) -> Check:
    empty = [sku for sku in plan.skus if sellable(baseline, sku, plan.location) <= 0]
    problems = [f"{sku} had nothing to sell" for sku in empty]
    total = sum(sellable(baseline, sku, plan.location) for sku in plan.skus)
    return Check.of("stock at the start", problems, f"{total} units to sell")


def sellable(baseline: Mapping[str, Level], sku: str, location: str) -> int:
    """Units not yet sold when the drill started (holds from before may still free up)."""
    level = baseline.get(sku) or Level.empty(sku, location)
    return level["on_hand"] - level["committed"]


def oversold_units(
    plan: Plan, baseline: Mapping[str, Level], final: Mapping[str, Level], tally: Tally
) -> dict[str, int]:
    """Per SKU, units committed beyond the stock: by the API's count of the drill's
    commits, by the commits users were told succeeded, and committed beyond on_hand."""
    found = {}
    for sku in plan.skus:
        start = baseline.get(sku) or Level.empty(sku, plan.location)
        end = final.get(sku) or Level.empty(sku, plan.location)
        stock = sellable(baseline, sku, plan.location)
        sold_by_api = end["committed"] - start["committed"]
        over = max(sold_by_api - stock, tally.committed_units[sku] - stock)
        over = max(over, end["committed"] - end["on_hand"], 0)
        if over:
            found[sku] = over
    return found


def check_oversell(oversold: Mapping[str, int]) -> Check:
    problems = [f"{sku} oversold by {units}" for sku, units in sorted(oversold.items())]
    return Check.of("no oversell", problems, "committed <= stock for every SKU")


def check_lost_commits(
    plan: Plan, baseline: Mapping[str, Level], final: Mapping[str, Level], tally: Tally
) -> Check:
    problems = []
    for sku in plan.skus:
        start = baseline.get(sku) or Level.empty(sku, plan.location)
        end = final.get(sku) or Level.empty(sku, plan.location)
        counted = end["committed"] - start["committed"]
        if counted < tally.committed_units[sku]:
            told = tally.committed_units[sku]
            problems.append(f"{sku}: users were told {told} units committed, API counts {counted}")
    return Check.of("no lost commit", problems, "the API counts every confirmed commit")


def negative_buckets(levels: Iterable[Level]) -> list[str]:
    return [
        f"{level.sku} {bucket}={level[bucket]}"
        for level in levels
        for bucket in sorted(level.buckets)
        if level[bucket] < 0
    ]


def check_buckets(levels: Sequence[Level]) -> Check:
    problems = negative_buckets(levels)
    for level in levels:
        expected = level["on_hand"] - level["reserved"] - level["committed"]
        if "available" in level.buckets and level["available"] != expected:
            problems.append(
                f"{level.sku} available={level['available']} but "
                f"on_hand - reserved - committed = {expected}"
            )
    return Check.of("no negative bucket", problems, "every bucket >= 0 and they add up")


@dataclass(frozen=True, slots=True)
class Settled:
    levels: list[Level]
    waited_seconds: float
    bound_seconds: float
    held_at_stop: int  # units reserved at the first read: what the check waited for

    @property
    def phantom_units(self) -> int:
        return sum(max(level["reserved"], 0) for level in self.levels)


def settle(api: EngineApi, plan: Plan, clock: Clock, sleep: Sleep) -> Settled:
    """Polls until no SKU has units reserved, or the bound has passed (then once more)."""
    started = clock()
    deadline = started + plan.settle_bound_seconds
    held_at_stop: int | None = None
    while True:
        levels = api.levels(plan.skus, plan.location)
        now = clock()
        if held_at_stop is None:
            held_at_stop = sum(max(level["reserved"], 0) for level in levels)
        if all(level["reserved"] == 0 for level in levels) or now >= deadline:
            return Settled(levels, now - started, plan.settle_bound_seconds, held_at_stop)
        sleep(min(plan.poll_seconds, max(deadline - now, 0.0)))


def check_phantom(settled: Settled) -> Check:
    stuck = [f"{x.sku} reserved={x['reserved']}" for x in settled.levels if x["reserved"] != 0]
    if stuck:
        bound = f"still held after {settled.bound_seconds:.1f}s (TTL + sweep + grace)"
        return Check("no phantom locks", "FAIL", f"{bound}: {'; '.join(stuck)}")
    return Check(
        "no phantom locks",
        "PASS",
        f"{settled.held_at_stop} units held when the users stopped; reserved back to 0 "
        f"after {settled.waited_seconds:.1f}s (bound {settled.bound_seconds:.1f}s)",
    )


def ledger_mismatches(api: Iterable[Level], ledger: Iterable[Level]) -> list[str]:
    recorded = by_sku(ledger)
    problems = []
    for level in api:
        kept = recorded.get(level.sku) or Level.empty(level.sku, level.location)
        differing = [
            f"{bucket} {level[bucket]}/{kept[bucket]}"
            for bucket in RECORDED_BUCKETS
            if level[bucket] != kept[bucket]
        ]
        if differing:
            problems.append(f"{level.sku} (API/ledger): {', '.join(differing)}")
    return problems


def check_ledger(
    source: LedgerSource, api_levels: Sequence[Level], plan: Plan, clock: Clock, sleep: Sleep
) -> Check:
    """Polls the record until it equals the API (a flusher may still be catching up),
    at most ``plan.ledger_wait_seconds``; the record's own drift report counts too."""
    deadline = clock() + plan.ledger_wait_seconds
    while True:
        try:
            reading = source.read(plan.skus, plan.location)
        except DrillError as error:
            return Check("ledger equals API", "FAIL", f"could not read the ledger: {error}")
        problems = [*reading.drift, *ledger_mismatches(api_levels, reading.levels)]
        if not problems or clock() >= deadline:
            break
        sleep(plan.poll_seconds)
    flushed = "" if reading.flushed_events is None else f", {reading.flushed_events} flushed"
    ok = f"{len(api_levels)} SKUs agree after the flush{flushed}"
    return Check.of("ledger equals API", problems, ok)


def check_traffic(tally: Tally, exceptions: Sequence[str] = ()) -> Check:
    problems = [f"{count} x {what}" for what, count in sorted(tally.unexpected.items())]
    problems += [f"exception in the scenario: {text}" for text in exceptions]
    if tally.accepted == 0:
        problems.insert(0, "no reservation was accepted")
    ok = f"{tally.accepted} accepted, {tally.refused} refused, nothing unexpected"
    return Check.of("traffic as expected", problems, ok)


# -- the verdict ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    plan: Plan
    checks: tuple[Check, ...]
    tally: Tally
    latencies: tuple[Latency, ...] = ()
    baseline: tuple[Level, ...] = ()
    final: tuple[Level, ...] = ()
    oversold: Mapping[str, int] = field(default_factory=dict)
    phantom_units: int | None = None  # None: never measured (the API could not be read)
    notes: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()  # more summary lines (the drop mode's)

    @property
    def passed(self) -> bool:
        return all(check.status != "FAIL" for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def oversold_units(self) -> int:
        return sum(self.oversold.values())


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything the scenario gathered while it ran."""

    baseline: Sequence[Level] | None  # None: the API could not be read at the start
    tally: Tally
    latencies: Sequence[Latency] = ()
    exceptions: Sequence[str] = ()
    notes: Sequence[str] = ()
    baseline_error: str = ""


def judge(
    api: EngineApi,
    plan: Plan,
    observed: Observed,
    ledger: LedgerSource | None = None,
    ledger_skip_reason: str = "not checked",
    *,
    drop: DropPart | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Verdict:
    """Runs every check; a read that fails is a FAIL, never an exception. With ``drop``,
    its checks too: the line is checked and closed before the holds settle."""
    tally = observed.tally
    checks = [check_traffic(tally, observed.exceptions)]
    verdict = functools.partial(
        Verdict,
        plan,
        tally=tally,
        latencies=tuple(observed.latencies),
        baseline=tuple(observed.baseline or ()),
        notes=tuple(observed.notes),
    )
    if observed.baseline is None:
        detail = f"could not read the API at the start: {observed.baseline_error}"
        return verdict(checks=(*checks, Check("stock at the start", "FAIL", detail)))
    baseline = by_sku(observed.baseline)
    checks.append(check_stock_at_start(plan, baseline))
    if drop is not None:
        checks += drop.before_settle(clock, sleep)
    try:
        settled = settle(api, plan, clock, sleep)
    except DrillError as error:
        failed = Check("no phantom locks", "FAIL", f"could not read the API: {error}")
        return verdict(checks=(*checks, failed))
    final = by_sku(settled.levels)
    oversold = oversold_units(plan, baseline, final, tally)
    checks += [
        check_oversell(oversold),
        check_lost_commits(plan, baseline, final, tally),
        check_buckets(settled.levels),
        check_phantom(settled),
    ]
    if ledger is None:
        checks.append(Check("ledger equals API", "SKIP", ledger_skip_reason))
    else:
        checks.append(check_ledger(ledger, settled.levels, plan, clock, sleep))
    if drop is not None:
        checks += drop.after_settle(baseline, final, clock, sleep)
    return verdict(
        checks=tuple(checks),
        final=tuple(settled.levels),
        oversold=oversold,
        phantom_units=settled.phantom_units,
        summary=tuple(drop.summary()) if drop is not None else (),
    )


# -- the verdict block ------------------------------------------------------------------

RULE_WIDTH = 78


def render(verdict: Verdict) -> str:
    """The block the drill prints; its first line is ``earmark drill verdict: PASS|FAIL``."""
    result = "PASS" if verdict.passed else "FAIL"
    head = f" earmark drill verdict: {result} "
    lines = [head.center(RULE_WIDTH, "=")]
    lines += _summary(verdict)
    lines += verdict.summary
    lines += [f"  [{check.status}] {check.name}: {check.detail}" for check in verdict.checks]
    lines += _levels_table(verdict)
    lines += _latency_table(verdict.latencies)
    lines += [f"  note: {note}" for note in verdict.notes]
    lines.append(f" {result} ".center(RULE_WIDTH, "="))
    return "\n".join(lines)


def _summary(verdict: Verdict) -> list[str]:
    tally, plan = verdict.tally, verdict.plan
    phantom = "unknown" if verdict.phantom_units is None else str(verdict.phantom_units)
    return [
        f"  SKUs: {len(plan.skus)} at {plan.location!r}; hold TTL {plan.ttl_seconds:g}s, "
        f"sweep every {plan.sweep_interval_seconds:g}s",
        f"  reservations: {tally.accepted} accepted, {tally.refused} refused "
        f"(insufficient_stock), {sum(tally.unexpected.values())} unexpected responses",
        f"  holds: {tally.committed} committed, {tally.released} released, "
        f"{tally.abandoned} abandoned to expire, {tally.gone} found gone (410)",
        f"  oversold units: {verdict.oversold_units}    phantom-locked units: {phantom}    "
        f"units committed (confirmed to users): {sum(tally.committed_units.values())}",
    ]


def _levels_table(verdict: Verdict) -> list[str]:
    if not verdict.final:
        return []
    start = by_sku(verdict.baseline)
    shown = ("on_hand", "reserved", "committed", "available")
    rows: list[tuple[str, ...]] = [("SKU", "STOCK", *(bucket.upper() for bucket in shown))]
    for level in verdict.final:
        stock = sellable(start, level.sku, level.location)
        rows.append((level.sku, str(stock), *(str(level[bucket]) for bucket in shown)))
    return ["  stock at the end (API):", *_table(rows)]


def _latency_table(latencies: Sequence[Latency]) -> list[str]:
    if not latencies:
        return []
    rows: list[tuple[str, ...]] = [
        ("ENDPOINT", "REQUESTS", "FAILURES", "P50_MS", "P95_MS", "P99_MS")
    ]
    for x in latencies:
        percentiles = (f"{ms:.0f}" for ms in (x.p50_ms, x.p95_ms, x.p99_ms))
        rows.append((x.endpoint, str(x.requests), str(x.failures), *percentiles))
    return ["  latency (Locust, client side):", *_table(rows)]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """First column left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "    " + "  ".join(cells).rstrip()

    return [line(row) for row in rows]


PROGRESS_INTERVAL_SECONDS = 5.0


def progress_line(elapsed_seconds: float, tally: Tally, p99_ms: float | None) -> str:
    """The line the drill prints every ``PROGRESS_INTERVAL_SECONDS`` while it runs."""
    p99 = "-" if p99_ms is None else f"{p99_ms:.0f} ms"
    sold = sum(tally.committed_units.values())
    return (
        f"drill {elapsed_seconds:5.0f}s: sold {sold} units ({tally.committed} carts), "
        f"refused {tally.refused}, held {tally.holding}, p99 so far {p99}"
    )
