"""How ``earmark serve`` serves: the same earmark app, one worker, the same Redis and
durable record, driven by the same ``wrk`` load in rotating rounds, as

* ``serve``: ``earmark serve`` (uvicorn, uvloop, httptools with the bounded request
  head, no access log, the collector tuned: earmark.api.server.tune_gc);
* ``default-gc``: the same without tune_gc (``loadtests/serve_default_gc.py``);
* ``granian``: granian ``--interface asgi`` (uvloop, no access log) on the tuned
  factory, when granian is installed (``pip install granian``; not a dependency).

Not part of the tests; everything on 127.0.0.1, stops by itself. Prints each round, the
medians and the ratios: serve to default-gc (what tune_gc buys) and granian to serve
(the decision in docs/benchmarks.md, "ASGI server": offer granian only if it is clearly
faster).

    python -m loadtests.bench_servers [--rounds 3] [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from tests.support.servers import RedisServer, free_port

from loadtests.bench_http import HOST, WRK_SCRIPT, Process, Round, prepare_store, run_wrk, started

BASELINE = "serve"


def earmark_env(redis_url: str, prefix: str, database_url: str) -> dict[str, str]:
    return {
        "EARMARK_REDIS_URL": redis_url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_LOG_LEVEL": "warning",
        "EARMARK_DATABASE_URL": database_url,
        "EARMARK_FLUSHER_IN_PROCESS": "false",
    }


def processes(env: dict[str, str], granian: bool) -> dict[str, Process]:
    ports = {name: free_port() for name in ("serve", "default-gc", "granian")}
    procs = {
        "serve": Process(
            "serve",
            [sys.executable, "-m", "earmark", "serve", "--port", str(ports["serve"])],
            env,
            ports["serve"],
        ),
        "default-gc": Process(
            "default-gc",
            [sys.executable, "-m", "loadtests.serve_default_gc"],
            {**env, "EARMARK_PORT": str(ports["default-gc"])},
            ports["default-gc"],
        ),
    }
    if granian:
        procs["granian"] = Process(
            "granian",
            [
                sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
                "--host", HOST, "--port", str(ports["granian"]), "--workers", "1",
                "--loop", "uvloop", "--no-ws", "--log-level", "warning", "--no-access-log",
                "earmark.api.server:served_app_from_env",
            ],
            env,
            ports["granian"],
        )  # fmt: skip
    return procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--seconds", type=int, default=8, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    granian = importlib.util.find_spec("granian") is not None
    if not granian:
        print("granian is not installed (pip install granian): its row is left out")
    prefix = f"benchsrv{os.getpid()}"
    rounds: list[Round] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_server = stack.enter_context(RedisServer())
        database_url = f"sqlite:///{tmp}/earmark.db"
        token = prepare_store(redis_server.url, prefix, database_url)
        script = str(Path(tmp) / "reserve.lua")
        Path(script).write_text(WRK_SCRIPT)
        env = earmark_env(redis_server.url, prefix, database_url)
        procs = processes(env, granian)
        servers = tuple(procs)
        for proc in procs.values():
            stack.enter_context(started(proc, "/healthz"))
        for name, proc in procs.items():
            warm = argparse.Namespace(**{**vars(args), "seconds": 2})
            run_wrk(proc.url, script, warm, f"warm-{name}", token)
        for i in range(args.rounds):
            for k in range(len(servers)):  # each round starts one server later
                name = servers[(i + k) % len(servers)]
                result = run_wrk(procs[name].url, script, args, f"r{i}-{name}", token)
                rounds.append(replace(result, target=name))
                print(
                    f"round {i + 1} {name:8} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                    f"  p99 {result.p99_ms:6.2f} ms  non-2xx {result.non2xx}"
                    f"  socket errors {result.socket_errors}",
                    flush=True,
                )
    medians = {
        name: {
            "rps": statistics.median(r.rps for r in rounds if r.target == name),
            "p99_ms": statistics.median(r.p99_ms for r in rounds if r.target == name),
        }
        for name in servers
    }

    def ratio(subject: str, baseline: str) -> dict[str, float]:
        return {
            "throughput": round(medians[subject]["rps"] / medians[baseline]["rps"], 3),
            "p99": round(medians[subject]["p99_ms"] / medians[baseline]["p99_ms"], 3),
        }

    ratios = {"serve_to_default_gc": ratio("serve", "default-gc")}
    if granian:
        ratios["granian_to_serve"] = ratio("granian", "serve")
    print(json.dumps({"medians": medians, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
