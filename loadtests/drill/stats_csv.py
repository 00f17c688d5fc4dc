"""The final ``<prefix>_stats.csv`` of a drill, written once its users have stopped.

Locust writes that file from a greenlet every ``CSV_STATS_INTERVAL_SEC`` (1 s) and does
not write it again at the end: the requests answered in the last interval before the
users stopped were missing from it (an embedded run's CSV said 2,028 reserves where the
verdict, counting every answer, said 2,060). The drill writes it once more from the final
stats, with the same columns, before it judges the run, so the CSV and the verdict count
the same requests.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV


def write_final_stats(environment: Environment) -> Path | None:
    """Rewrites ``<--csv prefix>_stats.csv`` from the stats as they are now (None: no
    ``--csv``). Replaced atomically: Locust's writer keeps its own handle on the old
    file, so a late periodic write cannot mix with this one."""
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None)
    if not prefix:
        return None
    target = Path(f"{prefix}_stats.csv")
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as out:
        StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(out))
    os.replace(partial, target)
    return target
