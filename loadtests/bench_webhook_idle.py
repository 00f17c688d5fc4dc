"""What the in-process webhook workers cost a sidecar that has nothing to deliver.

Not part of the tests. Everything runs on 127.0.0.1 and stops by itself: a throwaway
redis-server, and two ``earmark serve`` processes on the same store and the same SQLite
record (one worker each, the flusher out of process, no webhook endpoint):

* **workers**: the default, the webhook dispatcher and delivery worker in-process;
* **none**: ``EARMARK_WEBHOOKS_IN_PROCESS=false``, the baseline.

It reads each server's CPU while both sit idle, then drives ``POST /v1/reservations``
with ``wrk`` in alternating rounds (as ``loadtests.bench_http``) and prints the medians
and the ratio of the workers' server to the baseline: requests/s, p99 and server CPU per
request. An idle worker backs off (``earmark.webhooks.polling``), so the ratios are
close to 1.0 (one run: 1.016x req/s, 0.971x CPU per request; idle CPU 0.6 % against
0.4 %); with the fixed 50 ms poll it replaced, the same run gave 0.960x req/s and 1.100x
CPU per request, idle CPU 2.9 % against 0.3 %.

    python -m loadtests.bench_webhook_idle [--rounds 4] [--seconds 6] [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tests.support.servers import RedisServer

from loadtests import bench_http

PREFIX = "webhookidle"
TARGETS = {"workers": {}, "none": {"EARMARK_WEBHOOKS_IN_PROCESS": "false"}}


def serve(stack: ExitStack, name: str, redis_url: str, database_url: str) -> bench_http.Process:
    env = bench_http.earmark_env(redis_url, PREFIX, database_url, 1, flusher_in_process=False)
    process = bench_http.earmark_serve({**env, **TARGETS[name]})
    process.name = name
    stack.enter_context(bench_http.started(process, "/healthz"))
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per server")
    parser.add_argument("--seconds", type=int, default=6, help="seconds per round")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    wrk = argparse.Namespace(threads=1, connections=args.connections, seconds=args.seconds)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="earmark-bench-") as tmp:
        redis_server = stack.enter_context(RedisServer())
        database_url = f"sqlite:///{tmp}/earmark.db"
        token = bench_http.prepare_store(redis_server.url, PREFIX, database_url)
        script = str(Path(tmp) / "reserve.lua")
        Path(script).write_text(bench_http.WRK_SCRIPT)
        procs = {name: serve(stack, name, redis_server.url, database_url) for name in TARGETS}
        time.sleep(2)  # past the start-up work
        before = {n: bench_http.tree_cpu_seconds(p.proc.pid) for n, p in procs.items()}
        time.sleep(args.idle_seconds)
        idle = {
            n: (bench_http.tree_cpu_seconds(p.proc.pid) - before[n]) / args.idle_seconds * 100
            for n, p in procs.items()
        }
        for name, proc in procs.items():
            warm = argparse.Namespace(**{**vars(wrk), "seconds": 2})
            bench_http.run_wrk(proc.url, script, warm, f"warm-{name}", token)
        rps: dict[str, list[float]] = {n: [] for n in procs}
        p99: dict[str, list[float]] = {n: [] for n in procs}
        cpu: dict[str, list[float]] = {n: [] for n in procs}
        for i in range(args.rounds):
            order = list(procs) if i % 2 == 0 else list(reversed(procs))
            for name in order:
                proc = procs[name]
                start = bench_http.tree_cpu_seconds(proc.proc.pid)
                result = bench_http.run_wrk(proc.url, script, wrk, f"r{i}-{name}", token)
                spent = bench_http.tree_cpu_seconds(proc.proc.pid) - start
                rps[name].append(result.rps)
                p99[name].append(result.p99_ms)
                cpu[name].append(spent / max(1, result.requests) * 1e6)
                print(
                    f"round {i + 1} {name:8} {result.rps:8.0f} req/s  p99 {result.p99_ms:6.1f} ms"
                    f"  {cpu[name][-1]:5.0f} us CPU/request",
                    flush=True,
                )
    med = {n: (statistics.median(rps[n]), statistics.median(p99[n])) for n in procs}
    cpu_med = {n: statistics.median(cpu[n]) for n in procs}
    for name in procs:
        print(
            f"{name:8} idle CPU {idle[name]:4.1f} %  median {med[name][0]:8.0f} req/s"
            f"  p99 {med[name][1]:6.1f} ms  {cpu_med[name]:5.0f} us CPU/request"
        )
    print(
        f"in-process webhook workers vs none: {med['workers'][0] / med['none'][0]:.3f}x req/s, "
        f"p99 {med['workers'][1] / med['none'][1]:.3f}x, "
        f"CPU/request {cpu_med['workers'] / cpu_med['none']:.3f}x; "
        f"idle CPU {idle['workers']:.1f} % vs {idle['none']:.1f} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
