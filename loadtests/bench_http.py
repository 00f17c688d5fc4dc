"""HTTP benchmark: ``POST /v1/reservations`` of earmark against the naive FastAPI endpoint
and a minimal one.

Not part of the tests. Everything runs on 127.0.0.1 and stops by itself:

* a throwaway redis-server (tests/support/servers.py) on a free port;
* ``earmark serve`` (API key auth on, uvloop + httptools), ``loadtests/naive_app.py`` (a
  pydantic body model and one EVALSHA of a reserve-like script: decrement, a hold with a
  TTL index, an event) and ``loadtests/minimal_app.py`` (one EVALSHA of a minimal
  decrement script) on the same Redis, each in a subprocess, the same worker count each;
* ``wrk`` drives both with the same settings in alternating rounds; a Lua script gives
  every request its own Idempotency-Key. Stock is large enough that nearly every
  request is accepted.

Prints each round, the medians (requests/s, p50, p99, and the server's CPU time per
request: its processes' user + system time over the round, from /proc) and earmark's
throughput and p99 ratios to each baseline (targets: >= 1.5x the naive endpoint with p99
no worse, >= 1.0x the minimal one). The CPU per request says where a ratio comes from:
a server that is busy all round serves 1 / (CPU per request) requests a second.

    python -m loadtests.bench_http [--rounds 3] [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import redis
from tests.support.servers import RedisServer, free_port

from earmark import Engine, EngineConfig
from earmark.durable import service as durable

HOST = "127.0.0.1"
TARGETS = ("earmark", "naive", "minimal")
SKU = "BENCH"
RECEIPT_QTY = 1_000_000  # limits.QTY_MAX per receipt
RECEIPTS = 5
BODY = json.dumps({"lines": [{"sku": SKU, "qty": 1}], "ttl_seconds": 900})
ROOT = Path(__file__).resolve().parents[1]

WRK_SCRIPT = """
local thread_count = 0
function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end
function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
  counter = 0
  wrk.method = "POST"
  wrk.body = args[2]
  wrk.headers["Content-Type"] = "application/json"
  if args[3] ~= nil and args[3] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
end
function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format(nil, "/v1/reservations")
end
function done(summary, latency, requests)
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, " ..
    "\\"non2xx\\": %d, \\"socket_errors\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class Round:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    requests: int = 0  # answered within the round (wrk's count)
    cpu_us: float = 0.0  # the server's CPU time per answered request


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (uvicorn's workers), from
    /proc: what the server spent, whatever else runs on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Process:
    """A server subprocess on a free loopback port; always terminated."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115 (lives as long as the process; closed in stop())
        self.log = log
        self.proc = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=self.log, stderr=self.log
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_listening(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log.name}")
            try:
                httpx.get(self.url + path, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextmanager
def started(process: Process, ready_path: str) -> Iterator[Process]:
    try:
        process.wait_listening(ready_path)
        yield process
    finally:
        process.stop()


def prepare_store(url: str, prefix: str, database_url: str) -> str:
    """Stock for earmark and for the minimal endpoint, and an API key in the durable
    record; returns its token."""
    with Engine.from_url(url, EngineConfig(prefix=prefix)) as engine:
        for i in range(RECEIPTS):
            engine.receive(SKU, RECEIPT_QTY, idempotency_key=f"bench-receipt-{i}")
    scopes = frozenset({"read", "reserve"})
    token, _ = asyncio.run(durable.create_api_key(database_url, "bench", scopes))
    client = redis.Redis.from_url(url)
    try:
        client.set("minimal:stock", RECEIPT_QTY * RECEIPTS)
        client.set("naive:stock", RECEIPT_QTY * RECEIPTS)
    finally:
        client.close()
    return token


def run_wrk(url: str, script: str, args: argparse.Namespace, tag: str, token: str) -> Round:
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
        "--timeout", "10s", "-s", script, url, "--", tag, BODY, token,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}{out.stderr}")
    raw = json.loads(line.removeprefix("RESULT "))
    return Round(
        target="",
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non2xx=raw["non2xx"],
        socket_errors=raw["socket_errors"],
        requests=raw["requests"],
    )


def earmark_env(
    redis_url: str, prefix: str, database_url: str, workers: int, flusher_in_process: bool
) -> dict[str, str]:
    """The settings of a benchmarked ``earmark serve``."""
    return {
        "EARMARK_REDIS_URL": redis_url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_LOG_LEVEL": "warning",
        "EARMARK_WORKERS": str(workers),
        # The durable record in a throwaway file, never the repository's working directory.
        "EARMARK_DATABASE_URL": database_url,
        # In production the flusher usually runs as its own process (`earmark flush`);
        # --flusher-in-process measures serve with it sharing the server's core.
        "EARMARK_FLUSHER_IN_PROCESS": "true" if flusher_in_process else "false",
    }


def earmark_serve(env: dict[str, str]) -> Process:
    """``earmark serve`` on a free loopback port with ``env``."""
    port = free_port()
    command = [sys.executable, "-m", "earmark", "serve", "--port", str(port)]
    return Process("earmark", command, env, port)


def servers(
    stack: ExitStack,
    redis_url: str,
    prefix: str,
    database_url: str,
    workers: int,
    flusher_in_process: bool,
) -> dict[str, Process]:
    earmark = earmark_serve(
        earmark_env(redis_url, prefix, database_url, workers, flusher_in_process)
    )
    minimal_port = free_port()
    minimal = Process(
        "minimal",
        [
            sys.executable, "-m", "uvicorn", "loadtests.minimal_app:create_app", "--factory",
            "--host", HOST, "--port", str(minimal_port), "--loop", "uvloop", "--http",
            "httptools", "--no-access-log", "--log-level", "warning", "--workers", str(workers),
        ],
        {"MINIMAL_REDIS_URL": redis_url},
        minimal_port,
    )  # fmt: skip
    naive_port = free_port()
    naive = Process(
        "naive",
        [
            sys.executable, "-m", "uvicorn", "loadtests.naive_app:create_app", "--factory",
            "--host", HOST, "--port", str(naive_port), "--loop", "uvloop", "--http",
            "httptools", "--no-access-log", "--log-level", "warning", "--workers", str(workers),
        ],
        {"NAIVE_REDIS_URL": redis_url},
        naive_port,
    )  # fmt: skip
    stack.enter_context(started(earmark, "/healthz"))
    stack.enter_context(started(naive, "/docs"))
    stack.enter_context(started(minimal, "/docs"))
    return {"earmark": earmark, "naive": naive, "minimal": minimal}


def report(rounds: list[Round]) -> dict[str, dict[str, float]]:
    medians: dict[str, dict[str, float]] = {}
    for target in TARGETS:
        mine = [r for r in rounds if r.target == target]
        medians[target] = {
            "rps": statistics.median(r.rps for r in mine),
            "p50_ms": statistics.median(r.p50_ms for r in mine),
            "p99_ms": statistics.median(r.p99_ms for r in mine),
            "cpu_us_per_request": statistics.median(r.cpu_us for r in mine),
        }
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target")
    parser.add_argument("--seconds", type=int, default=8, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per server")
    parser.add_argument(
        "--flusher-in-process",
        action="store_true",
        help="run earmark's write-behind flusher inside the server (default: off, as when "
        "`earmark flush` runs as its own process)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    prefix = f"bench{os.getpid()}"
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_server = stack.enter_context(RedisServer())
        record = stack.enter_context(tempfile.TemporaryDirectory(prefix="earmark-bench-"))
        database_url = f"sqlite:///{record}/earmark.db"
        token = prepare_store(redis_server.url, prefix, database_url)
        script = str(Path(tmp) / "reserve.lua")
        Path(script).write_text(WRK_SCRIPT)
        procs = servers(
            stack, redis_server.url, prefix, database_url, args.workers, args.flusher_in_process
        )
        tokens = {"earmark": token, "naive": "", "minimal": ""}
        for target, proc in procs.items():  # warm-up: imports, pools, JIT-free caches
            warm = argparse.Namespace(**{**vars(args), "seconds": 2})
            run_wrk(proc.url, script, warm, f"warm-{target}", tokens[target])
        rounds: list[Round] = []
        for i in range(args.rounds):
            for target, proc in procs.items():
                before = tree_cpu_seconds(proc.proc.pid)
                result = run_wrk(proc.url, script, args, f"r{i}-{target}", tokens[target])
                spent = tree_cpu_seconds(proc.proc.pid) - before
                cpu_us = spent / max(1, result.requests) * 1e6
                rounds.append(replace(result, target=target, cpu_us=cpu_us))
                print(
                    f"round {i + 1} {target:8} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                    f"  p99 {result.p99_ms:6.2f} ms  cpu {cpu_us:5.0f} us/request"
                    f"  non-2xx {result.non2xx}  socket errors {result.socket_errors}",
                    flush=True,
                )
    medians = report(rounds)
    ratios = {
        baseline: {
            "throughput": round(medians["earmark"]["rps"] / medians[baseline]["rps"], 3),
            "p99": round(medians["earmark"]["p99_ms"] / medians[baseline]["p99_ms"], 3),
        }
        for baseline in ("naive", "minimal")
    }
    print(json.dumps({"medians": medians, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
