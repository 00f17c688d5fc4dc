"""Losses: units found damaged, and units written off (from on_hand or damaged)."""

from __future__ import annotations

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, OpsBase
from earmark.engine.replies import replayed, stock_level
from earmark.engine.steps import Op
from earmark.models import StockLevel


class LossOps(OpsBase):
    @operation
    def damage(
        self,
        sku: str,
        qty: int,
        reason: str,
        *,
        location: str = limits.DEFAULT_LOCATION,
        force: bool = False,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[StockLevel]:
        """on_hand -> damaged; ``WouldOversell`` below available unless ``force``."""
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX, required=True)
        forced = int(validation.flag(force, "force"))
        result, was_replayed = yield from self._stock_write(
            "damage_stock", sku, location, actor, idempotency_key, qty, reason, forced
        )
        return replayed(stock_level(result["levels"]), was_replayed)

    @operation
    def write_off(
        self,
        sku: str,
        qty: int,
        reason: str,
        *,
        source: str = "on_hand",
        location: str = limits.DEFAULT_LOCATION,
        force: bool = False,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[StockLevel]:
        """``source`` (on_hand or damaged) -> written_off; from on_hand, ``WouldOversell``
        below available unless ``force``."""
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX, required=True)
        source = validation.choice(source, "source", limits.WRITE_OFF_SOURCES)
        forced = int(validation.flag(force, "force"))
        result, was_replayed = yield from self._stock_write(
            "write_off_stock", sku, location, actor, idempotency_key, qty, reason, source, forced
        )
        return replayed(stock_level(result["levels"]), was_replayed)
