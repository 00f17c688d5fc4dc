"""The raw limit: ``redis-benchmark`` running EVALSHA of a minimal decrement script.

No Python client, no validation, no idempotency record, no hold, no event: one counter
decremented if it is above zero. That is what one Redis does for a "reservation" with
nothing around it, so earmark's ratio against it is the price of everything earmark
adds (and of a Python client). The script lives on the same throwaway Redis as earmark's.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass

import redis

from loadtests.bench.common import HOST, Sample

DECREMENT = """
-- KEYS[1]: a stock counter (units). Returns the units left after taking one, or -1 if
-- there were none (a refusal).
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left > 0 then
  return redis.call('DECR', KEYS[1])
end
return -1
"""
HOT_KEY = "raw:stock:hot"
# redis-benchmark -r N replaces __rand_int__ by a 12-digit number in [0, N).
RANDOM_KEY = "raw:stock:__rand_int__"
SET_CHUNK = 1_000
CALIBRATION_REQUESTS_MIN = 20_000
RUN_TIMEOUT_S = 120


def raw_key(index: int) -> str:
    return f"raw:stock:{index:012d}"


@dataclass(frozen=True)
class RawTarget:
    """The minimal script on one Redis, with ``skus`` counters of ``units`` each."""

    port: int
    skus: int
    units: int
    pipeline: int = 1
    threads: int = 1

    @property
    def keys(self) -> list[str]:
        return [HOT_KEY] if self.skus == 1 else [raw_key(i) for i in range(self.skus)]

    def reset(self) -> str:
        """Empties Redis (as earmark's rounds do), sets the counters, loads the script."""
        with redis.Redis(host=HOST, port=self.port) as client:
            client.flushall()
            keys = self.keys
            for start in range(0, len(keys), SET_CHUNK):
                client.mset({k: self.units for k in keys[start : start + SET_CHUNK]})
            return str(client.script_load(DECREMENT))

    def left(self) -> int:
        with redis.Redis(host=HOST, port=self.port) as client:
            keys = self.keys
            values = []
            for start in range(0, len(keys), SET_CHUNK):
                values += client.mget(keys[start : start + SET_CHUNK])
            return sum(int(v or 0) for v in values)

    def command(self, sha: str, clients: int, requests: int) -> list[str]:
        binary = shutil.which("redis-benchmark")
        if binary is None:
            raise SystemExit("redis-benchmark not found (it ships with redis-server)")
        cmd = [binary, "-h", HOST, "-p", str(self.port), "-c", str(clients)]
        cmd += ["-n", str(requests), "-P", str(self.pipeline), "--csv"]
        if self.threads > 1:
            cmd += ["--threads", str(self.threads)]
        if self.skus > 1:
            cmd += ["-r", str(self.skus)]
        return [*cmd, "EVALSHA", sha, "1", HOT_KEY if self.skus == 1 else RANDOM_KEY]

    def describe(self, clients: int) -> str:
        """The command for the report, with placeholders for what changes per run."""
        cmd = self.command("<sha>", clients, 0)
        cmd[0] = "redis-benchmark"
        cmd[cmd.index("-p") + 1], cmd[cmd.index("-n") + 1] = "<port>", "<n>"
        return " ".join(cmd)

    def run(self, clients: int, requests: int) -> Sample:
        """One redis-benchmark run on freshly reset counters; refusals are counted from the
        units actually taken, since redis-benchmark does not look at replies."""
        sha = self.reset()
        before = self.left()
        out = subprocess.run(
            self.command(sha, clients, requests),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=True,
        ).stdout
        taken = before - self.left()
        row = _csv_row(out)
        return Sample(
            ops_per_s=float(row["rps"]),
            p50_ms=float(row["p50_latency_ms"]),
            p99_ms=float(row["p99_latency_ms"]),
            accepted=taken,
            refused=requests - taken,
            check=f"oversell {max(0, taken - self.units * self.skus)}",
        )

    def requests_for(self, clients: int, seconds: float) -> int:
        """redis-benchmark has no duration option: a short calibration run sets ``-n`` so
        one round lasts about ``seconds``."""
        calibration = max(CALIBRATION_REQUESTS_MIN, clients * 200)
        rate = self.run(clients, calibration).ops_per_s
        return max(calibration, int(rate * seconds))


def _csv_row(output: str) -> dict[str, str]:
    """The result row of ``redis-benchmark --csv`` (header: test, rps, ..., p99_latency_ms)."""
    rows = list(csv.DictReader(io.StringIO(output)))
    if len(rows) != 1 or "rps" not in rows[0]:
        raise RuntimeError(f"unexpected redis-benchmark output:\n{output}")
    return rows[0]
