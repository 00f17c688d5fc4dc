"""``earmark reconcile FILE.csv``: external counts against the durable record, streamed.

The file is read line by line and compared in chunks of ``RECONCILIATION_CHUNK_LINES``,
so memory stays bounded whatever its size; a progress bar goes to stderr (by bytes
read). The report is printed as a table; the exit code is 1 when cases were opened, so
it can run from cron (docs/reconciliation.md).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import IO

from earmark import limits
from earmark.cli.common import Subparsers, default_actor, started_engine, table
from earmark.durable.reconciliation import CountLine, ReconciliationService
from earmark.errors import InvalidReconciliation
from earmark.models import ReconciliationReport
from earmark.settings import Settings
from earmark.store.ledger import open_ledger
from earmark.store.pages import ms_since

BAR_WIDTH = 30
CASES_SHOWN_MAX = 50


def add_reconcile(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "reconcile",
        help="compare a CSV of external counts with the durable record as of when they were taken",
        description="Compare external counts (a CSV with a header row: sku, qty and, "
        "optionally, location) with on_hand as the durable record had it at --counted-at. "
        "A line over --threshold-units OR --threshold-percent of the expected count (a "
        "zero expected count with a non-zero one always) opens a discrepancy case. Any "
        "file size: it is streamed in chunks. Exit 1 when cases were opened. Needs "
        "EARMARK_REDIS_URL and EARMARK_DATABASE_URL.",
    )
    parser.add_argument("file", help="the CSV file ('-': standard input)")
    parser.add_argument("--source", required=True, help="who counted, e.g. 3pl-east")
    parser.add_argument(
        "--counted-at", required=True, help="when they counted (RFC 3339, with offset)"
    )
    parser.add_argument("--threshold-units", type=int, default=None)
    parser.add_argument("--threshold-percent", type=float, default=None)
    parser.add_argument("--actor", default=None, help="recorded as the creator (default: you)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_reconcile)


def counted_at_ms(text: str) -> int:
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidReconciliation(
            f"--counted-at {text!r} is not RFC 3339", field="counted_at"
        ) from error
    if at.tzinfo is None:
        raise InvalidReconciliation("--counted-at needs an offset (e.g. Z)", field="counted_at")
    ms = ms_since(at)
    return ms - 1 if at.microsecond % 1000 else ms  # at or before the instant


class Progress:
    """A bar on stderr by bytes read of ``total`` (0: unknown, lines only)."""

    def __init__(self, total: int, shown: bool) -> None:
        self.total, self.shown, self.read = total, shown, 0

    def __call__(self, lines: int) -> None:
        if not self.shown:
            return
        if self.total:
            done = min(1.0, self.read / self.total)
            bar = "#" * round(done * BAR_WIDTH)
            sys.stderr.write(f"\r[{bar:<{BAR_WIDTH}}] {done:4.0%} {lines:,} lines")
        else:
            sys.stderr.write(f"\r{lines:,} lines")
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _decoded(raw: IO[bytes], progress: Progress) -> Iterator[str]:
    for line in raw:
        progress.read += len(line)
        yield line.decode("utf-8-sig" if progress.read == len(line) else "utf-8")


async def count_lines(raw: IO[bytes], progress: Progress) -> AsyncIterator[CountLine]:
    """The CSV's lines, one at a time (nothing kept)."""
    reader = csv.DictReader(_decoded(raw, progress))
    missing = {"sku", "qty"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidReconciliation(
            f"the CSV header lacks {', '.join(sorted(missing))}", field="file"
        )
    for row in reader:
        text = (row.get("qty") or "").strip()
        qty: object = int(text) if text.lstrip("-").isdigit() else text
        location = (row.get("location") or "").strip() or limits.DEFAULT_LOCATION
        yield CountLine((row.get("sku") or "").strip(), location, qty)


def report_lines(report: ReconciliationReport) -> list[str]:
    out = [
        f"reconciliation {report.id} of {report.source} as of {report.counted_at.isoformat()}: "
        f"{report.lines} lines, {report.matched} matched, {report.discrepancies} discrepancies, "
        f"{report.not_counted} known but not counted"
    ]
    if report.cases:
        rows = [
            (c.id, c.sku, c.location, c.expected, c.counted, c.difference, c.due_at.isoformat())
            for c in report.cases[:CASES_SHOWN_MAX]
        ]
        out += table(("CASE", "SKU", "LOCATION", "EXPECTED", "COUNTED", "DIFF", "DUE"), rows)
        if report.discrepancies > len(rows):
            out.append(f"... and {report.discrepancies - len(rows)} more: GET /v1/discrepancies")
    if report.not_counted_skus:
        shown = ", ".join(f"{p.sku}@{p.location}" for p in report.not_counted_skus[:20])
        more = report.not_counted - min(20, len(report.not_counted_skus))
        out.append(f"not counted: {shown}" + (f" and {more} more" if more > 0 else ""))
    return out


async def _reconcile(
    args: argparse.Namespace, settings: Settings, raw: IO[bytes], size: int
) -> ReconciliationReport:
    progress = Progress(size, not args.no_progress)
    ledger = open_ledger(settings.database_url)
    try:
        await ledger.migrate()
        async with started_engine(settings, "reconcile") as engine:
            service = ReconciliationService(
                engine, ledger, sla_hours=settings.discrepancy_sla_hours
            )
            report = await service.reconcile(
                args.source,
                counted_at_ms(args.counted_at),
                count_lines(raw, progress),
                threshold_units=args.threshold_units,
                threshold_percent=args.threshold_percent,
                actor=args.actor or default_actor(),
                progress=progress,
            )
    finally:
        progress.done()
        await ledger.close()
    return report


def run_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    if args.file == "-":
        report = asyncio.run(_reconcile(args, settings, sys.stdin.buffer, 0))
    else:
        with open(args.file, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            report = asyncio.run(_reconcile(args, settings, raw, size))
    print("\n".join(report_lines(report)))
    return 1 if report.discrepancies else 0
