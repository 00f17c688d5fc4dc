"""One complete local drill, bounded in time, that cleans up after itself.

    python -m loadtests.drill.run_local [--users 100 --skus 3 --stock 100 --run-time 30s
                                         --ttl 5 --embedded --out DIR ...]
    python -m loadtests.drill.run_local --drop [--limit 2 --offer-ttl 3 ...]

1. Starts a throwaway redis-server and PostgreSQL on free 127.0.0.1 ports
   (``tests/support/servers.py``), or with ``--embedded`` nothing: the server's in-process store
   and a SQLite record in the report directory.
2. Starts ``earmark serve --no-auth`` on a free 127.0.0.1 port against them (a throwaway
   store on loopback: auth off is the explicit choice here) and waits for /readyz.
3. Seeds ``--stock`` units of every SKU (POST receipts).
4. Runs Locust headless on ``loadtests/drill/locustfile.py`` (all users spawned within a
   second), writing CSV and HTML reports; its test-stop hook checks the engine and prints
   the verdict. With ``--drop`` the SKUs are sold in a drop with a per-customer limit and
   a waitlist, which Locust opens at test start (docs/drill.md, "Drop mode").
5. Exits with Locust's exit code (0 PASS, 1 FAIL), and stops everything it started, also
   on Ctrl-C or SIGTERM (exit 130).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from tests.support.servers import PostgresServer, RedisServer, ServerUnavailable, free_port

from loadtests.drill import drop, verdict
from loadtests.drill.client import ApiError, HttpApi, seed
from loadtests.drill.scenario import Scenario, ScenarioError, timespan_seconds

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DATABASE = "earmark_drill"
SERVER_START_SECONDS_MAX = 60.0
STOP_SECONDS_MAX = 15.0  # SIGTERM, then SIGKILL
# Locust's own start-up and shutdown, beyond run time, settling and the ledger wait.
LOCUST_OVERHEAD_SECONDS = 60.0
EXIT_INTERRUPTED = 130
EXIT_SETUP_FAILED = 2
EXIT_TIMED_OUT = 3


@dataclass(frozen=True, slots=True)
class Backend:
    """Where the server keeps its data: redis_url None means embedded."""

    redis_url: str | None
    database_url: str
    description: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Scenario()
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.drill.run_local",
        description="Run a complete, bounded flash-drop drill on 127.0.0.1 and print the "
        "verdict. Exit code: 0 PASS, 1 FAIL, 2 set-up failed, 3 timed out, 130 interrupted.",
    )
    add = parser.add_argument
    add("--users", type=int, default=100, help="concurrent shoppers (default 100)")
    add("--spawn-rate", type=float, help="users started per second (default: --users)")
    add("--run-time", default="30s", help="how long the drop lasts (default 30s)")
    add("--skus", type=int, default=d.skus, help=f"SKUs in the drop (default {d.skus})")
    add("--stock", type=int, default=100, help="units seeded per SKU (default 100)")
    add("--max-qty", type=int, default=d.qty_max, help="units per cart line, at most")
    add("--max-lines", type=int, default=d.lines_max, help="SKUs per cart, at most")
    add("--commit", type=float, default=d.commit_probability, help="P(commit)")
    add("--release", type=float, default=d.release_probability, help="P(release)")
    add("--ttl", type=float, default=5.0, help="hold TTL in seconds (default 5)")
    add("--think-min", type=float, default=d.think_seconds_min, help="seconds")
    add("--think-max", type=float, default=d.think_seconds_max, help="seconds")
    add("--sweep-interval", type=float, default=1.0, help="the server's sweep interval, s")
    add("--embedded", action="store_true", help="in-process store + SQLite, no servers")
    r = drop.DropRules()
    add("--drop", action="store_true", help="sell in a drop: a per-customer limit, a waitlist, "
        "repeat shoppers and a bot (docs/drill.md, Drop mode)")  # fmt: skip
    add("--limit", type=int, default=r.limit, help=f"--drop: units per customer ({r.limit})")
    add("--offer-ttl", type=float, default=r.offer_ttl_seconds, help="--drop: offer TTL, s")
    add("--repeat-share", type=float, default=r.repeat_share,
        help="--drop: share of shoppers who shop again as the same customer")  # fmt: skip
    add("--line-wait", type=float, default=r.line_wait_seconds,
        help="--drop: seconds a shopper stays in line, at most")  # fmt: skip
    add("--out", type=Path, help="report directory (default: a new temp directory)")
    add("--keep", action="store_true", help="keep the temp directory (without --out it is "
        "removed at the end, reports and all)")  # fmt: skip
    return parser.parse_args(argv)


def rules_of(args: argparse.Namespace) -> drop.DropRules | None:
    if not args.drop:
        return None
    return drop.DropRules(
        limit=args.limit,
        offer_ttl_seconds=args.offer_ttl,
        repeat_share=args.repeat_share,
        line_wait_seconds=args.line_wait,
    )


def clean_up(out: Path, args: argparse.Namespace) -> None:
    """Removes the temp directory the drill made (never a given --out) unless --keep."""
    if args.out is None and not args.keep:
        shutil.rmtree(out, ignore_errors=False)
        print(f"run_local: removed {out} (--keep keeps it)", flush=True)


def scenario_of(args: argparse.Namespace) -> Scenario:
    return Scenario(
        skus=args.skus,
        stock=args.stock,
        qty_max=args.max_qty,
        lines_max=args.max_lines,
        commit_probability=args.commit,
        release_probability=args.release,
        ttl_seconds=args.ttl,
        think_seconds_min=args.think_min,
        think_seconds_max=args.think_max,
    )


# -- processes ---------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal, wait at most STOP_SECONDS_MAX, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running(
    command: list[str], env: dict[str, str], log: IO[bytes] | None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session (a terminal's Ctrl-C reaches only us; we stop it)."""
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        yield proc
    finally:
        stop_process(proc)


def start_backend(stack: ExitStack, embedded: bool, out: Path) -> Backend:
    if embedded:
        # A new file per run: the embedded server restores the stock of an existing one.
        record = out / f"earmark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.db"
        return Backend(None, f"sqlite:///{record}", f"embedded store, SQLite record {record}")
    redis_server = stack.enter_context(RedisServer())
    postgres = stack.enter_context(PostgresServer())
    database_url = postgres.create_database(DATABASE)
    description = f"throwaway redis-server {redis_server.url} and PostgreSQL {database_url}"
    return Backend(redis_server.url, database_url, description)


def server_env(
    backend: Backend, args: argparse.Namespace, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Our environment without any EARMARK_* of the caller's, plus the drill's (and
    ``extra``: e.g. the webhook settings of ``loadtests.webhook_lag``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    env |= {
        "EARMARK_DATABASE_URL": backend.database_url,
        "EARMARK_SWEEP_INTERVAL_SECONDS": str(args.sweep_interval),
        "EARMARK_LOG_LEVEL": "warning",
        **(extra or {}),
    }
    if backend.redis_url is not None:
        env["EARMARK_REDIS_URL"] = backend.redis_url
    return env


def start_server(
    stack: ExitStack,
    backend: Backend,
    args: argparse.Namespace,
    out: Path,
    extra_env: dict[str, str] | None = None,
) -> str:
    """``earmark serve`` on a free loopback port; returns its URL once /readyz is 200."""
    port = free_port()
    log = stack.enter_context(open(out / "server.log", "wb"))  # noqa: SIM115 (closed by the stack)
    command = [sys.executable, "-m", "earmark", "serve", "--host", HOST, "--port", str(port)]
    command.append("--no-auth")  # throwaway stores on loopback; a Redis without keys is closed
    proc = stack.enter_context(running(command, server_env(backend, args, extra_env), log))
    url = f"http://{HOST}:{port}"
    api = stack.enter_context(closing(HttpApi(url)))
    deadline = time.monotonic() + SERVER_START_SECONDS_MAX
    while not api.ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ServerUnavailable(f"earmark serve did not become ready; see {log.name}")
        time.sleep(0.2)
    return url


def locust_command(
    args: argparse.Namespace, scenario: Scenario, url: str, backend: Backend, out: Path
) -> list[str]:
    users = str(args.users)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    command += ["-u", users, "-r", str(args.spawn_rate or args.users), "--run-time"]
    command += [args.run_time, "--host", url, "--only-summary"]
    command += ["--csv", str(out / "drill"), "--html", str(out / "drill.html")]
    command += ["--skus", str(scenario.skus), "--stock", str(scenario.stock)]
    command += ["--max-qty", str(scenario.qty_max), "--max-lines", str(scenario.lines_max)]
    command += ["--commit", str(scenario.commit_probability)]
    command += ["--release", str(scenario.release_probability)]
    command += ["--ttl", str(scenario.ttl_seconds), "--think-min", str(args.think_min)]
    command += ["--think-max", str(args.think_max), "--sweep-interval", str(args.sweep_interval)]
    command += ["--database-url", backend.database_url]
    if backend.redis_url is not None:
        command += ["--redis-url", backend.redis_url]
    if args.drop:
        command += ["--drop", "--limit", str(args.limit), "--offer-ttl", str(args.offer_ttl)]
        command += ["--repeat-share", str(args.repeat_share), "--line-wait", str(args.line_wait)]
    return command


def locust_bound_seconds(args: argparse.Namespace, run_seconds: int) -> float:
    ttl = max(float(args.ttl), float(args.offer_ttl)) if args.drop else float(args.ttl)
    settle = ttl + float(args.sweep_interval) + verdict.SETTLE_GRACE_SECONDS_DEFAULT
    bound = run_seconds + settle + verdict.LEDGER_WAIT_SECONDS_DEFAULT + LOCUST_OVERHEAD_SECONDS
    if args.drop:  # the sweeps awaited, the line read again, then the ledger once more
        sweeps = drop.SWEEPS_AWAITED + drop.IDLE_READS_MAX
        grace = verdict.SETTLE_GRACE_SECONDS_DEFAULT * drop.IDLE_READS_MAX
        bound += sweeps * float(args.sweep_interval) + grace + verdict.LEDGER_WAIT_SECONDS_DEFAULT
    return bound


def run_locust(stack: ExitStack, command: list[str], bound_seconds: float) -> int:
    """Locust's exit code; its output goes to ours. Stopped if it outlives the bound."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    proc = stack.enter_context(running(command, env, None))
    try:
        return int(proc.wait(bound_seconds))
    except subprocess.TimeoutExpired:
        print(f"run_local: Locust still running after {bound_seconds:.0f}s: stopped", flush=True)
        stop_process(proc)
        return EXIT_TIMED_OUT


# -- the drill ---------------------------------------------------------------------------


def report_dir(out: Path | None) -> Path:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="earmark-drill-"))
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def drill(stack: ExitStack, args: argparse.Namespace, scenario: Scenario, out: Path) -> int:
    run_seconds = timespan_seconds(args.run_time)
    backend = start_backend(stack, args.embedded, out)
    url = start_server(stack, backend, args, out)
    print(f"run_local: earmark serve at {url} on {backend.description}", flush=True)
    seeder = stack.enter_context(closing(HttpApi(url)))
    seed(seeder, scenario.sku_names, scenario.stock, scenario.location)
    print(
        f"run_local: seeded {scenario.skus} SKUs x {scenario.stock} units; "
        f"{args.users} users for {run_seconds}s; reports in {out}",
        flush=True,
    )
    command = locust_command(args, scenario, url, backend, out)
    code = run_locust(stack, command, locust_bound_seconds(args, run_seconds))
    print(f"run_local: Locust exited {code}; reports (CSV, HTML, server.log) in {out}")
    return code


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario = scenario_of(args)
        rules_of(args)
        timespan_seconds(args.run_time)
    except ScenarioError as error:
        print(f"run_local: {error}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    out = report_dir(args.out)
    signal.signal(signal.SIGTERM, raise_interrupt)
    stack = ExitStack()
    try:
        return drill(stack, args, scenario, out)
    except KeyboardInterrupt:
        print("run_local: interrupted; stopping everything it started", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ServerUnavailable, ApiError, OSError) as error:
        print(f"run_local: set-up failed: {error}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not skip clean-up
            signal.signal(sig, signal.SIG_IGN)
        stack.close()
        clean_up(out, args)


if __name__ == "__main__":
    sys.exit(main())
