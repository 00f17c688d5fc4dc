"""What every benchmark shares: samples, alternating rounds, medians and ratios.

A single absolute time from a noisy 2-core machine is not a result. A result here is
always a *comparison*: subject and baseline measured in alternating rounds of the same
run, summarised by medians, and the ratio of those medians.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure; ``--quick`` shrinks it to a ~1-minute smoke run."""

    rounds: int
    seconds: float
    quick: bool
    processes: int = 1


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 short rounds")
    parser.add_argument("--rounds", type=int, help="rounds per side (default 5, quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per round (default 3, quick 1)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes for earmark; redis-benchmark gets as many threads (default 1)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Bounded settings: a typo must not turn into an hour-long run."""
    rounds = args.rounds or (2 if args.quick else 5)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    if not 1 <= rounds <= 20 or not 0.2 <= seconds <= 30 or not 1 <= args.processes <= 8:
        raise SystemExit("need 1 <= rounds <= 20, 0.2 <= seconds <= 30, 1 <= processes <= 8")
    return Settings(rounds=rounds, seconds=seconds, quick=args.quick, processes=args.processes)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values (a side that completed nothing)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Sample:
    """One round of one side. ``ops_per_s`` counts completed calls, accepted or refused."""

    ops_per_s: float
    p50_ms: float
    p99_ms: float
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    error_examples: tuple[str, ...] = ()
    check: str = ""  # an invariant check's verdict, e.g. "oversell 0"

    def line(self) -> str:
        text = f"{self.ops_per_s:>10,.0f} ops/s  p50 {self.p50_ms:7.2f} ms"
        text += f"  p99 {self.p99_ms:7.2f} ms"
        text += f"  accepted {self.accepted:,} refused {self.refused:,}"
        if self.errors:
            text += f"  ERRORS {self.errors:,} e.g. {self.error_examples[:1]}"
        return f"{text}  {self.check}".rstrip()


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


@dataclass
class Comparison:
    """Subject and baseline samples of one benchmark, and what they add up to."""

    benchmark: str
    subject: str
    baseline: str
    command: str
    concurrency: int
    subject_samples: list[Sample] = field(default_factory=list)
    baseline_samples: list[Sample] = field(default_factory=list)
    notes: str = ""
    group: str = ""  # comparisons that form one series of the chart share a group

    def median(self, side: str, metric: str) -> float:
        samples = self.subject_samples if side == "subject" else self.baseline_samples
        return _median([float(getattr(s, metric)) for s in samples])

    @property
    def ratio(self) -> float:
        """Throughput of the subject over the baseline's (ratio of medians; > 1: faster)."""
        return self.median("subject", "ops_per_s") / self.median("baseline", "ops_per_s")

    @property
    def p99_ratio(self) -> float:
        """p99 latency of the subject over the baseline's (> 1: the subject waits longer)."""
        return self.median("subject", "p99_ms") / self.median("baseline", "p99_ms")

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.subject_samples + self.baseline_samples)

    def summary(self) -> str:
        def side(name: str, label: str) -> str:
            ops, p50, p99 = (self.median(name, m) for m in ("ops_per_s", "p50_ms", "p99_ms"))
            return f"  {label:<48} median {ops:>10,.0f} ops/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms"

        lines = [
            f"== {self.benchmark} (concurrency {self.concurrency})",
            side("subject", self.subject),
            side("baseline", self.baseline),
            f"  throughput ratio {self.ratio:.3f}   p99 ratio {self.p99_ratio:.2f}",
        ]
        if self.errors:
            lines.append(f"  ERRORS during the run: {self.errors}")
        if self.notes:
            lines.append(f"  note: {self.notes}")
        return "\n".join(lines)


def rotate_rounds(
    title: str, rounds: int, sides: Sequence[tuple[str, Callable[[], Sample]]]
) -> list[list[Sample]]:
    """Runs ``rounds`` rounds of every side, each round starting one side later than the
    one before (for two sides: AB, BA, AB, ...), so that a machine that warms up or gets
    busier during the run favours no side. Prints each sample as it comes."""
    print(f"-- {title}", flush=True)
    samples: list[list[Sample]] = [[] for _ in sides]
    for number in range(rounds):
        for offset in range(len(sides)):
            index = (number + offset) % len(sides)
            label, run = sides[index]
            samples[index].append(sample := run())
            print(f"   round {number + 1} {label[:40]:<40} {sample.line()}", flush=True)
    return samples


def alternate(
    comparison: Comparison,
    rounds: int,
    subject: Callable[[], Sample],
    baseline: Callable[[], Sample],
) -> Comparison:
    """``rotate_rounds`` of subject and baseline; returns ``comparison`` filled in."""
    title = f"{comparison.benchmark} (concurrency {comparison.concurrency})"
    sides = [(comparison.subject, subject), (comparison.baseline, baseline)]
    comparison.subject_samples, comparison.baseline_samples = rotate_rounds(title, rounds, sides)
    print(comparison.summary(), flush=True)
    return comparison


def machine() -> str:
    """What the figures were measured on: they are only comparable on the same line."""
    return f"nproc {os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    """The command that produced the figures, as one would type it."""
    module = sys.modules["__main__"].__spec__
    name = module.name if module is not None else sys.argv[0]
    return " ".join(["python -m", name, *sys.argv[1:]])
