"""``earmark sweep``: expire overdue holds once, or in a loop."""

from __future__ import annotations

import argparse
import asyncio
import sys

from earmark.cli.common import (
    Subparsers,
    started_engine,
    sync_engine,
)
from earmark.engine.sweeper import SWEEP_ERRORS, run_sweeper
from earmark.settings import Settings


def add_sweep(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="expire overdue holds once (or --loop)",
        description="Expire overdue holds and resolve stale multi-partition pins: one pass, "
        "or with --loop one pass every --interval seconds until interrupted. `serve` "
        "already runs this in-process.",
    )
    parser.add_argument("--loop", action="store_true", help="keep sweeping until interrupted")
    parser.add_argument(
        "--interval", type=float, help="seconds between passes (EARMARK_SWEEP_INTERVAL_SECONDS)"
    )
    parser.set_defaults(handler=run_sweep)


async def _sweep_forever(settings: Settings, interval: float) -> None:
    async with started_engine(settings, "sweep") as engine:
        await run_sweeper(engine, interval)


def run_sweep(args: argparse.Namespace, settings: Settings) -> int:
    if args.loop:
        interval = args.interval or settings.sweep_interval_seconds
        try:
            asyncio.run(_sweep_forever(settings, interval))
        except KeyboardInterrupt:
            return 0
        return 0
    with sync_engine(settings, "sweep") as engine:
        engine.start(initialize=False)
        try:
            report = engine.sweep()
        except SWEEP_ERRORS as error:
            print(f"earmark sweep: the pass failed: {error}", file=sys.stderr)
            return 1
    print(
        f"expired {report.expired} holds, resolved {report.pins_resolved} pins, "
        f"made {report.offered} waitlist offers"
    )
    return 0
