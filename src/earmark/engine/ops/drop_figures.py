"""Every drop's live figures, for ``/metrics`` (per-drop gauges).

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
from earmark.models import DropFigures, DropSkuFigures


def _number(raw: Any) -> int | None:
    value = None if raw is None else text(raw)
    return int(value) if value else None


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
