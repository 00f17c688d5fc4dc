"""The stock lifecycle operations, free of I/O like ``earmark.engine.ops.operations``: the network
view of a SKU, transfers, returns, damage, write-offs and cycle counts (purchase orders
live in ``earmark.engine.ops.purchase_orders``). See docs/lifecycle.md for the state machine of a
unit and the events each operation records.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from earmark import limits, validation
from earmark.engine.ops.operations import Call, Op, Pipeline
from earmark.engine.ops.purchase_orders import PurchaseOrders
from earmark.engine.replies import (
    Json,
    fingerprint,
    raise_for_lifecycle_error,
    script_reply,
    stock_level,
    text,
    transfer,
)
from earmark.errors import InvalidRequest, ReservationNotFound, SkuNotFound, TransferNotFound
from earmark.models import (
    CountResult,
    ReturnReceipt,
    SkuStock,
    StockLevel,
    Transfer,
)

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


class Lifecycle(PurchaseOrders):
    """Every lifecycle operation of one engine (purchase orders included)."""

    # -- the network view of a SKU ---------------------------------------------------

    def locations(self, sku: str) -> Op[list[StockLevel]]:
        """Every location with a stock record of ``sku``, by location; ``SkuNotFound``
        when there is none."""
        sku = validation.sku(sku)
        p = self.partition(sku)
        (members,) = yield Pipeline([("SMEMBERS", self.keys.locations(p, sku))])
        wanted = [(sku, text(m)) for m in sorted(members, key=text)]
        levels: list[StockLevel] = []
        for start in range(0, len(wanted), limits.SKUS_PER_READ_MAX):
            found = yield from self._read_stock(wanted[start : start + limits.SKUS_PER_READ_MAX])
            levels.extend(level for level in found if level is not None)
        if not levels:
            raise SkuNotFound(f"no stock record for {sku} at any location", sku=sku)
        return levels

    def sku_stock(self, sku: str) -> Op[SkuStock]:
        """Every bucket summed over the SKU's locations, with each location."""
        levels = yield from self.locations(sku)
        totals = {b: sum(getattr(level, b) for level in levels) for b in SUMMED_BUCKETS}
        return SkuStock(sku=levels[0].sku, locations=levels, **totals)

    # -- transfers -----------------------------------------------------------------------

    def transfer(
        self,
        sku: str,
        qty: int,
        *,
        from_location: str,
        to_location: str,
        reference: str,
        reason: str,
        actor: str,
        idem: str | None,
    ) -> Op[Transfer]:
        """on_hand at from -= qty, in_transit at to += qty; ``InsufficientStock`` when fewer
        units are available at from (expired holds there are reclaimed first)."""
        sku, qty = validation.sku(sku), validation.qty(qty)
        source = validation.name(from_location, "from_location", limits.LOCATION_LENGTH_MAX)
        target = validation.name(to_location, "to_location", limits.LOCATION_LENGTH_MAX)
        if source == target:
            raise InvalidRequest("a transfer needs two different locations", field="to_location")
        reference = validation.text(reference, "reference", limits.REFERENCE_LENGTH_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem_key = self._who(actor, idem, required=False)
        p = self.partition(sku)
        fp = fingerprint("transfer", sku, qty, source, target, reference, reason)
        tid = yield from self._claim(idem_key, actor, fp, {p}, f"trf_{secrets.token_hex(12)}_{p}")
        call = self._stock_call(
            "transfer_stock", sku, source, fp, actor, idem_key, qty, target, tid, reference, reason
        )
        extra = [
            self.keys.stock(p, sku, target),
            self.keys.on_hand_log(p, sku, target),
            self.keys.transfer(p, tid),
        ]
        result, _ = script_reply((yield Call(call.script, [*call.keys, *extra], call.args)))
        raise_for_lifecycle_error(result, tid)
        return transfer(result["transfer"])

    def receive_transfer(
        self, transfer_id: str, qty_received: int, *, reason: str, actor: str, idem: str | None
    ) -> Op[Transfer]:
        """in_transit at to -= shipped, on_hand at to += received; a shortfall is written
        off and a surplus lands in on_hand, each by a ``transfer_discrepancy`` event.
        Receiving again with the same qty returns the record; with another qty it raises
        ``TransferAlreadyReceived``."""
        p = self._transfer_partition(transfer_id)
        qty = validation.whole(qty_received, "qty_received", 0, limits.QTY_RECEIVED_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem_key = self._who(actor, idem, required=False)
        record = yield from self._read_transfer(transfer_id, p)
        sku, target = record["sku"], record["to"]
        fp = fingerprint("receive_transfer", transfer_id, qty, reason)
        yield from self._claim(idem_key, actor, fp, {p}, "")
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem_key, {p}),
            self.keys.transfer(p, transfer_id),
            self.keys.stock(p, sku, target),
            self.keys.stock_index(p),
            self.keys.locations(p, sku),
            self.keys.on_hand_log(p, sku, target),
        ]
        args: list[str | int] = [transfer_id, fp, actor, idem_key]
        args += [self.config.idempotency_retention_ms, sku, target, qty, reason]
        args.append(limits.FINISHED_RECORD_RETENTION_MS)
        result, _ = script_reply((yield Call("receive_transfer", keys, args)))
        raise_for_lifecycle_error(result, transfer_id)
        return transfer(result["transfer"])

    def get_transfer(self, transfer_id: str) -> Op[Transfer]:
        p = self._transfer_partition(transfer_id)
        return transfer((yield from self._read_transfer(transfer_id, p)))

    def _transfer_partition(self, transfer_id: str) -> int:
        p = int(validation.transfer_id(transfer_id).rsplit("_", 1)[1])
        if p >= self.partitions:
            raise InvalidRequest("not a transfer id of this store", field="transfer_id")
        return p

    def _read_transfer(self, transfer_id: str, p: int) -> Op[Json]:
        (raw,) = yield Pipeline([("HGETALL", self.keys.transfer(p, transfer_id))])
        if not raw:
            raise TransferNotFound(f"no transfer {transfer_id}", id=transfer_id)
        return {**{text(k): text(v) for k, v in raw.items()}, "id": transfer_id}

    # -- returns -------------------------------------------------------------------------

    def receive_return(
        self,
        reservation_id: str,
        sku: str,
        qty: int,
        *,
        location: str | None,
        reason: str,
        actor: str,
        idem: str | None,
    ) -> Op[ReturnReceipt]:
        """returned += qty at the line's location, at most what the reservation shipped of
        the line minus what already came back. ``location`` picks the line when the
        reservation holds the SKU at several locations."""
        rid = validation.reservation_id(reservation_id)
        parts = self.parts_of(rid)
        sku, qty = validation.sku(sku), validation.qty(qty)
        where = None if location is None else validation.location(location)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem_key = self._who(actor, idem, required=False)
        p = self.partition(sku)
        if p not in parts:
            raise InvalidRequest(f"reservation {rid} has no line for {sku}", field="sku")
        raw = yield Call("read_reservation", [self.keys.reservation(p, rid)], [])
        record = orjson.loads(raw[0])
        if record is None:
            raise ReservationNotFound(f"no reservation {rid}", id=rid)
        where = self._return_line(rid, record, sku, where)
        fp = fingerprint("receive_return", rid, sku, where, qty, reason)
        yield from self._claim(idem_key, actor, fp, {p}, "")
        call = self._stock_call("receive_return", sku, where, fp, actor, idem_key, rid, qty, reason)
        keys = [*call.keys, self.keys.reservation(p, rid)]
        result, _ = script_reply((yield Call(call.script, keys, call.args)))
        raise_for_lifecycle_error(result, rid)
        return ReturnReceipt(
            reservation_id=rid,
            sku=sku,
            location=where,
            qty=qty,
            returned=result["returned"],
            shipped=result["shipped"],
            stock=stock_level(result["levels"]),
        )

    @staticmethod
    def _return_line(rid: str, record: Json, sku: str, location: str | None) -> str:
        """The location of the reservation's line for ``sku`` (bad input when there is
        none, or when several match and no location picks one)."""
        found = [line["location"] for line in record["lines"] if line["sku"] == sku]
        if location is not None:
            found = [x for x in found if x == location]
        if not found:
            where = "" if location is None else f" at {location}"
            raise InvalidRequest(f"reservation {rid} has no line for {sku}{where}", field="sku")
        if len(found) > 1:
            raise InvalidRequest(
                f"reservation {rid} holds {sku} at several locations; pass location",
                field="location",
            )
        return str(found[0])

    def dispose_returned(
        self,
        sku: str,
        qty: int,
        *,
        disposition: str,
        location: str,
        reason: str,
        actor: str,
        idem: str | None,
    ) -> Op[StockLevel]:
        """returned -> on_hand (restock), damaged, or written_off."""
        disposition = validation.choice(disposition, "disposition", limits.DISPOSITIONS)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        result = yield from self._stock_write(
            "dispose_returned", sku, location, actor, idem, qty, disposition, reason
        )
        return stock_level(result["levels"])

    # -- damage, write-offs, counts --------------------------------------------------------

    def damage(
        self,
        sku: str,
        qty: int,
        *,
        reason: str,
        location: str,
        force: bool,
        actor: str,
        idem: str | None,
    ) -> Op[StockLevel]:
        """on_hand -> damaged; ``WouldOversell`` below available unless forced."""
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX, required=True)
        forced = int(validation.flag(force, "force"))
        result = yield from self._stock_write(
            "damage_stock", sku, location, actor, idem, qty, reason, forced
        )
        return stock_level(result["levels"])

    def write_off(
        self,
        sku: str,
        qty: int,
        *,
        reason: str,
        source: str,
        location: str,
        force: bool,
        actor: str,
        idem: str | None,
    ) -> Op[StockLevel]:
        """on_hand -> written_off (``WouldOversell`` below available unless forced), or
        damaged -> written_off."""
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX, required=True)
        source = validation.choice(source, "source", limits.WRITE_OFF_SOURCES)
        forced = int(validation.flag(force, "force"))
        result = yield from self._stock_write(
            "write_off_stock", sku, location, actor, idem, qty, reason, source, forced
        )
        return stock_level(result["levels"])

    def count(
        self,
        sku: str,
        counted: int,
        *,
        version: int,
        location: str,
        reason: str,
        actor: str,
        idem: str | None,
    ) -> Op[CountResult]:
        """on_hand += counted - (on_hand at ``version``); ``StaleCount`` when the engine no
        longer remembers on_hand at that version (or it is newer than the stock)."""
        counted = validation.whole(counted, "counted", 0, limits.COUNTED_MAX)
        version = validation.whole(version, "version", 0, limits.VERSION_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        result = yield from self._stock_write(
            "count_stock", sku, location, actor, idem, counted, version, reason, qty_checked=True
        )
        return CountResult(
            stock=stock_level(result["levels"]),
            counted=result["counted"],
            expected=result["expected"],
            delta=result["delta"],
            exposure=result["exposure"],
        )

    def _stock_write(
        self,
        script: str,
        sku: str,
        location: str,
        actor: str,
        idem: str | None,
        *opts: Any,
        qty_checked: bool = False,
    ) -> Op[Json]:
        """A lifecycle script on the stock layout: validation of the (sku, location) and of
        the first option (a qty, unless ``qty_checked``), idempotency, one call."""
        sku, location = validation.sku(sku), validation.location(location)
        if not qty_checked:
            validation.qty(opts[0])
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint(script, sku, location, *opts)
        yield from self._claim(idem_key, actor, fp, {self.partition(sku)}, "")
        call = self._stock_call(script, sku, location, fp, actor, idem_key, *opts)
        result, _ = script_reply((yield call))
        raise_for_lifecycle_error(result, f"{sku} at {location}")
        return result
