"""Channels: per-channel safety buffers (a default and SKU overrides) and allocations
(units ring-fenced for one channel), enforced inside the reserve script
(lua/includes/channels.lua; docs/channels.md).

A reserve reads its channel's rules from its own partition's slot, so a channel's default
is copied to every partition: one ``set_channel`` call per partition, each atomic and
idempotent under the request's key, so a retry after a crash half way finishes the copy
and replays the rest. A SKU override lives only in the SKU's partition. Allocations are a
field of the (sku, location)'s stock hash counted in ``reserved``.
"""

from __future__ import annotations

import math
from typing import Any

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.stock import StockOps
from earmark.engine.replies import (
    Json,
    fingerprint,
    raise_for_error,
    replayed,
    script_reply,
    text,
)
from earmark.engine.steps import Batch, Call, Op, Pipeline
from earmark.errors import InvalidChannelRule
from earmark.models import (
    Allocation,
    ChannelLevel,
    ChannelRule,
    ChannelSettings,
    ChannelSkuRule,
    SkuStock,
    StockLevel,
)

DEFAULT_FIELD = "*"
SKU_FIELD = "sku:"
ALLOCATION_FIELD = "alloc:"


def channel_name(value: object) -> str:
    """A channel that carries settings or allocations: a name (it is a path segment)."""
    return validation.name(value, "channel", limits.CHANNEL_LENGTH_MAX)


def check_rule(buffer_units: object, buffer_percent: object, floor: object) -> ChannelRule:
    """``InvalidChannelRule`` (naming the field) unless every number is a whole number
    within its bound."""
    bounds = {
        "buffer_units": (buffer_units, limits.CHANNEL_BUFFER_UNITS_MAX),
        "buffer_percent": (buffer_percent, limits.CHANNEL_BUFFER_PERCENT_MAX),
        "floor": (floor, limits.CHANNEL_BUFFER_UNITS_MAX),
    }
    for what, (value, high) in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidChannelRule(f"{what} must be a whole number", field=what)
        if not 0 <= value <= high:
            raise InvalidChannelRule(f"{what} must be between 0 and {high}", field=what)
    return ChannelRule(buffer_units=buffer_units, buffer_percent=buffer_percent, floor=floor)


def parse_rule(raw: Any) -> ChannelRule | None:
    if raw is None:
        return None
    units, percent, floor = (int(x) for x in text(raw).split(":"))
    return ChannelRule(buffer_units=units, buffer_percent=percent, floor=floor)


def shared_view(rule: ChannelRule | None, free: int) -> int:
    """The units of ``free`` shared units a channel with ``rule`` sees: the formula of
    lua/includes/channels.lua, channel_shared_view (the reserve script decides; this is
    for reads)."""
    free = max(free, 0)
    if rule is None:
        return free
    if free <= rule.floor:
        return 0
    buffer = max(rule.buffer_units, math.ceil(free * rule.buffer_percent / 100))
    return max(0, free - buffer)


def channel_view(rule: ChannelRule | None, free: int, allocated: int) -> int:
    """What the channel may reserve: its shared view plus what of its allocation stands
    (units short of on_hand eat into the allocation first)."""
    standing = max(0, min(allocated, allocated + free))
    return shared_view(rule, free) + standing


class ChannelOps(StockOps):
    @operation
    def set_channel(
        self,
        channel: str,
        *,
        buffer_units: int = 0,
        buffer_percent: int = 0,
        floor: int = 0,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[ChannelSettings]:
        """Sets the channel's default buffer rule in every partition (each atomically)."""
        channel = channel_name(channel)
        rule = check_rule(buffer_units, buffer_percent, floor)
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("set_channel", channel, *_rule_args(rule))
        every = set(range(self.partitions))
        yield from self._claim(idem, actor, fp, every, "")
        calls = [
            self._rule_call(p, channel, "", "set", rule, fp, actor, idem, every)
            for p in sorted(every)
        ]
        results = yield from self._rule_writes(calls, idem, actor, fp, every, channel)
        settings = yield from self._settings(channel)
        return replayed(settings, all(was for _, was in results))

    @operation
    def set_channel_sku(
        self,
        channel: str,
        sku: str,
        *,
        buffer_units: int = 0,
        buffer_percent: int = 0,
        floor: int = 0,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[ChannelSkuRule]:
        """Sets the channel's rule for one SKU (it replaces the default for that SKU).
        Raises ``SkuNotFound`` for a SKU with no stock record at any location."""
        channel, sku = channel_name(channel), validation.sku(sku)
        rule = check_rule(buffer_units, buffer_percent, floor)
        return (yield from self._sku_rule(channel, sku, "set", rule, actor, idempotency_key))

    @operation
    def remove_channel_sku(
        self,
        channel: str,
        sku: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[ChannelSkuRule]:
        """Removes the channel's override of one SKU: the default applies to it again.
        Removing an override that is not there changes nothing (``removed`` False)."""
        channel, sku = channel_name(channel), validation.sku(sku)
        return (yield from self._sku_rule(channel, sku, "remove", None, actor, idempotency_key))

    @operation
    def channel(self, channel: str) -> Op[ChannelSettings]:
        """The channel's default rule and its SKU overrides (a channel never set has
        neither: it sees plain availability)."""
        return (yield from self._settings(channel_name(channel)))

    @operation
    def allocate(
        self,
        channel: str,
        sku: str,
        location: str = limits.DEFAULT_LOCATION,
        *,
        qty: int,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Allocation]:
        """Moves ``qty`` units of (sku, location) into the channel's allocation (> 0) or
        back to the shared pool (< 0). Raises ``InsufficientStock`` when fewer are
        available to fence, ``AllocationShort`` when the allocation holds fewer to give
        back, ``SkuNotFound`` without a stock record."""
        channel = channel_name(channel)
        units = validation.whole(qty, "qty", -limits.QTY_MAX, limits.QTY_MAX)
        if units == 0:
            raise InvalidChannelRule("qty must not be 0", field="qty")
        idem = idempotency_key
        return (yield from self._allocation(channel, sku, location, "move", units, actor, idem))

    @operation
    def deallocate(
        self,
        channel: str,
        sku: str,
        location: str = limits.DEFAULT_LOCATION,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Allocation]:
        """Gives every unit of the channel's allocation of (sku, location) back to the
        shared pool (none allocated: nothing moves)."""
        channel = channel_name(channel)
        idem = idempotency_key
        return (yield from self._allocation(channel, sku, location, "release_all", "", actor, idem))

    @operation
    def channel_stock(self, channel: str, sku: str, location: str | None = None) -> Op[SkuStock]:
        """The SKU as ``channel`` sees it (``GET /v1/skus/{sku}?channel=``): ``available``
        is the channel's view summed over its locations, ``unbuffered_available`` the
        plain figure. Any channel a reservation may name can be asked: one with no rule
        sees plain availability plus its own allocation, if any. The reserve script
        decides with the same formula; this read is advisory."""
        channel = validation.text(channel, "channel", limits.CHANNEL_LENGTH_MAX, required=True)
        found = yield from self._sku_stock(sku, location)
        p = self.partition_of(found.sku)
        field = ALLOCATION_FIELD + channel
        commands: list[tuple[str | int, ...]] = [
            ("HMGET", self.keys.channel(p, channel), DEFAULT_FIELD, SKU_FIELD + found.sku)
        ]
        commands += [
            ("HGET", self.keys.stock(p, found.sku, level.location), field)
            for level in found.locations
        ]
        (default, override), *allocs = yield Pipeline(commands)
        rule = parse_rule(override) or parse_rule(default)
        views = []
        for level, raw in zip(found.locations, allocs, strict=True):
            allocated = int(raw or 0)
            views.append(
                ChannelLevel(
                    location=level.location,
                    available=channel_view(rule, level.available, allocated),
                    unbuffered_available=level.available,
                    allocated=allocated,
                )
            )
        return found.model_copy(
            update={
                "channel": channel,
                "available": sum(v.available for v in views),
                "unbuffered_available": found.available,
                "allocated": sum(v.allocated for v in views),
                "channel_locations": views,
            }
        )

    # -- the calls ---------------------------------------------------------------------

    def _rule_call(
        self,
        p: int,
        channel: str,
        sku: str,
        mode: str,
        rule: ChannelRule | None,
        fp: str,
        actor: str,
        idem: str,
        parts: set[int],
    ) -> Call:
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, parts),
            self.keys.channel(p, channel),
        ]
        if sku and mode == "set":
            keys.append(self.keys.locations(p, sku))  # a SKU never stocked takes no rule
        args = self._write_args(fp, actor, idem)
        args += [channel, sku, mode, *(_rule_args(rule) if rule else ("", "", ""))]
        return Call("set_channel", keys, args)

    def _rule_writes(
        self, calls: list[Call], idem: str, actor: str, fp: str, parts: set[int], subject: str
    ) -> Op[list[tuple[Json, bool]]]:
        """The partitions' calls of one rule change in one round trip; the first refusal
        raised (a refusal is store_not_ready or a conflict: nothing to roll back, since
        every call sets the same value and a retry under the key finishes the copy)."""
        raw = yield Batch(calls)
        results = [script_reply(r) for r in raw]
        for result, _ in results:
            if "error" in result:
                yield from self._unclaim(idem, actor, fp, parts)
                raise_for_error(result, subject)
        return results

    def _sku_rule(
        self,
        channel: str,
        sku: str,
        mode: str,
        rule: ChannelRule | None,
        actor: str,
        idempotency_key: str | None,
    ) -> Op[ChannelSkuRule]:
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("channel_sku", channel, sku, mode, *(_rule_args(rule) if rule else ()))
        p = self.partition_of(sku)
        yield from self._claim(idem, actor, fp, {p}, "")
        call = self._rule_call(p, channel, sku, mode, rule, fp, actor, idem, {p})
        written = yield from self._rule_writes([call], idem, actor, fp, {p}, channel)
        ((result, was_replayed),) = written
        found = ChannelSkuRule(
            channel=channel,
            sku=sku,
            rule=rule,
            removed=bool(result.get("removed", False)),
        )
        return replayed(found, was_replayed)

    def _settings(self, channel: str) -> Op[ChannelSettings]:
        """Every partition's copy (each holds at most CHANNEL_RULES_PER_PARTITION_MAX
        rules); the default as partition 0 holds it."""
        parts = list(range(self.partitions))
        trusted, *replies = yield Pipeline(
            [self._trusted(0), *(("HGETALL", self.keys.channel(p, channel)) for p in parts)]
        )
        self._check_trusted(trusted)
        default: ChannelRule | None = None
        skus: dict[str, ChannelRule] = {}
        for p, found in zip(parts, replies, strict=True):
            for name, raw in found.items():
                field = text(name)
                if field == DEFAULT_FIELD and p == 0:
                    default = parse_rule(raw)
                elif field.startswith(SKU_FIELD) and (rule := parse_rule(raw)) is not None:
                    skus[field.removeprefix(SKU_FIELD)] = rule
        return ChannelSettings(channel=channel, default=default, skus=dict(sorted(skus.items())))

    def _allocation(
        self,
        channel: str,
        sku: str,
        location: str,
        mode: str,
        qty: int | str,
        actor: str,
        idempotency_key: str | None,
    ) -> Op[Allocation]:
        result, was_replayed = yield from self._stock_write(
            "allocate_stock",
            sku,
            location,
            actor,
            idempotency_key,
            channel,
            mode,
            qty,
            qty_checked=True,
        )
        moved = result["allocation"]
        levels = result["levels"]
        on_hand, reserved, committed = levels["on_hand"], levels["reserved"], levels["committed"]
        found = Allocation(
            channel=channel,
            sku=moved["sku"],
            location=moved["location"],
            allocated=int(moved["allocated"]),
            moved=int(moved["moved"]),
            levels=StockLevel(**levels, available=on_hand - reserved - committed),
        )
        return replayed(found, was_replayed)


def _rule_args(rule: ChannelRule) -> tuple[int, int, int]:
    return (rule.buffer_units, rule.buffer_percent, rule.floor)
