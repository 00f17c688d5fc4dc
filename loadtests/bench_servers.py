"""Which ASGI server should ``earmark serve`` run? The same earmark app under uvicorn (as
``earmark serve`` runs it: uvloop, httptools with the bounded request head, no access
log) and under granian (``--interface asgi``, uvloop, no access log), same worker count,
same Redis and durable record, driven by the same ``wrk`` load in alternating rounds.

Not part of the tests; everything on 127.0.0.1, stops by itself. granian must be
installed (``pip install granian``): it is not a dependency of earmark.

Prints each round, the medians and granian's ratios to uvicorn (throughput, p99). The
decision it informs (docs/benchmarks.md, "ASGI server"): offer granian only if it is
clearly faster.

    python -m loadtests.bench_servers [--rounds 3] [--seconds 8] [--connections 32] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from tests.support.servers import RedisServer, free_port

from loadtests.bench_http import HOST, WRK_SCRIPT, Process, Round, prepare_store, run_wrk, started

SERVERS = ("uvicorn", "granian")


def earmark_env(redis_url: str, prefix: str, database_url: str, workers: int) -> dict[str, str]:
    return {
        "EARMARK_REDIS_URL": redis_url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_LOG_LEVEL": "warning",
        "EARMARK_WORKERS": str(workers),
        "EARMARK_DATABASE_URL": database_url,
        "EARMARK_FLUSHER_IN_PROCESS": "false",
    }


def processes(env: dict[str, str], workers: int) -> dict[str, Process]:
    uvicorn_port, granian_port = free_port(), free_port()
    uvicorn = Process(
        "uvicorn",
        [sys.executable, "-m", "earmark", "serve", "--port", str(uvicorn_port)],
        env,
        uvicorn_port,
    )
    granian = Process(
        "granian",
        [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
            "--host", HOST, "--port", str(granian_port), "--workers", str(workers),
            "--loop", "uvloop", "--no-ws", "--log-level", "warning", "--no-access-log",
            "earmark.api.app:create_app_from_env",
        ],
        env,
        granian_port,
    )  # fmt: skip
    return {"uvicorn": uvicorn, "granian": granian}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--seconds", type=int, default=8, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="workers per server")
    args = parser.parse_args(argv)
    for tool, hint in (("wrk", "apt-get install -y wrk"), ("granian", "pip install granian")):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed ({hint})", file=sys.stderr)
            return 2
    prefix = f"benchsrv{os.getpid()}"
    rounds: list[Round] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        redis_server = stack.enter_context(RedisServer())
        database_url = f"sqlite:///{tmp}/earmark.db"
        token = prepare_store(redis_server.url, prefix, database_url)
        script = str(Path(tmp) / "reserve.lua")
        Path(script).write_text(WRK_SCRIPT)
        env = earmark_env(redis_server.url, prefix, database_url, args.workers)
        procs = processes(env, args.workers)
        for proc in procs.values():
            stack.enter_context(started(proc, "/healthz"))
        for name, proc in procs.items():
            warm = argparse.Namespace(**{**vars(args), "seconds": 2})
            run_wrk(proc.url, script, warm, f"warm-{name}", token)
        for i in range(args.rounds):
            order = SERVERS if i % 2 == 0 else SERVERS[::-1]
            for name in order:
                result = run_wrk(procs[name].url, script, args, f"r{i}-{name}", token)
                rounds.append(Round(name, *list(vars(result).values())[1:]))
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
        for name in SERVERS
    }
    ratio = {
        "throughput": round(medians["granian"]["rps"] / medians["uvicorn"]["rps"], 3),
        "p99": round(medians["granian"]["p99_ms"] / medians["uvicorn"]["p99_ms"], 3),
    }
    print(json.dumps({"medians": medians, "granian_to_uvicorn": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
