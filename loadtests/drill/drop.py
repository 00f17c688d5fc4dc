"""The drill's drop mode: its rules, what its shoppers saw, and its checks.

``run_local --drop`` opens a drop (a per-customer limit, a waitlist) over the drill's
SKUs. Shoppers reserve as customers, join the waitlist when refused
``insufficient_stock``, poll their entry and commit, decline or abandon the offer; some
are repeat shoppers who try to buy past the limit; one bot hammers a single identity.
When the users stop, ``DropJudge`` (called by ``verdict.judge``) waits for the sweeper,
checks that no unit is idle while someone waits, reads every customer's live holds and
closes the line (the customers still in it leave); after the holds settle it reads the
ledger and checks, from what the engine recorded rather than the drop's own figures:

* no customer above the limit: live holds + units bought per customer <= the limit;
* waitlist order kept: no offer went to a customer while one ahead of it still waited;
* every freed unit offered: after a sweep, no SKU has the units its head of line waits
  for while someone waits;
* offers converted or passed on: every offer ended converted, expired or declined.

Plain Python like ``verdict.py``: the engine is read through a ``DropApi`` (HTTP in the
drill, a double in the tests).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from loadtests.drill.scenario import ScenarioError
from loadtests.drill.verdict import Check, Clock, DrillError, Level, Plan, Sleep

DROP_ID_DEFAULT = "launch-drill"
LIMIT_DEFAULT = 2
LIMIT_MAX = 100  # limits.DROP_CUSTOMER_LIMIT_MAX
OFFER_TTL_SECONDS_DEFAULT = 3.0
REPEAT_SHARE_DEFAULT = 0.3
LINE_WAIT_SECONDS_DEFAULT = 10.0  # a shopper in line gives up (declines) after this
POLL_SECONDS_DEFAULT = 0.5  # how often a shopper in line reads its entry
BOT_PAUSE_SECONDS = 0.02  # between the bot's attempts: well above the rate limit
BOT_CUSTOMER = "drill-bot"
SWEEPS_AWAITED = 2  # the first pass seen may have started before the users stopped
IDLE_READS_MAX = 3  # reads of the line, one sweep apart, before idle units are a FAIL
ENTRIES_READ_MAX = 20_000  # waitlist entries / customers read at the end, at most
WAITLIST_EVENTS = (
    "waitlist_joined",
    "waitlist_offered",
    "waitlist_skipped",
    "waitlist_declined",
    "waitlist_converted",
    "waitlist_expired",
    "committed",
)
OFFER_ENDS = {"waitlist_converted": "converted", "waitlist_expired": "expired",
              "waitlist_declined": "declined"}  # fmt: skip
OPEN_STATUSES = ("waiting", "offered")

OfferChoice = Literal["commit", "decline", "abandon"]


@dataclass(frozen=True, slots=True)
class DropRules:
    """The drop the drill opens and how its shoppers behave in it."""

    drop_id: str = DROP_ID_DEFAULT
    limit: int = LIMIT_DEFAULT
    offer_ttl_seconds: float = OFFER_TTL_SECONDS_DEFAULT
    repeat_share: float = REPEAT_SHARE_DEFAULT
    line_wait_seconds: float = LINE_WAIT_SECONDS_DEFAULT
    poll_seconds: float = POLL_SECONDS_DEFAULT
    bot: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= LIMIT_MAX:
            raise ScenarioError(f"the drop's limit must be between 1 and {LIMIT_MAX}")
        if not 1.0 <= self.offer_ttl_seconds <= 3600:
            raise ScenarioError("the offer TTL must be between 1 and 3600 seconds")
        if not 0 <= self.repeat_share <= 1:
            raise ScenarioError("the repeat shoppers' share must be between 0 and 1")
        if not 0 < self.poll_seconds <= self.line_wait_seconds <= 3600:
            raise ScenarioError("need 0 < poll <= line wait <= 3600 seconds")

    def is_repeat_shopper(self, rng: random.Random) -> bool:
        """A repeat shopper keeps its identity and shops again (past the limit)."""
        return rng.random() < self.repeat_share


def offer_choice(rng: random.Random, commit: float, decline: float) -> OfferChoice:
    """What a shopper does with an offer: the cart's commit and release odds."""
    roll = rng.random()
    if roll < commit:
        return "commit"
    return "decline" if roll < commit + decline else "abandon"


@dataclass(slots=True)
class DropTally:
    """What the drop's shoppers saw, counted on the client side."""

    customers: int = 0  # identities that shopped
    limit_refused: int = 0  # 409 customer_limit_exceeded: a repeat shopper (or the bot)
    rate_limited: int = 0  # 429 rate_limited: the bot, mostly
    bot_calls: int = 0
    joined: int = 0  # waitlist joins answered 201
    offers_seen: int = 0
    offers_committed: int = 0
    offers_declined: int = 0
    offers_abandoned: int = 0  # left to expire: the units pass to the next in line
    gave_up: int = 0  # left the line (declined) after waiting too long
    told: Counter[str] = field(default_factory=Counter)  # customer -> units committed
    owners: dict[str, str] = field(default_factory=dict)  # reservation id -> customer
    touched: set[tuple[str, str]] = field(default_factory=set)  # (customer, sku) reserved
    entries: set[tuple[str, str]] = field(default_factory=set)  # (customer, sku) joined

    def record_commit(self, customer: str, units: int) -> None:
        self.told[customer] += units


# -- what the engine answers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """A customer's waitlist entry for a SKU, as ``GET .../waitlist/{customer}`` answers."""

    customer: str
    sku: str
    qty: int
    status: str
    position: int
    offer_expires_ms: int | None = None

    def lapsed(self, now_ms: int) -> bool:
        """An offer past its expiry, not yet passed on by the sweeper."""
        expires = self.offer_expires_ms
        return self.status == "offered" and expires is not None and expires <= now_ms


@dataclass(frozen=True, slots=True)
class DropState:
    """``GET /v1/drops/{id}``: what the checks use of it."""

    opens_at_ms: int
    created_at_ms: int
    waiting: int
    offered: int
    customers_at_limit: int | None
    opening_seed: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A ledger event of the drop's line (or a commit), as ``GET /v1/ledger`` answers."""

    id: str
    type: str
    sku: str
    qty: int
    occurred_ms: int
    reservation: str | None = None
    customer: str | None = None
    arrival: int | None = None

    @property
    def order(self) -> tuple[int, int, int]:
        """``<partition>/<ms>-<seq>``: the ledger's order of events."""
        partition, _, stream = self.id.partition("/")
        ms, _, seq = stream.partition("-")
        return int(partition or 0), int(ms or 0), int(seq or 0)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], occurred_ms: int) -> Event:
        attributes = data.get("attributes") or {}
        arrival = attributes.get("arrival")
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            sku=str(data["sku"]),
            qty=int(data.get("qty") or 0),
            occurred_ms=occurred_ms,
            reservation=data.get("reservation_id"),
            customer=attributes.get("customer"),
            arrival=None if arrival is None else int(arrival),
        )


class DropApi(Protocol):
    """What the drop checks read and do; every method raises DrillError on failure."""

    def levels(self, skus: Sequence[str], location: str) -> list[Level]: ...

    def drop_state(self, drop_id: str) -> DropState: ...

    def waitlist_entry(self, drop_id: str, customer: str, sku: str) -> Entry | None:
        """None: the customer never joined the line of that SKU."""
        ...

    def decline(self, drop_id: str, customer: str, sku: str) -> Entry: ...

    def held_units(self, customer: str, sku: str, location: str) -> int:
        """Units of the customer's live holds on a SKU (``GET /v1/reservations``)."""
        ...

    def drop_events(self, sku: str, since_ms: int) -> list[Event]:
        """The ledger's ``WAITLIST_EVENTS`` of a SKU since a time, in ledger order."""
        ...

    def sweeps(self) -> int | None:
        """Sweeper passes the server has run (``/metrics``); None when it says not."""
        ...


# -- the checks (pure) ----------------------------------------------------------------------


def check_customer_limit(
    limit: int,
    held: Mapping[str, int],
    bought: Mapping[str, int],
    told: Mapping[str, int],
    unowned_units: int = 0,
) -> Check:
    """Per customer, live holds (API) + units bought (ledger) <= the limit, and the units
    users were told they bought <= the limit too."""
    problems = []
    for customer in sorted(set(held) | set(bought)):
        has, got = held.get(customer, 0), bought.get(customer, 0)
        if has + got > limit:
            problems.append(f"{customer} holds {has} + bought {got} > limit {limit}")
    for customer, units in sorted(told.items()):
        if units > limit:
            problems.append(f"{customer} was told {units} units bought > limit {limit}")
    if unowned_units:
        problems.append(f"{unowned_units} units committed on reservations of no known customer")
    most = max((held.get(c, 0) + bought.get(c, 0) for c in set(held) | set(bought)), default=0)
    customers = len(set(held) | set(bought))
    ok = f"{customers} customers, the most any holds + bought is {most} (limit {limit})"
    return Check.of("no customer above the limit", problems, ok)


def opening_rank(seed: str, sku: str, customer: str) -> float:
    """docs/drops.md, "Fair opening" (``earmark.engine.ops.drops.opening_rank``)."""
    digest = hashlib.sha256(f"{seed}|{sku}|{customer}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def queue_key(event: Event, opens_at_ms: int, seed: str | None) -> tuple[int, float, str]:
    """Where a join stands in its SKU's line: early joins by their opening rank, then
    later arrivals by arrival number."""
    customer = event.customer or ""
    if event.occurred_ms < opens_at_ms and seed:
        return 0, opening_rank(seed, event.sku, customer), customer
    return 1, float(event.arrival or 0), customer


def order_problems(events: Iterable[Event], opens_at_ms: int, seed: str | None) -> list[str]:
    """Replays the line of each SKU: an offer to a customer while one ahead of it still
    waited (neither offered, skipped nor gone) breaks the order."""
    waiting: dict[str, dict[str, tuple[int, float, str]]] = defaultdict(dict)
    problems = []
    for event in sorted(events, key=lambda e: e.order):
        line, customer = waiting[event.sku], event.customer or ""
        if event.type == "waitlist_joined":
            line.setdefault(customer, queue_key(event, opens_at_ms, seed))
        elif event.type == "waitlist_offered":
            key = line.pop(customer, None)
            if key is None:
                problems.append(f"{event.sku}: offer to {customer}, who was not in line")
                continue
            ahead = sorted((k, c) for c, k in line.items() if k < key)
            if ahead:
                names = ", ".join(c for _, c in ahead[:3])
                problems.append(f"{event.sku}: offer to {customer} while {names} waited ahead")
        elif event.type in ("waitlist_skipped", "waitlist_declined"):
            line.pop(customer, None)
    return problems


def check_waitlist_order(events: Sequence[Event], opens_at_ms: int, seed: str | None) -> Check:
    offers = sum(1 for e in events if e.type == "waitlist_offered")
    joins = sum(1 for e in events if e.type == "waitlist_joined")
    ok = f"{offers} offers to {joins} joins, each to the first customer in line"
    return Check.of("waitlist order kept", order_problems(events, opens_at_ms, seed), ok)


def idle_problems(
    levels: Sequence[Level], entries: Iterable[Entry], drop_waiting: int, now_ms: int
) -> list[str]:
    """A SKU whose free units cover what the head of its line waits for, while it waits.
    The units of an offer past its expiry (``now_ms``) count as passing on: the API no
    longer counts them reserved, and the next sweep offers them to the next in line."""
    heads: dict[str, Entry] = {}
    waiters: Counter[str] = Counter()
    passing: Counter[str] = Counter()
    for entry in entries:
        if entry.status == "waiting":
            waiters[entry.sku] += 1
            if entry.position == 1:
                heads[entry.sku] = entry
        elif entry.lapsed(now_ms):
            passing[entry.sku] += entry.qty
    problems = []
    for level in levels:
        free, head = level["available"] - passing[level.sku], heads.get(level.sku)
        if head is not None and free >= head.qty:
            problems.append(
                f"{level.sku}: {free} units available while {waiters[level.sku]} wait "
                f"(first in line: {head.customer}, {head.qty} units)"
            )
        elif waiters[level.sku] and head is None and free > 0:
            problems.append(f"{level.sku}: {free} available, {waiters[level.sku]} wait, no head")
    unknown = drop_waiting - sum(waiters.values())
    if unknown > 0 and not problems and any(level["available"] > 0 for level in levels):
        problems.append(f"the drop counts {unknown} waiting the drill did not see, units free")
    return problems


def check_idle_units(
    levels: Sequence[Level], entries: Sequence[Entry], drop_waiting: int, now_ms: int
) -> Check:
    waiting = sum(1 for entry in entries if entry.status == "waiting")
    free = sum(max(level["available"], 0) for level in levels)
    ok = f"after the sweep: {free} units free, {waiting} customers waiting, none idle"
    problems = idle_problems(levels, entries, drop_waiting, now_ms)
    return Check.of("every freed unit offered", problems, ok)


def offer_outcomes(events: Iterable[Event]) -> dict[str, str | None]:
    """Each offer's reservation -> how it ended (converted, expired, declined) or None."""
    outcomes: dict[str, str | None] = {}
    for event in sorted(events, key=lambda e: e.order):
        if event.type == "waitlist_offered" and event.reservation:
            outcomes.setdefault(event.reservation, None)
        elif event.type in OFFER_ENDS and event.reservation in outcomes:
            outcomes[event.reservation] = OFFER_ENDS[event.type]
    return outcomes


def check_offers_ended(events: Sequence[Event], problems: Sequence[str] = ()) -> Check:
    """Every offer ended converted, expired (passed to the next) or declined; ``problems``:
    what went wrong closing the line."""
    outcomes = offer_outcomes(events)
    stuck = sorted(rid for rid, outcome in outcomes.items() if outcome is None)
    found = [f"offer {rid} never ended" for rid in stuck] + list(problems)
    ends = Counter(outcome for outcome in outcomes.values() if outcome is not None)
    ok = (
        f"{len(outcomes)} offers: {ends['converted']} converted, {ends['expired']} expired "
        f"and passed on, {ends['declined']} declined"
    )
    return Check.of("offers converted or passed on", found, ok)


def bought_by_customer(
    events: Iterable[Event], owners: Mapping[str, str]
) -> tuple[dict[str, int], int]:
    """Units committed per customer (the ledger's commits; each reservation's customer
    from the shopper that held it, or the offer that made it), and units of no one known."""
    owner = dict(owners)
    for event in events:
        if event.type == "waitlist_offered" and event.reservation and event.customer:
            owner.setdefault(event.reservation, event.customer)
    bought: Counter[str] = Counter()
    unowned = 0
    for event in events:
        if event.type == "committed" and event.reservation:
            customer = owner.get(event.reservation)
            if customer is None:
                unowned += event.qty
            else:
                bought[customer] += event.qty
    return dict(bought), unowned


# -- the end of the drill ---------------------------------------------------------------------


@dataclass(slots=True)
class DropJudge:
    """The drop's part of ``verdict.judge``: ``before_settle`` once the users stopped,
    ``after_settle`` once the holds drained."""

    api: DropApi
    plan: Plan
    rules: DropRules
    tally: DropTally
    held: dict[str, int] = field(default_factory=dict)
    close_problems: list[str] = field(default_factory=list)
    closed: int = 0
    state: DropState | None = None
    wall: Callable[[], float] = time.time  # the server's clock, on the same host

    def before_settle(self, clock: Clock, sleep: Sleep) -> list[Check]:
        """Once the holds of the users' carts can have expired (the plan's TTL), and two
        sweeps later: the line and the stock as the engine left them, then closing."""
        sleep(self.plan.ttl_seconds)
        try:
            self.await_sweeps(clock, sleep)
            check, entries = self.idle_check(clock, sleep)
            self.held = self.read_held()
        except DrillError as error:
            return [Check("every freed unit offered", "FAIL", f"could not read: {error}")]
        self.close_line(entries)
        return [check]

    def await_sweeps(self, clock: Clock, sleep: Sleep, count: int = SWEEPS_AWAITED) -> None:
        """Waits for ``count`` sweeper passes to finish (at most ``count`` intervals + the
        grace), or that long when the server does not count its passes."""
        bound = count * self.plan.sweep_interval_seconds + self.plan.settle_grace_seconds
        deadline = clock() + bound
        first = self.api.sweeps()
        if first is None:
            sleep(count * self.plan.sweep_interval_seconds)
            return
        while clock() < deadline:
            done = self.api.sweeps()
            if done is not None and done >= first + count:
                return
            sleep(min(self.plan.poll_seconds, max(deadline - clock(), 0.0)))

    def idle_check(self, clock: Clock, sleep: Sleep) -> tuple[Check, list[Entry]]:
        """Reads the line and the stock after the sweep; idle units are read again one
        sweep later (a pass offers a bounded number), at most ``IDLE_READS_MAX`` times."""
        reads = 0
        while True:
            reads += 1
            entries = self.read_entries()
            self.state = self.api.drop_state(self.rules.drop_id)
            levels = self.api.levels(self.plan.skus, self.plan.location)
            now_ms = int(self.wall() * 1000)
            check = check_idle_units(levels, entries, self.state.waiting, now_ms)
            if check.status == "PASS" or reads >= IDLE_READS_MAX:
                return check, entries
            self.await_sweeps(clock, sleep, 1)

    def read_entries(self) -> list[Entry]:
        found = []
        for customer, sku in sorted(self.tally.entries)[:ENTRIES_READ_MAX]:
            entry = self.api.waitlist_entry(self.rules.drop_id, customer, sku)
            if entry is not None:
                found.append(entry)
        return found

    def read_held(self) -> dict[str, int]:
        held: Counter[str] = Counter()
        for customer, sku in sorted(self.tally.touched)[:ENTRIES_READ_MAX]:
            held[customer] += self.api.held_units(customer, sku, self.plan.location)
        return {customer: units for customer, units in held.items() if units}

    def close_line(self, entries: Sequence[Entry]) -> None:
        """The drop is over: the customers still waiting leave, then those holding an
        offer decline it (waiting ones first, so no declined offer goes to them)."""
        for status in OPEN_STATUSES:
            for entry in entries:
                if entry.status != status:
                    continue
                try:
                    self.api.decline(self.rules.drop_id, entry.customer, entry.sku)
                except DrillError as error:
                    self.close_problems.append(f"declining {entry.customer}: {error}")
                    continue
                self.closed += 1

    def after_settle(
        self, baseline: Mapping[str, Level], final: Mapping[str, Level], clock: Clock, sleep: Sleep
    ) -> list[Check]:
        """Reads the ledger until it holds every commit the API counts and an end for
        every offer (or ``ledger_wait_seconds`` passed), then checks order, offers and
        the limit."""
        if self.state is None:
            return []
        names = ("waitlist order kept", "offers converted or passed on",
                 "no customer above the limit")  # fmt: skip
        deadline = clock() + self.plan.ledger_wait_seconds
        while True:
            try:
                events = [
                    e
                    for sku in self.plan.skus
                    for e in self.api.drop_events(sku, self.state.created_at_ms)
                ]
            except DrillError as error:
                failed = f"could not read the ledger: {error}"
                return [Check(name, "FAIL", failed) for name in names]
            if self.caught_up(events, baseline, final) or clock() >= deadline:
                break
            sleep(self.plan.poll_seconds)
        bought, unowned = bought_by_customer(events, self.tally.owners)
        return [
            check_waitlist_order(events, self.state.opens_at_ms, self.state.opening_seed),
            check_offers_ended(events, self.close_problems),
            check_customer_limit(self.rules.limit, self.held, bought, self.tally.told, unowned),
        ]

    def caught_up(
        self, events: Sequence[Event], baseline: Mapping[str, Level], final: Mapping[str, Level]
    ) -> bool:
        sold: Counter[str] = Counter()
        for event in events:
            if event.type == "committed":
                sold[event.sku] += event.qty
        for sku in self.plan.skus:
            start, end = baseline.get(sku), final.get(sku)
            counted = (end["committed"] if end else 0) - (start["committed"] if start else 0)
            if sold[sku] < counted:
                return False
        return all(outcome is not None for outcome in offer_outcomes(events).values())

    def summary(self) -> list[str]:
        t, r = self.tally, self.rules
        at_limit = "" if self.state is None else f", {self.state.customers_at_limit} at it"
        return [
            f"  drop {r.drop_id!r}: limit {r.limit} per customer{at_limit}; offer TTL "
            f"{r.offer_ttl_seconds:g}s; {t.customers} customers, {t.limit_refused} refused "
            f"customer_limit_exceeded, {t.rate_limited} rate_limited ({t.bot_calls} bot calls)",
            f"  waitlist: {t.joined} joined, {t.offers_seen} offers seen: {t.offers_committed} "
            f"committed, {t.offers_declined} declined, {t.offers_abandoned} abandoned; "
            f"{t.gave_up} gave up waiting; {self.closed} entries closed at the end",
        ]
