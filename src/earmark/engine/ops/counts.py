"""Cycle counts: on_hand corrected to what a counter found, against the stock version
the counter read, so that sales in between are kept (docs/design/lifecycle.md)."""

from __future__ import annotations

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, OpsBase
from earmark.engine.replies import replayed, stock_level
from earmark.engine.steps import Op
from earmark.models import CountResult


class CountOps(OpsBase):
    @operation
    def count(
        self,
        sku: str,
        counted: int,
        version: int,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reason: str = "cycle count",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[CountResult]:
        """on_hand += counted - (on_hand at ``version``, the ``StockLevel.version`` the
        counter read); raises ``StaleCount`` when that version is too old to count against
        (or newer than the stock)."""
        counted = validation.whole(counted, "counted", 0, limits.COUNTED_MAX)
        version = validation.whole(version, "version", 0, limits.VERSION_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        result, was_replayed = yield from self._stock_write(
            "count_stock",
            sku,
            location,
            actor,
            idempotency_key,
            counted,
            version,
            reason,
            qty_checked=True,
        )
        counted_result = CountResult(
            stock=stock_level(result["levels"]),
            counted=result["counted"],
            expected=result["expected"],
            delta=result["delta"],
            exposure=result["exposure"],
        )
        return replayed(counted_result, was_replayed)
