# mypy: disable-error-code="untyped-decorator"
# (Locust's event hooks are untyped.)
"""The flash drop: shoppers hold carts, then commit, release or abandon them.

    locust -f loadtests/drill/locustfile.py --headless -u 500 -r 500 --run-time 60s \\
        --host http://127.0.0.1:8000 --skus 3 --stock 100 --ttl 10

Spawn every user at once (``-r`` = ``-u``): the drop opens for everyone in the same second.
With ``--drop`` the SKUs are sold in a drop (``drop.py``, docs/drill.md "Drop mode"): a
per-customer limit (``--limit``) and a waitlist; shoppers reserve as customers, join the
line when refused, and commit, decline or abandon their offers; repeat shoppers
(``--repeat-share``) try to buy past the limit; the first user is a bot hammering one
identity.
Each shopper reserves a cart (1..``--max-lines`` SKUs, 1..``--max-qty`` units each) with
its own Idempotency-Key, thinks, then commits (``--commit``), releases (``--release``)
or abandons the hold to expire. A refusal (409 insufficient_stock) is expected and
counted; so is a 410 when a hold expired during the thinking. Shoppers call the sidecar
with ``earmark.client.Client``, and report every call to Locust's statistics.

When the test stops, the engine is checked through the API (``verdict.py``): nothing
oversold, no negative bucket, no hold outliving TTL + sweep interval, and with
``--database-url`` the durable record equal to the API. The verdict block is printed
last, and the process exits 1 on FAIL. Run it in one Locust process (no --processes,
--master or --worker): the client-side tally lives in this process.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import User, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import LocalRunner, WorkerRunner

from earmark import InsufficientStock, Reservation
from earmark.client import NO_RETRY, Client
from earmark.errors import (
    CustomerLimitExceeded,
    EarmarkError,
    RateLimited,
    ReservationExpired,
    ReservationReleased,
)
from earmark.models import WaitlistEntry

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # locust puts only this file's directory on sys.path
    sys.path.insert(0, str(ROOT))

from loadtests.drill import drop, verdict  # noqa: E402
from loadtests.drill.client import ApiError, HttpApi, idempotency_key, seed  # noqa: E402
from loadtests.drill.ledger import SubprocessLedger  # noqa: E402
from loadtests.drill.scenario import Scenario, ScenarioError  # noqa: E402
from loadtests.drill.stats_csv import write_final_stats  # noqa: E402
from loadtests.drill.timed import Timed, UnexpectedAnswer, outcome_of  # noqa: E402

log = logging.getLogger("earmark.drill")

RESERVE = "/v1/reservations"
COMMIT = "/v1/reservations/{id}/commit"
RELEASE = "/v1/reservations/{id}/release"
JOIN = "/v1/drops/{id}/waitlist"
ENTRY = "/v1/drops/{id}/waitlist/{customer}"
DECLINE = "/v1/drops/{id}/waitlist/{customer}/decline"
API_KEY_ENV = "EARMARK_DRILL_API_KEY"


@events.init_command_line_parser.add_listener
def add_arguments(parser: LocustArgumentParser) -> None:
    d = Scenario()
    parser.add_argument("--skus", type=int, default=d.skus, help="SKUs in the drop")
    parser.add_argument("--stock", type=int, default=d.stock, help="units per SKU (--seed)")
    parser.add_argument("--sku-prefix", default=d.sku_prefix, help="SKUs are PREFIX-1..n")
    parser.add_argument("--location", default=d.location, help="stock location")
    parser.add_argument("--max-qty", type=int, default=d.qty_max, help="units per cart line")
    parser.add_argument("--max-lines", type=int, default=d.lines_max, help="SKUs per cart")
    parser.add_argument("--commit", type=float, default=d.commit_probability, help="P(commit)")
    parser.add_argument(
        "--release", type=float, default=d.release_probability, help="P(release); else abandon"
    )
    parser.add_argument("--ttl", type=float, default=d.ttl_seconds, help="hold TTL, seconds")
    parser.add_argument("--think-min", type=float, default=d.think_seconds_min, help="seconds")
    parser.add_argument("--think-max", type=float, default=d.think_seconds_max, help="seconds")
    parser.add_argument(
        "--api-key",
        default=None,
        env_var=API_KEY_ENV,
        is_secret=True,
        help=f"bearer token with read,reserve scopes (+stock for --seed); or ${API_KEY_ENV}",
    )
    parser.add_argument(
        "--seed", action="store_true", help="receive --stock units of every SKU at test start"
    )
    add_check_arguments(parser)
    add_drop_arguments(parser)


def add_drop_arguments(parser: LocustArgumentParser) -> None:
    d = drop.DropRules()
    parser.add_argument(
        "--drop", action="store_true", help="sell the SKUs in a drop with a limit and a waitlist"
    )
    parser.add_argument("--drop-id", default=d.drop_id, help="the drop's id (a new one)")
    parser.add_argument("--limit", type=int, default=d.limit, help="units per customer")
    parser.add_argument("--offer-ttl", type=float, default=d.offer_ttl_seconds, help="seconds")
    parser.add_argument(
        "--repeat-share",
        type=float,
        default=d.repeat_share,
        help="share of shoppers who shop again as the same customer",
    )
    parser.add_argument(
        "--line-wait", type=float, default=d.line_wait_seconds, help="seconds in line, at most"
    )


def add_check_arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--sweep-interval", type=float, default=1.0, help="the server's sweep interval, s"
    )
    parser.add_argument(
        "--settle-grace",
        type=float,
        default=verdict.SETTLE_GRACE_SECONDS_DEFAULT,
        help="seconds allowed beyond TTL + sweep interval for reserved to reach 0",
    )
    parser.add_argument(
        "--ledger-wait",
        type=float,
        default=verdict.LEDGER_WAIT_SECONDS_DEFAULT,
        help="seconds the ledger may take to catch up with the API",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        include_in_web_ui=False,
        help="the server's EARMARK_DATABASE_URL: compare the durable record with the API",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        include_in_web_ui=False,
        help="the server's EARMARK_REDIS_URL: flush and verify the record from here",
    )
    parser.add_argument(
        "--redis-prefix", default="em", include_in_web_ui=False, help="its EARMARK_PREFIX"
    )


def scenario_of(options: Any) -> Scenario:
    return Scenario(
        skus=options.skus,
        stock=options.stock,
        sku_prefix=options.sku_prefix,
        location=options.location,
        qty_max=options.max_qty,
        lines_max=options.max_lines,
        commit_probability=options.commit,
        release_probability=options.release,
        ttl_seconds=options.ttl,
        think_seconds_min=options.think_min,
        think_seconds_max=options.think_max,
    )


def rules_of(options: Any) -> drop.DropRules | None:
    if not options.drop:
        return None
    return drop.DropRules(
        drop_id=options.drop_id,
        limit=options.limit,
        offer_ttl_seconds=options.offer_ttl,
        repeat_share=options.repeat_share,
        line_wait_seconds=options.line_wait,
    )


def plan_of(options: Any, scenario: Scenario, rules: drop.DropRules | None) -> verdict.Plan:
    """In a drop, offers are holds too: the longer of the two TTLs bounds the settling."""
    ttl = scenario.ttl_seconds
    if rules is not None:
        ttl = max(ttl, rules.offer_ttl_seconds)
    return verdict.Plan(
        skus=scenario.sku_names,
        location=scenario.location,
        ttl_seconds=ttl,
        sweep_interval_seconds=options.sweep_interval,
        settle_grace_seconds=options.settle_grace,
        ledger_wait_seconds=options.ledger_wait,
    )


# -- the run's state (one Locust process) -------------------------------------------------


@dataclass(slots=True)
class Drill:
    scenario: Scenario
    plan: verdict.Plan
    api: HttpApi
    tally: verdict.Tally = field(default_factory=verdict.Tally)
    baseline: list[verdict.Level] | None = None
    baseline_error: str = ""
    started: bool = False  # a test ran (the web UI may quit before any)
    result: verdict.Verdict | None = None
    notes: list[str] = field(default_factory=list)
    progress: Any = None  # the greenlet printing progress lines while users run
    started_at: float = 0.0  # time.monotonic() at test_start
    rules: drop.DropRules | None = None  # --drop
    drop_tally: drop.DropTally = field(default_factory=drop.DropTally)
    users: Any = field(default_factory=itertools.count)  # numbers the shoppers


DRILL: Drill | None = None


def drill() -> Drill:
    if DRILL is None:
        raise RuntimeError("the drill was not initialised (init event)")
    return DRILL


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    global DRILL
    options = environment.parsed_options
    if options is None or environment.host is None:
        return  # e.g. --list; nothing runs
    try:
        scenario = scenario_of(options)
        rules = rules_of(options)
        plan = plan_of(options, scenario, rules)
        api = HttpApi(environment.host, options.api_key)
    except (ScenarioError, ValueError) as error:
        log.error("earmark drill: %s", error)
        sys.exit(2)
    if rules is not None:  # shoppers in line poll: one INFO line per request drowns the rest
        logging.getLogger("httpx").setLevel(logging.WARNING)
    DRILL = Drill(scenario, plan, api, rules=rules)


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    state = drill()
    state.tally, state.result, state.notes, state.started = verdict.Tally(), None, [], True
    state.drop_tally, state.users = drop.DropTally(), itertools.count()
    if not isinstance(environment.runner, LocalRunner):
        state.notes.append("run in one Locust process: workers' tallies are not collected")
    try:
        if environment.parsed_options is not None and environment.parsed_options.seed:
            skus, sc = state.scenario.sku_names, state.scenario
            seed(state.api, skus, sc.stock, sc.location)
        if state.rules is not None:
            sc = state.scenario
            state.api.create_drop(state.rules, sc.sku_names, hold_ttl_seconds=sc.ttl_seconds)
        state.baseline = state.api.levels(state.plan.skus, state.plan.location)
    except ApiError as error:
        state.baseline, state.baseline_error = None, str(error)
        log.error("earmark drill: the API could not be read at the start: %s", error)
    state.started_at = time.monotonic()
    if state.progress is None:
        state.progress = gevent.spawn(report_progress, environment, state)


def print_progress(environment: Environment, state: Drill) -> None:
    total = environment.stats.total
    p99 = total.get_response_time_percentile(0.99) if total.num_requests else None
    elapsed = time.monotonic() - state.started_at
    print(verdict.progress_line(elapsed, state.tally, p99), flush=True)


def report_progress(environment: Environment, state: Drill) -> None:
    """A progress line every few seconds until the users stop (then test_stop kills it
    and prints the last one)."""
    while True:
        time.sleep(verdict.PROGRESS_INTERVAL_SECONDS)  # gevent-patched: yields
        print_progress(environment, state)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    """Judges the run once its users stopped; the exit code follows the verdict."""
    state = drill()
    if not state.started or isinstance(environment.runner, WorkerRunner):
        return  # only the master (or the one local runner) judges a run
    if state.progress is not None:
        state.progress.kill(block=False)
        state.progress = None
    print_progress(environment, state)  # the figures as the users stopped
    log.info("earmark drill: users stopped, checking the engine (holds drain first)")
    write_final_stats(environment)  # the CSV counts what the tally counts
    observed = verdict.Observed(
        baseline=state.baseline,
        tally=state.tally,
        latencies=latencies(environment),
        exceptions=exceptions(environment),
        notes=state.notes,
        baseline_error=state.baseline_error,
    )
    ledger, skip = ledger_source(environment.parsed_options, state.api)
    judge_drop = None
    if state.rules is not None:
        judge_drop = drop.DropJudge(state.api, state.plan, state.rules, state.drop_tally)
    state.result = verdict.judge(state.api, state.plan, observed, ledger, skip, drop=judge_drop)
    if not state.result.passed:
        environment.process_exit_code = state.result.exit_code


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    """Interrupted (Ctrl-C, SIGTERM) before the test stopped: stop the users now, so that
    test_stop judges the run before Locust decides its exit code."""
    if DRILL is None or environment.runner is None:
        return
    if DRILL.started and DRILL.result is None:
        environment.runner.stop()


@events.quit.add_listener
def on_quit(exit_code: int, **_: Any) -> None:
    """Last: after Locust's own summary tables, so the verdict is what the operator sees."""
    if DRILL is not None and DRILL.result is not None:
        print(verdict.render(DRILL.result), flush=True)


def latencies(environment: Environment) -> list[verdict.Latency]:
    found = []
    for (name, method), entry in sorted(environment.stats.entries.items()):
        if entry.num_requests == 0:
            continue
        found.append(
            verdict.Latency(
                endpoint=f"{method} {name}",
                requests=entry.num_requests,
                failures=entry.num_failures,
                p50_ms=entry.get_response_time_percentile(0.50),
                p95_ms=entry.get_response_time_percentile(0.95),
                p99_ms=entry.get_response_time_percentile(0.99),
            )
        )
    return found


def exceptions(environment: Environment) -> list[str]:
    if environment.runner is None:
        return []
    return [f"{row['count']} x {row['msg']}" for row in environment.runner.exceptions.values()]


def ledger_source(options: Any, api: HttpApi) -> tuple[verdict.LedgerSource | None, str]:
    """Where the durable record can be read from here, or why it is not checked."""
    if not options.database_url:
        return None, (
            "not checked: no --database-url. On a staging drill, run `earmark verify` "
            "against its Redis and database."
        )
    if options.redis_url:
        return SubprocessLedger(options.database_url, options.redis_url, options.redis_prefix), ""
    try:
        checks = api.readiness()
    except ApiError as error:
        return None, f"not checked: /readyz could not be read: {error}"
    if "flusher_lag" not in checks:
        return None, (
            "not checked: the server runs no write-behind flusher (no flusher_lag check in "
            "/readyz) and its Redis is in-process, so nothing moves events to the record"
        )
    return SubprocessLedger(options.database_url), ""


# -- the shoppers ----------------------------------------------------------------------


class Shopper(User):
    """One shopper after another: a cart, a pause, then commit, release or abandon.

    It calls the sidecar through ``earmark.client.Client`` (what a checkout service in
    Python uses), one client and connection pool per shopper, without retries: a call is
    one request, timed and reported to Locust's statistics by ``Timed``."""

    def wait_time(self) -> float:
        if self.is_bot:
            return drop.BOT_PAUSE_SECONDS
        return self.state.scenario.think_seconds(self.rng)

    def on_start(self) -> None:
        self.state = drill()
        self.rng = random.Random()
        api_key = self.environment.parsed_options.api_key
        self.client = Client(self.host or "", api_key=api_key, retry=NO_RETRY)
        self.timed = Timed(self.environment.events.request.fire)
        self.number = next(self.state.users)
        rules = self.state.rules
        self.is_bot = rules is not None and rules.bot and self.number == 0
        self.visits = 0
        self.customer = ""  # the default drill reserves without one
        if rules is not None:
            self.customer = drop.BOT_CUSTOMER if self.is_bot else self.new_customer()

    def on_stop(self) -> None:
        self.client.close()

    @task
    def shop(self) -> None:
        rules = self.state.rules
        if rules is None:
            self.shop_cart()
        elif self.is_bot:
            self.hammer()
        else:
            self.shop_drop(rules)

    def shop_cart(self) -> None:
        scenario = self.state.scenario
        cart = scenario.cart(self.rng)
        hold = self.reserve(cart)
        if hold is None:
            return
        time.sleep(scenario.think_seconds(self.rng))  # gevent-patched: yields
        outcome = scenario.outcome(self.rng)
        if outcome == "abandon":
            self.state.tally.abandoned += 1
        else:
            self.finish(hold, outcome, cart)

    def reserve(self, cart: list[tuple[str, int]]) -> str | None:
        scenario, tally = self.state.scenario, self.state.tally
        lines = [(sku, qty, scenario.location) for sku, qty in cart]

        def send() -> Reservation:
            return self.client.reserve(
                lines,
                ttl_seconds=scenario.ttl_seconds,
                channel=scenario.channel,
                idempotency_key=idempotency_key("shop"),
            )

        try:
            held = self.timed.call(
                "POST", RESERVE, send, expected=(InsufficientStock,), check=status_is("held")
            )
        except InsufficientStock:
            tally.refused += 1
            return None
        except (EarmarkError, UnexpectedAnswer) as error:
            self.unexpected(RESERVE, error)
            return None
        tally.accepted += 1
        tally.units_held += sum(qty for _, qty in cart)
        return held.id

    def finish(self, hold: str, outcome: str, cart: list[tuple[str, int]]) -> bool:
        """True when the commit or release was answered as asked."""
        tally = self.state.tally
        name = COMMIT if outcome == "commit" else RELEASE
        transition = self.client.commit if outcome == "commit" else self.client.release
        wanted = "committed" if outcome == "commit" else "released"
        key = idempotency_key("shop")
        try:
            self.timed.call(
                "POST",
                name,
                lambda: transition(hold, idempotency_key=key),
                expected=GONE,
                check=status_is(wanted),
            )
        except GONE:  # the hold expired (or was released) while the shopper thought
            tally.gone += 1
            return False
        except (EarmarkError, UnexpectedAnswer) as error:
            self.unexpected(name, error)
            return False
        if outcome == "commit":
            tally.record_commit(cart)
            if self.state.rules is not None:
                self.state.drop_tally.record_commit(self.customer, sum(q for _, q in cart))
        else:
            tally.released += 1
        return True

    # -- the drop mode ---------------------------------------------------------------------

    def new_customer(self) -> str:
        self.visits += 1
        self.state.drop_tally.customers += 1
        return f"c-{self.number}-{self.visits}"

    def shop_drop(self, rules: drop.DropRules) -> None:
        """A customer's cart in the drop; refused for stock, it waits in line. Then the
        next customer, or (a repeat shopper) the same one again."""
        scenario, tally = self.state.scenario, self.state.tally
        cart = scenario.cart(self.rng)
        hold, refusal = self.reserve_as(self.customer, cart)
        if hold is not None:
            time.sleep(scenario.think_seconds(self.rng))  # gevent-patched: yields
            outcome = scenario.outcome(self.rng)
            if outcome == "abandon":
                tally.abandoned += 1
            else:
                self.finish(hold, outcome, cart)
        elif isinstance(refusal, InsufficientStock):
            sku, qty = cart[0]
            self.wait_in_line(rules, sku, qty)
        if not rules.is_repeat_shopper(self.rng):
            self.customer = self.new_customer()

    def hammer(self) -> None:
        """The bot: one identity, one unit, as fast as it can; it buys what it holds."""
        self.state.drop_tally.bot_calls += 1
        cart = [(self.state.scenario.sku_names[0], 1)]
        hold, _ = self.reserve_as(self.customer, cart)
        if hold is not None:
            self.finish(hold, "commit", cart)

    def reserve_as(
        self, customer: str, cart: list[tuple[str, int]]
    ) -> tuple[str | None, EarmarkError | None]:
        """The hold's id, or None and the expected refusal (None: unexpected, recorded)."""
        scenario, tally, drops = self.state.scenario, self.state.tally, self.state.drop_tally
        lines = [(sku, qty, scenario.location) for sku, qty in cart]
        drops.touched.update((customer, sku) for sku, _ in cart)

        def send() -> Reservation:
            return self.client.reserve(
                lines,
                ttl_seconds=scenario.ttl_seconds,
                channel=scenario.channel,
                customer=customer,
                idempotency_key=idempotency_key("shop"),
            )

        expected = (InsufficientStock, CustomerLimitExceeded, RateLimited)
        try:
            held = self.timed.call(
                "POST", RESERVE, send, expected=expected, check=status_is("held")
            )
        except InsufficientStock as refusal:
            tally.refused += 1
            return None, refusal
        except CustomerLimitExceeded as refusal:
            drops.limit_refused += 1
            return None, refusal
        except RateLimited as refusal:
            drops.rate_limited += 1
            return None, refusal
        except (EarmarkError, UnexpectedAnswer) as error:
            self.unexpected(RESERVE, error)
            return None, None
        tally.accepted += 1
        tally.units_held += sum(qty for _, qty in cart)
        drops.owners[held.id] = customer
        return held.id, None

    def wait_in_line(self, rules: drop.DropRules, sku: str, qty: int) -> None:
        """Joins the line, reads its entry every ``poll_seconds`` until an offer (then
        takes it, declines it or lets it expire) or ``line_wait_seconds`` (then leaves)."""
        drops, customer = self.state.drop_tally, self.customer
        drops.entries.add((customer, sku))  # before: a join cut short by the stop may count
        joined = self.waitlist_call(
            JOIN,
            lambda: self.client.join_waitlist(
                rules.drop_id, customer, sku, qty, idempotency_key=idempotency_key("join")
            ),
        )
        if joined is None:
            return
        drops.joined += 1
        deadline = time.monotonic() + rules.line_wait_seconds
        while time.monotonic() < deadline:
            time.sleep(rules.poll_seconds)  # gevent-patched: yields
            entry = self.waitlist_call(
                ENTRY,
                lambda: self.client.get_waitlist_entry(rules.drop_id, customer, sku=sku),
                "GET",
            )
            if entry is None or entry.status not in drop.OPEN_STATUSES:
                return  # skipped, or an offer that came and went between two reads
            if entry.status == "offered" and entry.offer is not None:
                self.take_offer(rules, entry.offer.reservation_id, sku, entry.qty)
                return
        drops.gave_up += 1
        self.leave_line(rules, sku)

    def take_offer(self, rules: drop.DropRules, reservation: str, sku: str, qty: int) -> None:
        """Commits, declines or abandons the offer, with the odds of a cart."""
        drops, tally, scenario = self.state.drop_tally, self.state.tally, self.state.scenario
        drops.offers_seen += 1
        drops.owners[reservation] = self.customer
        tally.accepted += 1  # the offer is a hold of this shopper's now
        tally.units_held += qty
        choice = drop.offer_choice(
            self.rng, scenario.commit_probability, scenario.release_probability
        )
        time.sleep(scenario.think_seconds(self.rng))  # gevent-patched: yields
        if choice == "abandon":
            drops.offers_abandoned += 1
            tally.abandoned += 1
        elif choice == "decline":
            left = self.leave_line(rules, sku)
            if left is not None and left.status == "declined":
                drops.offers_declined += 1
                tally.released += 1
            elif left is not None:  # it expired while the shopper thought: passed on
                tally.gone += 1
        elif self.finish(reservation, "commit", [(sku, qty)]):
            drops.offers_committed += 1

    def leave_line(self, rules: drop.DropRules, sku: str) -> WaitlistEntry | None:
        """The entry after the decline (a finished one answers as it is), or None."""
        customer = self.customer
        return self.waitlist_call(
            DECLINE,
            lambda: self.client.decline_waitlist(
                rules.drop_id, customer, sku=sku, idempotency_key=idempotency_key("decline")
            ),
        )

    def waitlist_call(
        self, name: str, send: Any, request_type: str = "POST"
    ) -> WaitlistEntry | None:
        """A waitlist call; a refusal for the limit (a qty the limit cannot serve) is
        expected and counted, anything else unexpected."""
        try:
            entry: WaitlistEntry = self.timed.call(
                request_type, name, send, expected=(CustomerLimitExceeded,)
            )
        except CustomerLimitExceeded:
            self.state.drop_tally.limit_refused += 1
            return None
        except (EarmarkError, UnexpectedAnswer) as error:
            answer = outcome_of(error) if isinstance(error, EarmarkError) else str(error)
            self.state.tally.record_unexpected(f"{request_type} {name}", answer)
            return None
        return entry

    def unexpected(self, endpoint: str, error: Exception) -> None:
        answer = outcome_of(error) if isinstance(error, EarmarkError) else str(error)
        self.state.tally.record_unexpected(f"POST {endpoint}", answer)


# A commit or release of a hold that is no longer held: 410, expected in a drill.
GONE = (ReservationExpired, ReservationReleased)


def status_is(wanted: str) -> Any:
    def check(reservation: Reservation) -> str | None:
        return None if reservation.status == wanted else f"status {reservation.status}"

    return check
