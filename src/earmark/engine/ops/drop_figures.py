"""Every drop's live figures, for ``/metrics`` (per-drop gauges), and the customers of a
drop at their limit (``Drop.customers_at_limit``).

Read from each partition's sku -> drop index (``keys.drop_index``) and the drops' rules,
then the reserved and committed units of each drop SKU at every location: a few
pipelines per partition, bounded by ``limits.DROPS_SCRAPED_MAX`` drops of at most
``limits.DROP_SKUS_MAX`` SKUs. Reads only; a mixin of its own beside ``DropOps``.
"""

from __future__ import annotations

from typing import Any

from earmark import limits
from earmark.engine.operation import operation
from earmark.engine.ops.base import OpsBase
from earmark.engine.replies import text
from earmark.engine.steps import Op, Pipeline
from earmark.keys import Keys
from earmark.models import DropFigures, DropSkuFigures

# A customer's entry counts while its reservation part is one of these (the rule of
# settle_customer in lua/includes/drops.lua): held needs its expiry still ahead.
COUNTING_STATUSES = ("pinned", "committed", "shipped")


def _number(raw: Any) -> int | None:
    value = None if raw is None else text(raw)
    return int(value) if value else None


def customers_at_limit(keys: Keys, p: int, drop_id: str, limit: int, now_ms: int) -> Op[int | None]:
    """How many customers of the drop hold its limit now: units of live or pinned holds
    plus committed ones, counted as the reserve script settles them (read only). The
    candidates are the drop's at-limit set (the reserve script adds a customer whose hold
    reaches the limit); each is re-checked, so one whose hold was released or expired
    since is not counted. None when there are more than ``DROP_AT_LIMIT_CHECKED_MAX``."""
    at_limit = keys.drop_at_limit(p, drop_id)
    (size,) = yield Pipeline([("SCARD", at_limit)])
    if int(size) > limits.DROP_AT_LIMIT_CHECKED_MAX:
        return None
    customers: list[str] = []
    if int(size):
        (members,) = yield Pipeline([("SMEMBERS", at_limit)])
        customers = sorted(text(m) for m in members)
    count = 0
    for start in range(0, len(customers), limits.DROP_AT_LIMIT_PER_READ_MAX):
        chunk = customers[start : start + limits.DROP_AT_LIMIT_PER_READ_MAX]
        entries = yield Pipeline([("HGETALL", keys.drop_customer(p, drop_id, c)) for c in chunk])
        used = [0] * len(chunk)
        pending: list[tuple[int, str, int]] = []  # (customer index, reservation id, units)
        for i, raw in enumerate(entries):
            for rid, value in ((text(k), text(v)) for k, v in raw.items()):
                if value.startswith("c:"):
                    used[i] += int(value[2:])
                else:
                    pending.append((i, rid, int(value)))
        if pending:
            parts = yield Pipeline(
                [
                    ("HMGET", keys.reservation(p, rid), "status", "expires_at")
                    for _, rid, _ in pending
                ]
            )
            for (i, _, units), (status, expires_at) in zip(pending, parts, strict=True):
                state = None if status is None else text(status)
                live = state == "held" and (_number(expires_at) or 0) > now_ms
                if live or state in COUNTING_STATUSES:
                    used[i] += units
        count += sum(1 for units in used if units >= limit)
    return count


class DropFigureOps(OpsBase):
    @operation
    def drop_figures(self) -> Op[list[DropFigures]]:
        """Every drop (at most ``DROPS_SCRAPED_MAX``, by id) with units sold and held, in
        total and per SKU, and whether it is open now on the Redis clock."""
        found: list[DropFigures] = []
        for p in range(self.partitions):
            (index,) = yield Pipeline([("HGETALL", self.keys.drop_index(p))])
            skus_of: dict[str, list[str]] = {}
            for sku, drop_id in sorted((text(k), text(v)) for k, v in index.items()):
                skus_of.setdefault(drop_id, []).append(sku)
            for drop_id, skus in sorted(skus_of.items()):
                if len(found) >= limits.DROPS_SCRAPED_MAX:
                    break
                found.append((yield from self._figures(p, drop_id, skus)))
        return sorted(found, key=lambda d: d.id)

    def _figures(self, p: int, drop_id: str, skus: list[str]) -> Op[DropFigures]:
        reads: list[tuple[str | int, ...]] = [
            ("TIME",),
            ("HMGET", self.keys.drop(p, drop_id), "opens_at", "closes_at"),
        ]
        reads += [("SMEMBERS", self.keys.locations(p, sku)) for sku in skus]
        replies = yield Pipeline(reads)
        (seconds, micros), (opens, closes) = replies[0], replies[1]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        opens_ms, closes_ms = _number(opens), _number(closes)
        is_open = opens_ms is not None and opens_ms <= now_ms
        is_open = is_open and (closes_ms is None or now_ms < closes_ms)
        pairs = [
            (sku, text(loc)) for sku, locs in zip(skus, replies[2:], strict=True) for loc in locs
        ]
        levels: list[Any] = []
        if pairs:
            stock = [self.keys.stock(p, sku, loc) for sku, loc in pairs]
            levels = yield Pipeline([("HMGET", key, "reserved", "committed") for key in stock])
        held = dict.fromkeys(skus, 0)
        sold = dict.fromkeys(skus, 0)
        for (sku, _), (reserved, committed) in zip(pairs, levels, strict=True):
            held[sku] += _number(reserved) or 0
            sold[sku] += _number(committed) or 0
        return DropFigures(
            id=drop_id,
            open=is_open,
            sold=sum(sold.values()),
            held=sum(held.values()),
            skus=tuple(DropSkuFigures(sku=s, sold=sold[s], held=held[s]) for s in skus),
        )
