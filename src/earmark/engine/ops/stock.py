"""Stock levels: receive units, correct on_hand, and read buckets (one location, many,
or a SKU over every location)."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.alerts import LOW_FIELDS, is_low
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.offers import Offering
from earmark.engine.replies import fingerprint, raise_for_error, replayed, stock_level, text
from earmark.engine.steps import Batch, Call, Op, Pipeline
from earmark.errors import InvalidRequest, SkuNotFound
from earmark.models import SkuStock, StockLevel, StockPage

SUMMED_BUCKETS = (
    "on_hand",
    "reserved",
    "committed",
    "available",
    "in_transit",
    "returned",
    "damaged",
    "written_off",
    "inbound",
)


# SSCAN calls one page may make, and the COUNT hint of each: the work of a page is bounded
# whatever the size of the index (a sparse match may return a short or empty page with a
# cursor; keep paging).
STOCK_PAGE_SCANS_MAX = 16
STOCK_PAGE_LIMIT_MAX = 500


def encode_stock_cursor(partition: int, scan_cursor: int) -> str:
    return f"{partition}.{scan_cursor}"


def decode_stock_cursor(cursor: str, partitions: int) -> tuple[int, int]:
    partition, dot, scan = cursor.partition(".")
    if not (dot and partition.isdigit() and scan.isdigit() and int(partition) < partitions):
        raise InvalidRequest(f"{cursor!r} is not a cursor of GET /v1/skus", field="cursor")
    return int(partition), int(scan)


class StockOps(Offering):
    @operation
    def receive(
        self,
        sku: str,
        qty: int,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reference: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[StockLevel]:
        """Units arrive: on_hand += qty. Units of a drop's SKU go to its waitlist first
        (offers to the customers at the head of the line, in the same script)."""
        sku, location = validation.sku(sku), validation.location(location)
        qty = validation.qty(qty)
        reference = validation.text(reference, "reference", limits.REFERENCE_LENGTH_MAX)
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("receive", sku, location, qty, reference)
        parts = {self.partition_of(sku)}
        yield from self._claim(idem, actor, fp, parts, "")
        call = self._stock_call("receive_stock", sku, location, fp, actor, idem, qty, reference)
        result, was_replayed = yield from self._stock_offer_write(
            call, sku, location, idem, actor, fp, ""
        )
        return replayed(stock_level(result["levels"]), was_replayed)

    @operation
    def adjust(
        self,
        sku: str,
        delta: int,
        reason: str,
        *,
        location: str = limits.DEFAULT_LOCATION,
        force: bool = False,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[StockLevel]:
        """A correction of on_hand. A decrease below available raises ``WouldOversell``
        unless ``force``; a forced one records the exposure on its event. Units of a
        drop's SKU free after it go to its waitlist first (offers, in the same script)."""
        sku, location = validation.sku(sku), validation.location(location)
        bound = limits.ADJUST_DELTA_MAX
        delta = validation.whole(delta, "delta", -bound, bound)
        if delta == 0:
            raise InvalidRequest("delta must not be zero", field="delta")
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX, required=True)
        force = validation.flag(force, "force")
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("adjust", sku, location, delta, reason, force)
        parts = {self.partition_of(sku)}
        yield from self._claim(idem, actor, fp, parts, "")
        flag = "1" if force else "0"
        call = self._stock_call("adjust_stock", sku, location, fp, actor, idem, delta, reason, flag)
        result, was_replayed = yield from self._stock_offer_write(
            call, sku, location, idem, actor, fp, ""
        )
        return replayed(stock_level(result["levels"]), was_replayed)

    @operation
    def availability(self, skus: Iterable[str | tuple[str, str]]) -> Op[list[StockLevel]]:
        """Every bucket of many SKUs (or (sku, location) pairs) in one round trip; a plain
        SKU reads its default location, an unknown one reads as zeros. Holds past their
        expiry no longer count in ``reserved``, reclaimed or not."""
        wanted: list[tuple[str, str]] = []
        for item in skus:
            sku, location = (item, limits.DEFAULT_LOCATION) if isinstance(item, str) else item
            wanted.append((validation.sku(sku), validation.location(location)))
            if len(wanted) > limits.SKUS_PER_READ_MAX:
                raise InvalidRequest(f"at most {limits.SKUS_PER_READ_MAX} SKUs per read")
        found = yield from self._read_stock(wanted)
        return [
            level or StockLevel(sku=sku, location=location)
            for (sku, location), level in zip(wanted, found, strict=True)
        ]

    @operation
    def stock(self, sku: str, location: str | None = None) -> Op[SkuStock]:
        """The SKU over the network: every bucket summed over its locations, with each
        location (``GET /v1/skus/{sku}``); with ``location``, the same for that location
        alone (its ``StockLevel``, with the ``version`` a count names, is
        ``locations[0]``). Raises ``SkuNotFound`` when it never had stock (there).
        ``availability`` reads bare levels of many SKUs at once."""
        return (yield from self._sku_stock(sku, location))

    def _sku_stock(self, sku: str, location: str | None) -> Op[SkuStock]:
        if location is None:
            levels = yield from self._locations(sku)
        else:
            sku, location = validation.sku(sku), validation.location(location)
            (level,) = yield from self._read_stock([(sku, location)])
            if level is None:
                raise SkuNotFound(
                    f"no stock record for {sku} at {location}", sku=sku, location=location
                )
            levels = [level]
        totals = {b: sum(getattr(level, b) for level in levels) for b in SUMMED_BUCKETS}
        return SkuStock(sku=levels[0].sku, locations=levels, **totals)

    @operation
    def locations(self, sku: str) -> Op[list[StockLevel]]:
        """Every location of ``sku``, by location; raises ``SkuNotFound`` if it has none."""
        return self._locations(sku)

    def _locations(self, sku: str) -> Op[list[StockLevel]]:
        sku = validation.sku(sku)
        p = self.partition_of(sku)
        trusted, members = yield Pipeline(
            [self._trusted(p), ("SMEMBERS", self.keys.locations(p, sku))]
        )
        self._check_trusted(trusted)
        wanted = [(sku, text(m)) for m in sorted(members, key=text)]
        levels: list[StockLevel] = []
        for start in range(0, len(wanted), limits.SKUS_PER_READ_MAX):
            found = yield from self._read_stock(wanted[start : start + limits.SKUS_PER_READ_MAX])
            levels.extend(level for level in found if level is not None)
        if not levels:
            raise SkuNotFound(f"no stock record for {sku} at any location", sku=sku)
        return levels

    @operation
    def stock_page(
        self,
        *,
        prefix: str = "",
        location: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        low_stock: bool = False,
    ) -> Op[StockPage]:
        """A page of (sku, location) stock records from the stock index, SKUs starting
        with ``prefix`` (at ``location``). Redis ``SSCAN`` order, not sorted: a record
        present for the whole walk appears at least once (rarely twice, if the set is
        resized meanwhile); a page holds at most about ``limit`` records and may be
        short while ``next_cursor`` is set. ``low_stock``: only the records whose
        low-stock alert has fired and not re-armed, as ``alerts()`` lists them."""
        if not 1 <= limit <= STOCK_PAGE_LIMIT_MAX:
            raise InvalidRequest(f"limit must be between 1 and {STOCK_PAGE_LIMIT_MAX}")
        # Names hold no glob character (validation): they go into MATCH as they are.
        pattern = f"{validation.sku(prefix) if prefix else ''}*:"
        pattern += "*" if location is None else validation.location(location)
        p, scan = (0, 0) if cursor is None else decode_stock_cursor(cursor, self.partitions)
        wanted: list[tuple[str, str]] = []
        for _ in range(STOCK_PAGE_SCANS_MAX):
            command = ("SSCAN", self.keys.stock_index(p), scan, "MATCH", pattern, "COUNT", limit)
            ((next_scan, members),) = yield Pipeline([command])
            for member in members:
                sku, _, at = text(member).partition(":")
                wanted.append((sku, at))
            scan = int(next_scan)
            if scan == 0:
                p, scan = p + 1, 0
            if p == self.partitions or len(wanted) >= limit:
                break
        if low_stock and wanted:
            wanted = yield from self._low_only(wanted)
        levels: list[StockLevel] = []
        for start in range(0, len(wanted), limits.SKUS_PER_READ_MAX):
            found = yield from self._read_stock(wanted[start : start + limits.SKUS_PER_READ_MAX])
            levels += [level for level in found if level is not None]
        done = p == self.partitions
        return StockPage(items=levels, next_cursor=None if done else encode_stock_cursor(p, scan))

    def _low_only(self, wanted: list[tuple[str, str]]) -> Op[list[tuple[str, str]]]:
        """The records of ``wanted`` whose alert is low, read as ``alerts()`` reads it
        (``alert_low`` set with a reorder point), in one pipeline."""
        commands: list[tuple[str | int, ...]] = [
            ("HMGET", self.keys.stock(self.partition_of(sku), sku, loc), *LOW_FIELDS)
            for sku, loc in wanted
        ]
        replies = yield Pipeline(commands)
        return [
            pair
            for pair, (low, point) in zip(wanted, replies, strict=True)
            if is_low(None if low is None else text(low), None if point is None else text(point))
        ]

    def _read_stock(self, wanted: list[tuple[str, str]]) -> Op[list[StockLevel | None]]:
        """One read_stock call per partition, all in one batch."""
        by_part: dict[int, list[int]] = {}
        for index, (sku, _) in enumerate(wanted):
            by_part.setdefault(self.partition_of(sku), []).append(index)
        calls = []
        for p, indexes in by_part.items():
            keys = [self.keys.meta(p)]
            keys += [k for i in indexes for k in self.keys.line_keys(p, *wanted[i])]
            calls.append(Call("read_stock", keys, [limits.EXPIRED_READ_PER_LINE_MAX]))
        replies = (yield Batch(calls)) if calls else []
        found: list[StockLevel | None] = [None] * len(wanted)
        for indexes, reply in zip(by_part.values(), replies, strict=True):
            answered = orjson.loads(reply)
            if isinstance(answered, dict):  # a refusal: the partition cannot be trusted
                raise_for_error(answered)
            for i, levels in zip(indexes, answered, strict=True):
                if levels is not None:
                    levels.pop("expired_unreclaimed")
                    sku, location = wanted[i]
                    found[i] = stock_level({**levels, "sku": sku, "location": location})
        return found
