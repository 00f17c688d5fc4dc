"""One ``earmark serve`` over HTTP against what one would otherwise build, by callers.

The servers of ``loadtests.bench_http`` (earmark serve with API keys on, the naive
FastAPI endpoint, the minimal one; one worker each, on one throwaway Redis), driven by
``wrk`` with 8, 32 and 128 connections, in alternating rounds at each level:

* earmark against the naive endpoint (a pydantic body model and one EVALSHA of a
  reserve-like script: decrement, a hold with a TTL index, an event), the chart's first
  panel; at the headline level also against the minimal endpoint (one EVALSHA of the
  5-line decrement).

After every earmark round the SKU is counted through the engine: reserved + committed
never above on_hand, and the units held grew by the requests answered 201 (plus at
most one request per connection still in flight when wrk stopped counting). After a
baseline round its stock counter must not be below zero.

    python -m loadtests.bench.http [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import redis
from tests.support.servers import RedisServer, ServerUnavailable

from earmark import Engine, EngineConfig
from loadtests import bench_http, minimal_app, naive_app
from loadtests.bench.common import (
    Comparison,
    Sample,
    Settings,
    add_common_args,
    alternate,
    command_line,
    settings_from,
)

LEVELS = (8, 32, 128)
LEVELS_QUICK = (8, 128)
HEADLINE_CONNECTIONS = 32
WORKERS = 1  # one earmark serve: the question the chart answers
WARM_SECONDS = 2
STOCK_KEYS = {"naive": naive_app.STOCK_KEY, "minimal": minimal_app.STOCK_KEY}


def _counted(url: str, prefix: str) -> tuple[int, int, int]:
    """(on_hand, reserved, committed) of the benchmark SKU, through the engine."""
    with Engine.from_url(url, EngineConfig(prefix=prefix)) as engine:
        level = engine.stock(bench_http.SKU)
    return level.on_hand, level.reserved, level.committed


class HttpRounds:
    """Rounds of wrk against one of the servers, each a Sample with its check."""

    def __init__(self, redis_url: str, prefix: str, procs: dict[str, bench_http.Process],
                 token: str, script: str) -> None:  # fmt: skip
        self.redis_url, self.prefix, self.procs = redis_url, prefix, procs
        self.token, self.script = token, script
        self.rounds = 0

    def _wrk(self, target: str, connections: int, seconds: float) -> bench_http.Round:
        self.rounds += 1
        seconds = max(1, round(seconds))  # wrk takes whole seconds
        args = argparse.Namespace(threads=1, connections=connections, seconds=seconds)
        token = self.token if target == "earmark" else ""
        return bench_http.run_wrk(
            self.procs[target].url, self.script, args, f"h{self.rounds}-{target}", token
        )

    def warm(self) -> None:
        for target in self.procs:
            self._wrk(target, HEADLINE_CONNECTIONS, WARM_SECONDS)

    def earmark(self, connections: int, seconds: float) -> Callable[[], Sample]:
        def run() -> Sample:
            _, before, _ = _counted(self.redis_url, self.prefix)
            result = self._wrk("earmark", connections, seconds)
            on_hand, reserved, committed = _counted(self.redis_url, self.prefix)
            answered = result.requests - result.non2xx
            grew = reserved - before
            problems = []
            if reserved + committed > on_hand:
                problems.append(f"oversell {reserved + committed - on_hand}")
            if not answered <= grew <= answered + connections:
                problems.append(f"held +{grew} for {answered} answered 201")
            check = "CHECK FAILED: " + "; ".join(problems) if problems else "buckets ok, oversell 0"
            return self._sample(result, answered, check)

        return run

    def baseline(self, target: str, connections: int, seconds: float) -> Callable[[], Sample]:
        def run() -> Sample:
            result = self._wrk(target, connections, seconds)
            with redis.Redis.from_url(self.redis_url) as client:
                left = int(client.get(STOCK_KEYS[target]) or 0)
            answered = result.requests - result.non2xx
            check = "oversell 0" if left >= 0 else f"CHECK FAILED: stock {left}"
            return self._sample(result, answered, check)

        return run

    @staticmethod
    def _sample(result: bench_http.Round, answered: int, check: str) -> Sample:
        errors = result.non2xx + result.socket_errors
        return Sample(
            ops_per_s=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            accepted=answered,
            refused=result.non2xx,
            errors=errors,
            error_examples=(f"{result.non2xx} non-2xx, {result.socket_errors} socket",)
            if errors
            else (),
            check=check,
        )


def run(settings: Settings) -> list[Comparison]:
    if shutil.which("wrk") is None:
        raise ServerUnavailable("wrk is not installed (apt-get install -y wrk)")
    prefix = f"benchhttp{os.getpid()}"
    results: list[Comparison] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="earmark-bench-http-") as tmp:
        server = stack.enter_context(RedisServer())
        database_url = f"sqlite:///{tmp}/earmark.db"
        token = bench_http.prepare_store(server.url, prefix, database_url)
        script = str(Path(tmp) / "reserve.lua")
        Path(script).write_text(bench_http.WRK_SCRIPT)
        procs = bench_http.servers(stack, server.url, prefix, database_url, WORKERS, False)
        rounds = HttpRounds(server.url, prefix, procs, token, script)
        rounds.warm()
        for connections in LEVELS_QUICK if settings.quick else LEVELS:
            comparison = Comparison(
                benchmark="HTTP: one earmark serve vs the naive endpoint",
                subject="earmark serve, POST /v1/reservations",
                baseline="naive FastAPI endpoint (pydantic, EVALSHA)",
                command=command_line(),
                concurrency=connections,
                notes=f"{WORKERS} worker each, wrk -t1 -c<connections>; target >= 1.5x, "
                "p99 no worse",
                group="http",
            )
            subject = rounds.earmark(connections, settings.seconds)
            baseline = rounds.baseline("naive", connections, settings.seconds)
            results.append(alternate(comparison, settings.rounds, subject, baseline))
        comparison = Comparison(
            benchmark="HTTP: one earmark serve vs the minimal endpoint",
            subject="earmark serve, POST /v1/reservations",
            baseline="minimal endpoint (one EVALSHA of the decrement)",
            command=command_line(),
            concurrency=HEADLINE_CONNECTIONS,
            notes=f"{WORKERS} worker each; target >= 1.0x",
        )
        subject = rounds.earmark(HEADLINE_CONNECTIONS, settings.seconds)
        baseline = rounds.baseline("minimal", HEADLINE_CONNECTIONS, settings.seconds)
        results.append(alternate(comparison, settings.rounds, subject, baseline))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    comparisons = run(settings_from(parser.parse_args()))
    print("\n=== summary")
    for comparison in comparisons:
        print(comparison.summary())


if __name__ == "__main__":
    main()
