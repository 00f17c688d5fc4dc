"""Script cost: what Redis pays per cart, with no Python client in the way.

``redis-benchmark`` drives earmark's one-cart reserve script as the engine sends it (FCALL
of its function; the frozen copy, which predates function libraries, with EVALSHA) (the keys and
arguments the engine sends for a one-line cart, a fresh reservation id and idempotency
key per call through ``__rand_int__``) against, side by side in alternating rounds:

* the frozen copy of reserve.lua as shipped before the hot-path work
  (loadtests/frozen/reserve_v1.lua): the script-cost target is a ratio to it;
* the 5-line decrement script of ``loadtests.bench.redisbench`` (the raw ceiling).

It also prints Redis bytes per live hold and per waiting event, measured by reserving
through the engine, and the bound that gives for 1,000,000 live holds on one SKU.

    python -m loadtests.bench.scriptcost [--quick] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
from tests.support.servers import RedisServer

from earmark import AsyncEngine, Engine, EngineConfig
from earmark.engine.scripts import load_scripts
from earmark.keys import Keys
from earmark.models import Line
from loadtests.bench.common import (
    HOST,
    Comparison,
    Sample,
    Settings,
    add_common_args,
    alternate,
    command_line,
    settings_from,
)
from loadtests.bench.redisbench import RUN_TIMEOUT_S, RawTarget, _csv_row

FROZEN = Path(__file__).resolve().parents[1] / "frozen" / "reserve_v1.lua"
# reserve.lua's commands for a one-line cart and none of its logic (the contract's floor).
COMMANDS_ONLY = FROZEN.with_name("reserve_commands_only.lua")
PLAIN_SCRIPTS = {"frozen": FROZEN, "commands": COMMANDS_ONLY}  # run with EVALSHA
PREFIX = "cost"
SKU = "HOT"
UNITS = 1_000_000
RESERVE_SCRIPT_CLIENTS = 64
KEYSPACE = 1_000_000_000
CALIBRATION_REQUESTS = 20_000
MEMORY_HOLDS = 20_000
# The bound docs/operating.md states for 1,000,000 live one-line holds on one SKU (the
# holds alone; their events add while they wait for the flusher).
MILLION_HOLDS_BOUND_MIB = 1_280
MEMORY_HOLDS_QUICK = 5_000


def _fresh_store(port: int) -> Engine:
    """An emptied Redis with one partition set up and one SKU stocked."""
    with redis.Redis(host=HOST, port=port) as client:
        client.flushall()
    engine = Engine.from_url(f"redis://{HOST}:{port}/0", EngineConfig(prefix=PREFIX, partitions=1))
    engine.start()
    engine.receive(SKU, UNITS, idempotency_key="stock")
    return engine


@dataclass(frozen=True)
class ReserveScriptTarget:
    """redis-benchmark running one reserve script (``reserve``: today's; ``frozen``: the
    copy under loadtests/frozen/; ``commands``: reserve's commands alone, the floor)
    with a one-line cart of one unit."""

    port: int
    script: str
    clients: int

    def _source(self) -> str:
        return PLAIN_SCRIPTS[self.script].read_text()

    def _call(self) -> list[str]:
        engine = _fresh_store(self.port)
        try:
            with redis.Redis(host=HOST, port=self.port) as client:
                if self.script in PLAIN_SCRIPTS:
                    command, name = "EVALSHA", str(client.script_load(self._source()))
                else:
                    script = load_scripts()[self.script]
                    client.function_load(script.library, replace=True)
                    command, name = "FCALL", script.function
            rid = "rsv_" + "0" * 24 + "_0"
            call = engine._reserve_call(
                rid, 0, [Line(sku=SKU, qty=1)], "f" * 32, 600_000, "", "bench", "k"
            )
            # A fresh reservation id and idempotency record per call: redis-benchmark
            # puts a random number in place of each __rand_int__.
            keys = list(call.keys)
            keys[2] = engine.keys.idempotency(0, "d__rand_int__")
            keys[3] = engine.keys.reservation(0, "rsv___rand_int___0")
            args = [str(x) for x in [*call.args, "", "", 0, 0]]  # no customer, no drop
            args[4] = "rsv___rand_int___0"
            return [command, name, str(len(keys)), *keys, *args]
        finally:
            engine.close()

    def command(self, requests: int) -> list[str]:
        binary = shutil.which("redis-benchmark")
        if binary is None:
            raise SystemExit("redis-benchmark not found (it ships with redis-server)")
        call = self._call()
        cmd = [binary, "-h", HOST, "-p", str(self.port), "-c", str(self.clients)]
        cmd += ["-n", str(requests), "-r", str(KEYSPACE), "--csv", *call]
        return cmd

    def describe(self) -> str:
        call = f"EVALSHA <{self.script} sha>" if self.script in PLAIN_SCRIPTS else "FCALL <reserve>"
        return (
            f"redis-benchmark -c {self.clients} -n <n> -r {KEYSPACE} --csv {call}"
            " <the engine's KEYS and ARGV for a one-line cart>"
        )

    def run(self, requests: int) -> Sample:
        cmd = self.command(requests)
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True
        ).stdout
        with redis.Redis(host=HOST, port=self.port, decode_responses=True) as client:
            stock = client.hgetall(Keys(PREFIX).stock(0, SKU, "default"))
            reserved = int(stock.get("reserved", 0)) if stock else -1
            on_hand = int(stock.get("on_hand", 0)) if stock else -1
        row = _csv_row(out)
        return Sample(
            ops_per_s=float(row["rps"]),
            p50_ms=float(row["p50_latency_ms"]),
            p99_ms=float(row["p99_latency_ms"]),
            accepted=reserved,
            refused=requests - reserved,
            check=f"oversell {max(0, reserved - on_hand)}",
        )

    def requests_for(self, seconds: float) -> int:
        rate = self.run(CALIBRATION_REQUESTS).ops_per_s
        return max(CALIBRATION_REQUESTS, int(rate * seconds))


def script_cost(port: int, settings: Settings) -> list[Comparison]:
    new = ReserveScriptTarget(port, "reserve", RESERVE_SCRIPT_CLIENTS)
    frozen = ReserveScriptTarget(port, "frozen", RESERVE_SCRIPT_CLIENTS)
    requests = new.requests_for(settings.seconds)
    versus_frozen = Comparison(
        benchmark="script cost: one-cart reserve.lua vs the frozen copy",
        subject="redis-benchmark FCALL reserve (today)",
        baseline="redis-benchmark EVALSHA loadtests/frozen/reserve_v1.lua",
        command=f"{command_line()}  |  {new.describe()}",
        concurrency=RESERVE_SCRIPT_CLIENTS,
        notes="target >= 3x; same keys, arguments and clients on both sides",
    )
    results = [
        alternate(
            versus_frozen, settings.rounds, lambda: new.run(requests), lambda: frozen.run(requests)
        )
    ]
    raw = RawTarget(port, 1, UNITS)
    raw_requests = raw.requests_for(RESERVE_SCRIPT_CLIENTS, settings.seconds)
    versus_raw = Comparison(
        benchmark="script cost: one-cart reserve.lua vs the 5-line decrement",
        subject="redis-benchmark FCALL reserve (today)",
        baseline="redis-benchmark EVALSHA decrement",
        command=f"{command_line()}  |  baseline: {raw.describe(RESERVE_SCRIPT_CLIENTS)}",
        concurrency=RESERVE_SCRIPT_CLIENTS,
        notes="target: within 4x of the decrement (ratio >= 0.25)",
    )
    results.append(
        alternate(
            versus_raw,
            settings.rounds,
            lambda: new.run(requests),
            lambda: raw.run(RESERVE_SCRIPT_CLIENTS, raw_requests),
        )
    )
    return results


async def _hold(port: int, holds: int) -> tuple[int, int, int]:
    """Redis used_memory before, with ``holds`` live holds and their events, and after
    the events are trimmed (as the flusher does once they are durable)."""
    url = f"redis://{HOST}:{port}/0"
    engine = AsyncEngine.from_url(url, EngineConfig(prefix=PREFIX, partitions=1))
    async with engine:
        client = engine.client
        await client.execute_command("MEMORY", "PURGE")
        before = int((await client.info("memory"))["used_memory"])
        for start in range(0, holds, 500):
            await asyncio.gather(
                *(
                    engine.reserve([(SKU, 1)], idempotency_key=f"m{i}", ttl_seconds=3600)
                    for i in range(start, min(holds, start + 500))
                )
            )
        with_events = int((await client.info("memory"))["used_memory"])
        await client.xtrim(engine.keys.events(0), maxlen=0)
        trimmed = int((await client.info("memory"))["used_memory"])
    return before, with_events, trimmed


def memory(port: int, settings: Settings) -> list[str]:
    """Bytes per live hold (hold entries, reservation part, expiry index, idempotency
    record) and per waiting event, from used_memory around ``holds`` reserves."""
    holds = MEMORY_HOLDS_QUICK if settings.quick else MEMORY_HOLDS
    _fresh_store(port).close()
    before, with_events, trimmed = asyncio.run(_hold(port, holds))
    per_hold = (trimmed - before) / holds
    per_event = (with_events - trimmed) / holds  # one 'reserved' event per one-line hold
    million = per_hold * 1_000_000 / 2**20
    return [
        f"memory: {holds:,} live holds on one SKU, one line each",
        f"  bytes per live hold    {per_hold:8.1f}  (hold entries, part, expiry, idempotency)",
        f"  bytes per waiting event {per_event:7.1f}  (the stream entry, until flushed)",
        f"  1,000,000 live holds on one SKU: {million:,.0f} MiB of Redis memory"
        f" (+ {per_event * 1_000_000 / 2**20:,.0f} MiB while their events wait);"
        f" {'within' if million <= MILLION_HOLDS_BOUND_MIB else 'ABOVE'} the stated bound of"
        f" {MILLION_HOLDS_BOUND_MIB:,} MiB",
    ]


def run(settings: Settings) -> tuple[list[Comparison], list[str]]:
    with RedisServer() as server:
        comparisons = script_cost(server.port, settings)
        lines = memory(server.port, settings)
    for line in lines:
        print(line, flush=True)
    return comparisons, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    comparisons, lines = run(settings_from(parser.parse_args()))
    print("\n=== summary")
    for comparison in comparisons:
        print(comparison.summary())
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
