"""Runs every benchmark and writes docs/benchmarks.md and docs/benchmarks.png.

    python -m loadtests.bench.run_all            # about 6-8 minutes on 2 cores
    python -m loadtests.bench.run_all --quick    # about a minute: a smoke run

One benchmark's missing server binary (say, no PostgreSQL) skips that benchmark and
says so in the report; any other failure stops the run, since a report with figures
missing for an unknown reason would mislead.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support.servers import ServerUnavailable

from loadtests.bench import (
    cluster,
    engine,
    http,
    instructions,
    postgres_rowlock,
    replicas,
    report,
    scaleout,
    scriptcost,
)
from loadtests.bench.common import (
    Comparison,
    Settings,
    add_common_args,
    command_line,
    machine,
    settings_from,
    today,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARKDOWN, CHART = "benchmarks.md", "benchmarks.png"
BENCHMARKS: tuple[tuple[str, Callable[[Settings], list[Comparison]]], ...] = (
    ("http", http.run),
    ("engine", engine.run),
    ("postgres_rowlock", postgres_rowlock.run),
    ("cluster", cluster.run),
    ("replicas", replicas.run),
)


SCALEOUT_RESERVATIONS, SCALEOUT_RESERVATIONS_QUICK = 20_000, 5_000
INSTRUCTION_CALLS_QUICK = 500


def run_every(settings: Settings) -> tuple[list[Comparison], list[str], list[str]]:
    """Every comparison, what was skipped, and the lines of the memory and scale-out
    measurements."""
    comparisons: list[Comparison] = []
    skipped: list[str] = []
    print("\n##### scriptcost", flush=True)
    costs, extra = scriptcost.run(settings)
    comparisons += costs
    print("\n##### instructions (callgrind)", flush=True)
    calls = INSTRUCTION_CALLS_QUICK if settings.quick else instructions.CALLS_DEFAULT
    for line in instructions.report(instructions.measure(calls)):
        print(line, flush=True)
        extra.append(line)
    print("\n##### scaleout", flush=True)
    total = SCALEOUT_RESERVATIONS_QUICK if settings.quick else SCALEOUT_RESERVATIONS
    for line in scaleout.measure(total, engine.HEADLINE_CONCURRENCY):
        print(line, flush=True)
        extra.append(line)
    for name, run in BENCHMARKS:
        print(f"\n##### {name}", flush=True)
        try:
            comparisons += run(settings)
        except ServerUnavailable as missing:
            print(f"##### {name} SKIPPED: {missing}", flush=True)
            skipped.append(f"{name}: {str(missing).splitlines()[0]}")
    return comparisons, skipped, extra


def write_report(
    docs: Path,
    settings: Settings,
    comparisons: list[Comparison],
    skipped: list[str],
    elapsed: float,
    extra: Sequence[str] = (),
) -> None:
    """The markdown always; the chart when one of its series ran."""
    header = {
        "command": command_line(),
        "date": today(),
        "machine": machine(),
        "elapsed": elapsed,
        "rounds": settings.rounds,
        "seconds": settings.seconds,
    }
    charted = [c for c in comparisons if c.group in {row[0] for row in report.CHART_ROWS}]
    if charted:
        title = f"reservations per second against callers ({header['machine']}, {header['date']})"
        report.write_chart(docs / CHART, charted, title)
    report.write_markdown(docs / MARKDOWN, comparisons, header, CHART, skipped, extra)
    print(f"wrote {docs / MARKDOWN}" + (f" and {docs / CHART}" if charted else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--docs", type=Path, default=DOCS, help="where to write the report")
    args = parser.parse_args()
    settings = settings_from(args)
    started = time.monotonic()
    comparisons, skipped, extra = run_every(settings)
    elapsed = time.monotonic() - started
    print(f"\n===== summary ({elapsed:.0f} s)")
    for comparison in comparisons:
        print(comparison.summary())
    for line in skipped:
        print(f"SKIPPED {line}")
    for line in extra:
        print(line)
    write_report(args.docs, settings, comparisons, skipped, elapsed, extra)


if __name__ == "__main__":
    main()
