"""Drops after a rebuild: their rules, their SKUs and what each customer bought.

A drop lives in its SKUs' partition (``lua/includes/drops.lua``), which a rebuild
otherwise leaves empty: the drop's SKUs would then sell as plain SKUs, with no customer
required, no opening time and no limit. The record keeps every rule change as an event
with no deltas (``drop_created``, ``drop_changed``, one per SKU, carrying the drop id and
its rules) and every sale of a drop's hold as a ``committed`` event naming the customer
and the drop. ``recorded_drops`` folds those, in event order, into each drop's last
rules and each customer's committed units; ``restore_drops`` writes them back with
plain commands (no event: nothing changed), before the stock restore stamps the
partitions' markers, so no drop SKU is sold between the two.

What is not restored, as with holds: live holds and offers (gone with the holds, so
their units are back in the customers' allowance), the waitlist (customers join again)
and the rate counters. The opening seed was never written outside Redis, so that it
cannot be read before the opening; a drop restored over a lost Redis draws a new one,
and ``GET /v1/drops/{id}`` publishes the new seed's SHA-256 (docs/drops.md, "Rebuild").
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from earmark.engine.steps import Op, Pipeline
from earmark.keys import Keys
from earmark.store.ledger import Ledger, PageQuery, every_event
from earmark.store.pages import PAGE_LIMIT_MAX

DROP_EVENTS = ("drop_created", "drop_changed")
SALE_EVENTS = ("committed",)
WRITES_PER_PIPELINE_MAX = 500


@dataclass
class RecordedDrop:
    """One drop as the record knows it."""

    partition: int
    skus: list[str] = field(default_factory=list)
    rules: dict[str, Any] = field(default_factory=dict)
    created_at_ms: int = 0
    updated_at_ms: int = 0
    actor: str = ""
    # customer -> reservation id -> (sku, location) -> units committed of the drop's SKUs
    sales: dict[str, dict[str, dict[tuple[str, str], int]]] = field(default_factory=dict)

    def used(self, customer: str) -> int:
        return sum(sum(lines.values()) for lines in self.sales.get(customer, {}).values())


async def recorded_drops(ledger: Ledger) -> dict[str, RecordedDrop]:
    """Every drop's last rules and each customer's committed units, by drop id."""
    drops: dict[str, RecordedDrop] = {}
    async for event in every_event(ledger, PageQuery(types=DROP_EVENTS, limit=PAGE_LIMIT_MAX)):
        drop_id = event.flags["drop"]
        drop = drops.get(drop_id)
        if drop is None:
            drop = drops[drop_id] = RecordedDrop(event.partition)
            drop.created_at_ms = event.occurred_at_ms
        if event.type == "drop_created" and event.sku not in drop.skus:
            drop.skus.append(event.sku)
        drop.rules = orjson.loads(event.flags["rules"])
        drop.updated_at_ms, drop.actor = event.occurred_at_ms, event.actor
    if not drops:
        return drops  # no drop: the sales need not be read
    async for event in every_event(ledger, PageQuery(types=SALE_EVENTS, limit=PAGE_LIMIT_MAX)):
        sold_in = drops.get(event.flags.get("drop", ""))
        customer = event.flags.get("customer", "")
        if sold_in is None or not customer or event.sku not in sold_in.skus:
            continue  # not a drop's hold, or a line of the cart outside the drop
        lines = sold_in.sales.setdefault(customer, {}).setdefault(str(event.reservation_id), {})
        lines[(event.sku, event.location)] = event.qty  # once per line, however often seen
    return drops


def restore_drops(keys: Keys, drops: dict[str, RecordedDrop]) -> Op[int]:
    """Writes ``drops`` back: rules, index and each customer's committed entries, with
    the customers at the limit; a seed already in Redis (a forced rebuild) is kept.
    Returns how many drops."""
    commands: list[tuple[Any, ...]] = []
    for drop_id, drop in sorted(drops.items()):
        p, rules = drop.partition, drop.rules
        key = keys.drop(p, drop_id)
        commands.append(("HSETNX", key, "seed", secrets.token_hex(16)))
        commands.append(
            (
                "HSET",
                key,
                *("skus", orjson.dumps(drop.skus).decode(), "created_at", drop.created_at_ms),
                *("opens_at", rules["opens_at"], "closes_at", _field(rules.get("closes_at"))),
                *("limit", _field(rules.get("limit")), "hold_ttl_ms", rules["hold_ttl_ms"]),
                *("waitlist", "1" if rules.get("waitlist") else "0"),
                *("offer_ttl_ms", rules["offer_ttl_ms"]),
                *("updated_at", drop.updated_at_ms, "actor", drop.actor),
            )
        )
        commands += [("HSET", keys.drop_index(p), sku, drop_id) for sku in drop.skus]
        limit = rules.get("limit")
        at_limit = keys.drop_at_limit(p, drop_id)
        commands.append(("DEL", at_limit))
        for customer, sales in sorted(drop.sales.items()):
            entries = keys.drop_customer(p, drop_id, customer)
            units = [(rid, f"c:{sum(lines.values())}") for rid, lines in sorted(sales.items())]
            commands += [("DEL", entries), ("HSET", entries, *(x for u in units for x in u))]
            if limit is not None and drop.used(customer) >= int(limit):
                commands.append(("SADD", at_limit, customer))
    for start in range(0, len(commands), WRITES_PER_PIPELINE_MAX):
        yield Pipeline(commands[start : start + WRITES_PER_PIPELINE_MAX])
    return len(drops)


def _field(value: Any) -> str:
    """A rule that may be absent, as the rules hash keeps it ('' none)."""
    return "" if value is None else str(value)
