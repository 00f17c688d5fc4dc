"""Reorder points and low-stock alerts.

The check itself runs inside every write script (``lua/includes/alerts.lua``): the
setting and the alert state live in the (sku, location)'s stock hash, so no write path
can miss it. Here: setting a reorder point, and listing the alerts that are active.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, OpsBase
from earmark.engine.replies import replayed, text
from earmark.engine.steps import Op, Pipeline
from earmark.errors import InvalidReorderPoint, SkuNotFound
from earmark.models import LowStockAlert, ReorderSetting, from_ms

ALERT_FIELDS = (
    "alert_low",
    "alert_at",
    "reorder_point",
    "rearm_above",
    "lead_time_days",
    "on_hand",
    "reserved",
    "committed",
)
ALERT_STATUSES = ("active",)
LOW_FIELDS = ("alert_low", "reorder_point")
SETTING_FIELDS = ("reorder_point", "rearm_above", "lead_time_days", "alert_low", "alert_at")


def is_low(alert_low: str | None, reorder_point: str | None) -> bool:
    """The one definition of "low" (``GET /v1/alerts``, ``GET /v1/skus?low_stock=true``):
    the alert fired (available fell to the reorder point) and has not re-armed."""
    return alert_low == "1" and reorder_point is not None


def _units(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidReorderPoint(f"{name} must be an integer", field=name)
    if not 0 <= value <= limits.REORDER_UNITS_MAX:
        raise InvalidReorderPoint(
            f"{name} must be between 0 and {limits.REORDER_UNITS_MAX}", field=name
        )
    return value


def check_reorder(reorder_point: object, rearm_above: object, lead_time_days: object) -> None:
    """``InvalidReorderPoint`` (naming the field) unless 0 <= reorder_point < rearm_above
    and lead_time_days is None or a whole number of days within bounds."""
    point, rearm = _units(reorder_point, "reorder_point"), _units(rearm_above, "rearm_above")
    if rearm <= point:
        raise InvalidReorderPoint(
            f"rearm_above ({rearm}) must be above reorder_point ({point}): "
            "otherwise the alert would re-arm while still low and fire again",
            field="rearm_above",
        )
    if lead_time_days is not None and (
        isinstance(lead_time_days, bool)
        or not isinstance(lead_time_days, int)
        or not 0 <= lead_time_days <= limits.LEAD_TIME_DAYS_MAX
    ):
        raise InvalidReorderPoint(
            f"lead_time_days must be null or a whole number in [0, {limits.LEAD_TIME_DAYS_MAX}]",
            field="lead_time_days",
        )


def _alert(sku: str, location: str, raw: list[Any]) -> LowStockAlert | None:
    values = dict(zip(ALERT_FIELDS, (None if v is None else text(v) for v in raw), strict=True))
    point = values["reorder_point"]
    if point is None or not is_low(values["alert_low"], point):
        return None
    on_hand = int(values["on_hand"] or 0)
    held = int(values["reserved"] or 0) + int(values["committed"] or 0)
    lead = values["lead_time_days"]
    low_since = datetime.fromtimestamp(int(values["alert_at"] or 0) / 1000, tz=UTC)
    return LowStockAlert(
        sku=sku,
        location=location,
        available=on_hand - held,
        on_hand=on_hand,
        reorder_point=int(point),
        rearm_above=int(values["rearm_above"] or 0),
        lead_time_days=None if lead in (None, "") else int(lead),
        low_since=low_since,
    )


def _setting(sku: str, location: str, raw: list[Any]) -> ReorderSetting | None:
    values = dict(zip(SETTING_FIELDS, (None if v is None else text(v) for v in raw), strict=True))
    point, lead = values["reorder_point"], values["lead_time_days"]
    if point is None:
        return None
    low = is_low(values["alert_low"], point)
    return ReorderSetting(
        sku=sku,
        location=location,
        reorder_point=int(point),
        rearm_above=int(values["rearm_above"] or 0),
        lead_time_days=None if lead in (None, "") else int(lead),
        low=low,
        low_since=from_ms(int(values["alert_at"] or 0)) if low else None,
    )


class AlertOps(OpsBase):
    @operation
    def set_reorder(
        self,
        sku: str,
        reorder_point: int,
        rearm_above: int,
        *,
        location: str = limits.DEFAULT_LOCATION,
        lead_time_days: int | None = None,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[ReorderSetting]:
        """Sets the reorder point and arms the alert: the first write that leaves
        available at or below ``reorder_point`` emits one ``stock_low`` event, and none
        again until available rose above ``rearm_above`` (``PUT /v1/skus/{sku}/reorder``).
        Takes effect at once: a SKU already low fires now."""
        check_reorder(reorder_point, rearm_above, lead_time_days)
        lead = "" if lead_time_days is None else str(lead_time_days)
        result, was_replayed = yield from self._stock_write(
            "set_reorder",
            sku,
            location,
            actor,
            idempotency_key,
            reorder_point,
            rearm_above,
            lead,
            qty_checked=True,
        )
        reorder = result["reorder"]
        setting = ReorderSetting(
            sku=validation.sku(sku),
            location=validation.location(location),
            reorder_point=reorder["reorder_point"],
            rearm_above=reorder["rearm_above"],
            lead_time_days=reorder["lead_time_days"],
            low=reorder["low"],
            low_since=from_ms(reorder["low_since"]) if reorder["low"] else None,
        )
        return replayed(setting, was_replayed)

    @operation
    def alerts(self, status: str = "active") -> Op[list[LowStockAlert]]:
        """Every (sku, location) whose alert has fired and not re-armed, by sku and
        location (``GET /v1/alerts?status=active``): read live from Redis, in pipelines
        of ``ALERTS_PER_READ_MAX`` stock records."""
        validation.choice(status, "status", ALERT_STATUSES)
        found: list[LowStockAlert] = []
        for p in range(self.partitions):
            trusted, members = yield Pipeline(
                [self._trusted(p), ("SMEMBERS", self.keys.stock_index(p))]
            )
            self._check_trusted(trusted)
            pairs = sorted(tuple(text(m).split(":", 1)) for m in members)
            for start in range(0, len(pairs), limits.ALERTS_PER_READ_MAX):
                chunk = pairs[start : start + limits.ALERTS_PER_READ_MAX]
                replies = yield Pipeline(
                    [("HMGET", self.keys.stock(p, sku, loc), *ALERT_FIELDS) for sku, loc in chunk]
                )
                for (sku, loc), raw in zip(chunk, replies, strict=True):
                    alert = _alert(sku, loc, raw)
                    if alert is not None:
                        found.append(alert)
        found.sort(key=lambda a: (a.sku, a.location))
        return found

    @operation
    def reorder_settings(self, sku: str) -> Op[list[ReorderSetting]]:
        """The reorder point and alert state of every location of ``sku`` that has one,
        by location (``GET /v1/skus/{sku}/reorder``); an empty list when none is set.
        Raises ``SkuNotFound`` when the SKU has no stock record anywhere."""
        sku = validation.sku(sku)
        p = self.partition_of(sku)
        trusted, members = yield Pipeline(
            [self._trusted(p), ("SMEMBERS", self.keys.locations(p, sku))]
        )
        self._check_trusted(trusted)
        locations = sorted(text(m) for m in members)
        if not locations:
            raise SkuNotFound(f"no stock record for {sku} at any location", sku=sku)
        found: list[ReorderSetting] = []
        for start in range(0, len(locations), limits.ALERTS_PER_READ_MAX):
            chunk = locations[start : start + limits.ALERTS_PER_READ_MAX]
            replies = yield Pipeline(
                [("HMGET", self.keys.stock(p, sku, loc), *SETTING_FIELDS) for loc in chunk]
            )
            for loc, raw in zip(chunk, replies, strict=True):
                setting = _setting(sku, loc, raw)
                if setting is not None:
                    found.append(setting)
        return found
