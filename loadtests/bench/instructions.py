"""Script cost in instructions: what Redis executes per call, counted by callgrind.

Wall-clock rates on a shared 2-core machine move with whatever else runs; instruction
counts do not (the same binary, inputs and calls give the same total). This runs a
throwaway redis-server under ``valgrind --tool=callgrind`` and, for each script, zeroes
the counters, lets ``redis-benchmark`` send the same one-cart call ``--calls`` times
(the keys and arguments of ``loadtests.bench.scriptcost``: a fresh reservation id and
idempotency record per call, from an emptied store), dumps the counters and divides the
server's instructions by the calls:

* earmark's reserve as the engine sends it (FCALL of its function library);
* the same script as a plain script (EVALSHA), which is how it ran before;
* the frozen copy of reserve.lua from before the hot-path work (EVALSHA);
* reserve.lua's own commands for the same cart and none of its logic
  (loadtests/frozen/reserve_commands_only.lua, EVALSHA): what the stored contract alone
  costs, the floor under any reserve that keeps it;
* the 5-line decrement (EVALSHA), the floor;
* reserves sent one at a time by ``AsyncEngine`` of a plain SKU and of a drop's SKU
  (limit 2, waitlist on, a new customer per cart): what a drop's rules cost Redis per
  reserve (the drop row of ``loadtests.bench.engine`` measures it in reserves/s).

It prints each figure and the ratios the script-cost target names (frozen / today: the
target is >= 3; today / decrement: the target is <= 4), and how today's cost splits
between the commands the contract needs and the script's own logic. The counts include
the server's network and command handling, the same on every row.

    python -m loadtests.bench.instructions [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from tests.support.servers import free_port

from earmark import AsyncEngine, EngineConfig
from earmark.engine.scripts import load_scripts
from loadtests.bench.redisbench import RawTarget
from loadtests.bench.scriptcost import ReserveScriptTarget

HOST = "127.0.0.1"
CLIENTS = 4
CALLS_DEFAULT = 2_000
COMMANDS_ROW = "reserve's commands alone (EVALSHA)"
ENGINE_CALLS_MAX = 500  # each is a round trip from Python to a server under callgrind
START_TIMEOUT_S = 60.0
DUMP_WAIT_S = 30.0


@contextmanager
def counted_redis(folder: Path) -> Iterator[tuple[int, int]]:
    """A redis-server under callgrind: (port, pid); stopped on exit."""
    valgrind = shutil.which("valgrind")
    server = shutil.which("redis-server")
    if valgrind is None or server is None:
        raise SystemExit("valgrind and redis-server are needed (apt-get install valgrind)")
    port = free_port()
    out = folder / "callgrind.out.%p"
    proc = subprocess.Popen(
        [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", server,
         "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with redis.Redis(host=HOST, port=port) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("redis-server under callgrind did not start") from None
                time.sleep(0.5)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _dumped_total(folder: Path, pid: int, before: set[str]) -> int:
    """The instruction total of the dump callgrind_control just asked for."""
    deadline = time.monotonic() + DUMP_WAIT_S
    while time.monotonic() < deadline:
        fresh = set(glob.glob(str(folder / f"callgrind.out.{pid}.*"))) - before
        for name in fresh:
            for line in Path(name).read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise SystemExit("callgrind wrote no dump")


def instructions_per_call(folder: Path, pid: int, command: list[str], calls: int) -> float:
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    subprocess.run(command, check=True, capture_output=True, timeout=3600)
    before = set(glob.glob(str(folder / f"callgrind.out.{pid}.*")))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    return _dumped_total(folder, pid, before) / calls


def commands(port: int, calls: int) -> dict[str, list[str]]:
    """Each row's redis-benchmark command, its store prepared (an emptied store per row
    is prepared again right before the row runs: see ``measure``)."""
    fcall = ReserveScriptTarget(port, "reserve", CLIENTS).command(calls)
    at = fcall.index("FCALL")
    with redis.Redis(host=HOST, port=port) as client:
        sha = str(client.script_load(load_scripts()["reserve"].source))
    plain = [*fcall[:at], "EVALSHA", sha, *fcall[at + 2 :]]
    return {"reserve (FCALL, today)": fcall, "reserve (EVALSHA, today's script)": plain}


def measure(calls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="earmark-callgrind-") as tmp:
        folder = Path(tmp)
        with counted_redis(folder) as (port, pid):
            counts: dict[str, float] = {}
            # Each store is set up right before its row (ReserveScriptTarget empties it).
            for label in ("reserve (FCALL, today)", "reserve (EVALSHA, today's script)"):
                command = commands(port, calls)[label]
                counts[label] = instructions_per_call(folder, pid, command, calls)
            frozen = ReserveScriptTarget(port, "frozen", CLIENTS).command(calls)
            counts["frozen reserve_v1.lua (EVALSHA)"] = instructions_per_call(
                folder, pid, frozen, calls
            )
            floor = ReserveScriptTarget(port, "commands", CLIENTS).command(calls)
            counts[COMMANDS_ROW] = instructions_per_call(folder, pid, floor, calls)
            counts |= asyncio.run(_engine_rows(port, pid, folder, min(calls, ENGINE_CALLS_MAX)))
            raw = RawTarget(port, 1, 1_000_000_000)
            counts["5-line decrement (EVALSHA)"] = instructions_per_call(
                folder, pid, raw.command(raw.reset(), CLIENTS, calls), calls
            )
    return counts


ENGINE_PLAIN_ROW = "engine reserve, plain SKU"
ENGINE_DROP_ROW = "engine reserve, drop SKU (limit, waitlist)"


async def _engine_rows(port: int, pid: int, folder: Path, calls: int) -> dict[str, float]:
    """Server instructions per reserve the engine sends, plain SKU against a drop's."""
    engine = AsyncEngine.from_url(
        f"redis://{HOST}:{port}/0", EngineConfig(prefix="ins-engine", partitions=1)
    )
    await engine.start()
    try:
        await engine.receive("PLAIN", 1_000_000, idempotency_key="plain")
        await engine.receive("DROP", 1_000_000, idempotency_key="drop")
        seconds, _ = await engine.client.time()
        opens = datetime.fromtimestamp(int(seconds), tz=UTC) - timedelta(seconds=1)
        await engine.create_drop(
            "ins", ["DROP"], opens_at=opens, per_customer_limit=2, waitlist=True
        )
        await engine.reserve([("DROP", 1)], idempotency_key="warm", customer="warm")
        counts: dict[str, float] = {}
        for label, sku in ((ENGINE_PLAIN_ROW, "PLAIN"), (ENGINE_DROP_ROW, "DROP")):
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
            for i in range(calls):
                customer = f"c{i}" if sku == "DROP" else None
                await engine.reserve([(sku, 1)], idempotency_key=f"{sku}{i}", customer=customer)
            before = set(glob.glob(str(folder / f"callgrind.out.{pid}.*")))
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
            counts[label] = _dumped_total(folder, pid, before) / calls
        return counts
    finally:
        await engine.close()


def report(counts: dict[str, float]) -> list[str]:
    today = counts["reserve (FCALL, today)"]
    lines = [f"{label:44s} {value:12,.0f} instructions per call" for label, value in counts.items()]
    frozen = counts["frozen reserve_v1.lua (EVALSHA)"]
    floor = counts["5-line decrement (EVALSHA)"]
    lines.append(f"frozen / today: {frozen / today:.2f}x fewer instructions (target >= 3)")
    lines.append(f"today / decrement: {today / floor:.1f}x the floor (target <= 4)")
    plain = counts["reserve (EVALSHA, today's script)"]
    lines.append(f"function library vs plain script: {plain / today:.2f}x")
    plain_engine, drop_engine = counts[ENGINE_PLAIN_ROW], counts[ENGINE_DROP_ROW]
    lines.append(f"a drop's rules per reserve: {drop_engine / plain_engine - 1:+.1%} instructions")
    commands = counts[COMMANDS_ROW]  # a plain script: compare with today's as one
    lines.append(
        f"as plain scripts, today's {plain:,.0f} = {commands:,.0f} ({commands / plain:.0%}) for "
        f"the commands the stored contract needs + {plain - commands:,.0f} for the script's "
        f"own logic; 3x fewer than the frozen copy would be {frozen / 3:,.0f}, "
        f"{frozen / 3 / commands:.2f}x the commands alone"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=CALLS_DEFAULT)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for line in report(measure(args.calls)):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
