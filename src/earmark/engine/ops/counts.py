"""Cycle counts: on_hand corrected to what a counter found, against the stock version
the counter read, so that sales in between are kept (docs/design/lifecycle.md)."""

from __future__ import annotations

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.offers import Offering
from earmark.engine.replies import fingerprint, replayed, stock_level
from earmark.engine.steps import Op
from earmark.models import CountResult


class CountOps(Offering):
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
        (or newer than the stock). Units of a drop's SKU free after the count go to its
        waitlist first (offers, in the same script)."""
        sku, location = validation.sku(sku), validation.location(location)
        counted = validation.whole(counted, "counted", 0, limits.COUNTED_MAX)
        version = validation.whole(version, "version", 0, limits.VERSION_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("count_stock", sku, location, counted, version, reason)
        yield from self._claim(idem, actor, fp, {self.partition_of(sku)}, "")
        call = self._stock_call(
            "count_stock", sku, location, fp, actor, idem, counted, version, reason
        )
        result, was_replayed = yield from self._stock_offer_write(
            call, sku, location, idem, actor, fp, f"{sku} at {location}"
        )
        counted_result = CountResult(
            stock=stock_level(result["levels"]),
            counted=result["counted"],
            expected=result["expected"],
            delta=result["delta"],
            exposure=result["exposure"],
        )
        return replayed(counted_result, was_replayed)
