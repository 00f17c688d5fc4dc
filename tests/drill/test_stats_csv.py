"""The drill's final stats CSV counts every request the verdict counts, also those
answered after Locust's last periodic write. Run in a child process: importing Locust
monkey-patches the standard library (gevent), which this test process must not be."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import argparse, sys
from locust import User
from locust.env import Environment
from loadtests.drill.stats_csv import write_final_stats

environment = Environment(user_classes=[User])
environment.parsed_options = argparse.Namespace(csv_prefix=sys.argv[1])
for n in (2028, 32):  # before Locust's last periodic write, then after it
    for _ in range(n):
        environment.stats.log_request("POST", "/v1/reservations", 3, 10)
    print(write_final_stats(environment), flush=True)
    input()  # the test reads the file between the two
environment.parsed_options = argparse.Namespace(csv_prefix=None)
print(write_final_stats(environment))
"""


def requests_in(path: Path, name: str) -> int:
    with path.open(encoding="utf-8") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    return int(rows[name]["Request Count"])


def test_the_final_csv_counts_the_requests_after_the_last_periodic_write(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "drill"
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(prefix)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        counts = []
        for _ in range(2):
            path = Path(child.stdout.readline().strip())
            assert path == tmp_path / "drill_stats.csv"
            counts.append((requests_in(path, "/v1/reservations"), requests_in(path, "Aggregated")))
            child.stdin.write("\n")
            child.stdin.flush()
        assert counts == [(2028, 2028), (2060, 2060)]
        assert child.stdout.readline().strip() == "None"  # no --csv: nothing written
        assert child.wait(30) == 0
    assert not list(tmp_path.glob("*.partial"))
