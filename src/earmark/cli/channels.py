"""``earmark channel set | show | sku set | sku remove | allocate | deallocate |
stock``: per-channel buffers and allocations (docs/channels.md)."""

from __future__ import annotations

import argparse
from typing import Any

from earmark.cli.common import NEEDS, Subparsers, add_action, add_location, add_who, who


def add_channel(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "channel",
        help="channels: buffers, SKU overrides, allocations, a channel's view of a SKU",
        description="Channels: what a sales channel may reserve, decided in the reserve "
        "script: a buffer kept back from it (a default and SKU overrides) and units "
        "ring-fenced for it (allocations). " + NEEDS,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (add_channel_set, add_channel_show, add_channel_sku, add_channel_allocate):
        add(actions)
    add_channel_deallocate(actions)
    add_channel_stock(actions)


def add_rule(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--units", type=int, default=0, dest="buffer_units", help="units kept back (default: 0)"
    )
    parser.add_argument(
        "--percent",
        type=int,
        default=0,
        dest="buffer_percent",
        help="percent of available kept back, rounded up (default: 0)",
    )
    parser.add_argument(
        "--floor",
        type=int,
        default=0,
        help="at or below this many available the channel sees 0 (default: 0)",
    )


def rule(a: argparse.Namespace) -> dict[str, Any]:
    return {"buffer_units": a.buffer_units, "buffer_percent": a.buffer_percent, "floor": a.floor}


def add_channel_set(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "channel set",
        "set a channel's default buffer",
        "CHANNEL sees max(0, available - max(--units, ceil(available * --percent / 100))), "
        "and 0 at or below --floor, for every SKU without an override; prints its settings.",
        lambda engine, a: engine.set_channel(a.channel, **rule(a), **who(a)),
    )
    parser.add_argument("channel", metavar="CHANNEL")
    add_rule(parser)
    add_who(parser)


def add_channel_show(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "channel show",
        "a channel's default buffer and SKU overrides",
        "Print CHANNEL's default rule (null: plain availability) and its overrides.",
        lambda engine, a: engine.channel(a.channel),
    )
    parser.add_argument("channel", metavar="CHANNEL")


def add_channel_sku(actions: Subparsers) -> None:
    parser = actions.add_parser(
        "sku",
        help="a channel's buffer for one SKU: set, remove",
        description="An override of CHANNEL's default for one SKU. " + NEEDS,
    )
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    set_ = add_action(
        steps,
        "channel sku set",
        "set a channel's buffer for one SKU",
        "The rule CHANNEL uses for SKU instead of its default.",
        lambda engine, a: engine.set_channel_sku(a.channel, a.sku, **rule(a), **who(a)),
    )
    remove = add_action(
        steps,
        "channel sku remove",
        "remove a channel's override of one SKU",
        "SKU falls back to CHANNEL's default; 'removed' says whether there was one.",
        lambda engine, a: engine.remove_channel_sku(a.channel, a.sku, **who(a)),
    )
    for step in (set_, remove):
        step.add_argument("channel", metavar="CHANNEL")
        step.add_argument("sku", metavar="SKU")
    add_rule(set_)
    add_who(set_)
    add_who(remove)


def add_channel_allocate(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "channel allocate",
        "ring-fence units of a SKU for a channel, or give them back",
        "Move QTY units of SKU at --location into CHANNEL's allocation (QTY > 0) or back "
        "to the shared pool (QTY < 0: 'allocate web TEE -2'). Only "
        "CHANNEL may reserve allocated units; its reserves draw them down first.",
        lambda engine, a: engine.allocate(a.channel, a.sku, a.location, qty=a.qty, **who(a)),
    )
    parser.add_argument("channel", metavar="CHANNEL")
    parser.add_argument("sku", metavar="SKU")
    parser.add_argument("qty", metavar="QTY", type=int)
    add_location(parser)
    add_who(parser)


def add_channel_deallocate(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "channel deallocate",
        "give a channel's whole allocation of a SKU back",
        "Every unit CHANNEL holds allocated of SKU at --location goes back to the shared pool.",
        lambda engine, a: engine.deallocate(a.channel, a.sku, a.location, **who(a)),
    )
    parser.add_argument("channel", metavar="CHANNEL")
    parser.add_argument("sku", metavar="SKU")
    add_location(parser)
    add_who(parser)


def add_channel_stock(actions: Subparsers) -> None:
    parser = add_action(
        actions,
        "channel stock",
        "a SKU as a channel sees it",
        "Print SKU with 'available' as CHANNEL may reserve it, beside the unbuffered figure "
        "and CHANNEL's allocation, per location.",
        lambda engine, a: engine.channel_stock(a.channel, a.sku),
    )
    parser.add_argument("channel", metavar="CHANNEL")
    parser.add_argument("sku", metavar="SKU")
