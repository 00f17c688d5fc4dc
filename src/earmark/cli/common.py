"""What every ``earmark`` subcommand shares: the parser types, the engine on the
configured Redis (or the clear exit-2 message when the store is embedded), and the text
table the commands print."""

from __future__ import annotations

import argparse
import getpass
import shlex
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeAlias

from pydantic import BaseModel

from earmark import limits
from earmark.engine.async_engine import AsyncEngine
from earmark.engine.sync_engine import Engine
from earmark.errors import EarmarkError, InvalidRequest, StoreNotReady
from earmark.models import (
    CountResult,
    Line,
    PurchaseOrder,
    ReturnReceipt,
    SkuStock,
    StockLevel,
    Transfer,
)
from earmark.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

Operation = Callable[[Engine, argparse.Namespace], BaseModel]


class NeedsRedis(EarmarkError):
    """The command needs a Redis (EARMARK_REDIS_URL): the embedded store lives inside the
    server process."""

    code = "needs_redis"
    http_status = 500
    title = "The command needs EARMARK_REDIS_URL"


def require_redis(settings: Settings, command: str) -> str:
    if settings.redis_url is None:
        raise NeedsRedis(
            f"`earmark {command}` needs EARMARK_REDIS_URL: without it the store is embedded "
            "in the `earmark serve` process and no other process can reach it."
        )
    return settings.redis_url


@asynccontextmanager
async def started_engine(settings: Settings, command: str) -> AsyncIterator[AsyncEngine]:
    """An asyncio engine on the configured Redis, started without initializing (nothing
    is written: a Redis that lost its data stays fenced), closed on exit."""
    url = require_redis(settings, command)
    engine = AsyncEngine.from_url(url, settings.engine_config(), cluster=settings.redis_cluster)
    try:
        await engine.start(initialize=False)
        yield engine
    finally:
        await engine.close()


@contextmanager
def sync_engine(settings: Settings, command: str) -> Iterator[Engine]:
    """An engine on the configured Redis, closed on exit. Not started: plain commands need
    no scripts, and ``start(initialize=False)`` reads the partitions without writing."""
    url = require_redis(settings, command)
    engine = Engine.from_url(url, settings.engine_config(), cluster=settings.redis_cluster)
    try:
        yield engine
    finally:
        engine.close()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned text, right-aligned numbers (``int`` cells)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    # A column of numbers (blank cells allowed, e.g. a total's) is right-aligned.
    numeric = [
        all(isinstance(row[i], int) or row[i] == "" for row in rows) for i in range(len(headers))
    ]

    def fmt(row: list[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [fmt(row) for row in cells]


# Errors that mean the command could not run (exit 2, from ``cli.main``), not a refusal.
NOT_REFUSALS = (InvalidRequest, StoreNotReady, NeedsRedis)
LEVEL_COLUMNS = (
    *("on_hand", "reserved", "committed", "available", "in_transit", "returned"),
    *("damaged", "written_off", "inbound"),
)
REASON_SHOWN_MAX = 40
NEEDS = "Needs EARMARK_REDIS_URL."


def default_actor() -> str:
    """The OS user (``cli`` when there is none): the actor recorded on the events."""
    try:
        return getpass.getuser() or "cli"
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "cli"


# -- running an operation --------------------------------------------------------------


def idempotency_key_for(args: argparse.Namespace, command: str) -> str:
    """The key of a write: ``--idempotency-key``, else one derived from ``--reference``
    (the same delivery note booked twice is one receipt), else a new one. The key is
    printed on stderr, so a command that failed or timed out can be repeated with it
    and cannot count twice."""
    given: str | None = args.idempotency_key
    if given is not None:
        return given
    reference = str(getattr(args, "reference", "") or "")
    key = f"{command} {reference}" if reference else f"cli-{uuid.uuid4().hex}"
    source = "from --reference" if reference else "generated"
    print(
        f"earmark {command}: idempotency key {key!r} ({source}); to repeat this command "
        f"safely, pass --idempotency-key {shlex.quote(key)}",
        file=sys.stderr,
    )
    return key


def on_engine(command: str, run: Operation) -> Handler:
    """A handler: ``run`` on the configured Redis, then its result printed. A refusal by
    the stock's state is exit 1; bad input and an unready store go on to ``main`` (2).
    A write (a command with ``--idempotency-key``) always runs with a key."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        if hasattr(args, "idempotency_key"):
            args.idempotency_key = idempotency_key_for(args, command)
        with sync_engine(settings, command) as engine:
            engine.start(initialize=False)
            try:
                result = run(engine, args)
            except EarmarkError as error:
                if isinstance(error, NOT_REFUSALS):
                    raise
                print(f"earmark {command}: {error.code}: {error}", file=sys.stderr)
                return 1
        if args.json:
            print(result.model_dump_json(indent=2))
        else:  # a command group may print its own results (``describe_result``)
            print("\n".join(getattr(args, "describe_result", describe)(result)))
        return 0

    return handler


def who(args: argparse.Namespace) -> dict[str, Any]:
    return {"actor": args.actor, "idempotency_key": args.idempotency_key}


# -- printing results ----------------------------------------------------------------------


def levels_table(levels: list[StockLevel], total: SkuStock | None = None) -> list[str]:
    headers = ("SKU", "LOCATION", *(c.upper() for c in LEVEL_COLUMNS), "VERSION")
    rows: list[tuple[object, ...]] = [
        (x.sku, x.location, *(getattr(x, c) for c in LEVEL_COLUMNS), x.version) for x in levels
    ]
    if total is not None:
        rows.append((total.sku, "(all)", *(getattr(total, c) for c in LEVEL_COLUMNS), ""))
    return table(headers, rows)


def describe_transfer(t: Transfer) -> list[str]:
    line = f"transfer {t.id}: {t.qty_shipped} {t.sku} from {t.from_location} to {t.to_location}"
    if t.status == "received":
        return [f"{line}, received {t.qty_received} (discrepancy {t.discrepancy:+d})"]
    return [f"{line}, in transit"]


def describe_count(c: CountResult) -> list[str]:
    lines = [f"counted {c.counted}, expected {c.expected}: on_hand {c.delta:+d}"]
    if c.exposure:
        lines.append(f"OVERSELL EXPOSURE: {c.exposure} units promised beyond on hand")
    return lines + levels_table([c.stock])


def describe_return(r: ReturnReceipt) -> list[str]:
    head = f"{r.qty} {r.sku} back from {r.reservation_id} into returned at {r.location}"
    return [f"{head} ({r.returned} of {r.shipped} shipped have come back)"]


def describe_po(po: PurchaseOrder) -> list[str]:
    head = [
        f"purchase order {po.id}: {po.status}",
        f"supplier {po.supplier}, expected {po.expected_date}"
        + (f", reference {po.reference}" if po.reference else ""),
    ]
    rows = [(x.sku, x.location, x.expected, x.received, x.outstanding) for x in po.lines]
    return head + table(("SKU", "LOCATION", "EXPECTED", "RECEIVED", "OUTSTANDING"), rows)


def describe(result: BaseModel) -> list[str]:
    if isinstance(result, StockLevel):
        return levels_table([result])
    if isinstance(result, SkuStock):
        return levels_table(result.locations, result)
    if isinstance(result, Transfer):
        return describe_transfer(result)
    if isinstance(result, CountResult):
        return describe_count(result)
    if isinstance(result, ReturnReceipt):
        return describe_return(result) + levels_table([result.stock])
    if isinstance(result, PurchaseOrder):
        return describe_po(result)
    return [result.model_dump_json()]


# -- common arguments ------------------------------------------------------------------


def add_action(
    actions: Subparsers, command: str, summary: str, description: str, run: Operation
) -> argparse.ArgumentParser:
    """``command`` is ``<group> <action>`` (``stock damage``)."""
    name = command.split()[-1]
    parser = actions.add_parser(name, help=summary, description=f"{description} {NEEDS}")
    parser.set_defaults(handler=on_engine(command, run))
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def add_who(parser: argparse.ArgumentParser, *, reason: str = "", required: bool = False) -> None:
    parser.add_argument(
        "--actor",
        default=default_actor(),
        help="who does it, recorded on the events (default: the OS user, %(default)s)",
    )
    if reason:
        parser.add_argument("--reason", required=required, default="", help=reason)
    parser.add_argument(
        "--idempotency-key",
        help="repeating the command with the same key returns the first result instead of "
        "doing it twice (default: derived from --reference where the command has one, "
        "else generated; printed on stderr either way)",
    )


def add_location(parser: argparse.ArgumentParser, what: str = "the stock location") -> None:
    parser.add_argument(
        "--location", default=limits.DEFAULT_LOCATION, help=f"{what} (default: %(default)s)"
    )


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="record a decrease below available anyway (an oversell exposure; every "
        "reserve is refused until receipts cover it)",
    )


def parse_line(text: str) -> Line:
    """``SKU:QTY`` or ``SKU:QTY@LOCATION`` (SKUs and locations hold neither ':' nor '@')."""
    item, _, location = text.partition("@")
    sku, _, qty = item.partition(":")
    try:
        return Line(sku=sku, qty=int(qty), location=location or limits.DEFAULT_LOCATION)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SKU:QTY or SKU:QTY@LOCATION (e.g. TEE-M:10@berlin)"
        ) from None


def add_lines(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--line",
        dest="lines",
        action="append",
        required=True,
        type=parse_line,
        metavar="SKU:QTY[@LOCATION]",
        help=f"{what}; repeat for each line (at most {limits.LINES_MAX}; location default: "
        f"{limits.DEFAULT_LOCATION})",
    )
