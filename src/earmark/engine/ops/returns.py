"""Customer returns: units of a shipped reservation come back into ``returned``
(quarantine), then are restocked, found damaged or written off (docs/design/lifecycle.md)."""

from __future__ import annotations

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.parts import ReservationParts
from earmark.engine.replies import Json, fingerprint, replayed, stock_level
from earmark.engine.steps import Call, Op
from earmark.errors import InvalidRequest, ReservationNotFound
from earmark.models import ReturnReceipt, StockLevel


class ReturnOps(ReservationParts):
    @operation
    def receive_return(
        self,
        reservation_id: str,
        sku: str,
        qty: int,
        *,
        location: str | None = None,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[ReturnReceipt]:
        """Units of a shipped reservation line come back into ``returned`` (quarantine):
        at most what the reservation shipped of the line minus what already came back.
        ``location`` picks the line when the reservation holds the SKU at several."""
        rid = reservation_id
        parts = self.parts_of(rid)
        sku, qty = validation.sku(sku), validation.qty(qty)
        where = None if location is None else validation.location(location)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem = self._who(actor, idempotency_key, required=False)
        p = self.partition_of(sku)
        if p not in parts:
            raise InvalidRequest(f"reservation {rid} has no line for {sku}", field="sku")
        record, _ = yield from self._read_part(p, rid)
        if record is None:
            raise ReservationNotFound(f"no reservation {rid}", id=rid)
        where = self._return_line(rid, record, sku, where)
        fp = fingerprint("receive_return", rid, sku, where, qty, reason)
        yield from self._claim(idem, actor, fp, {p}, "")
        call = self._stock_call("receive_return", sku, where, fp, actor, idem, rid, qty, reason)
        keys = [*call.keys, self.keys.reservation(p, rid)]
        call = Call(call.script, keys, call.args)
        result, was_replayed = yield from self._write(call, idem, actor, fp, {p}, rid)
        receipt = ReturnReceipt(
            reservation_id=rid,
            sku=sku,
            location=where,
            qty=qty,
            returned=result["returned"],
            shipped=result["shipped"],
            stock=stock_level(result["levels"]),
        )
        return replayed(receipt, was_replayed)

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

    @operation
    def dispose_returned(
        self,
        sku: str,
        qty: int,
        disposition: str,
        *,
        location: str = limits.DEFAULT_LOCATION,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[StockLevel]:
        """returned -> on_hand (``restock``), ``damaged`` or written_off (``write_off``).
        Restocked units of a drop's SKU go to its waitlist first (offers, in the same
        script)."""
        disposition = validation.choice(disposition, "disposition", limits.DISPOSITIONS)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        sku, location = validation.sku(sku), validation.location(location)
        qty = validation.qty(qty)
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("dispose_returned", sku, location, qty, disposition, reason)
        yield from self._claim(idem, actor, fp, {self.partition_of(sku)}, "")
        opts = (qty, disposition, reason)
        call = self._stock_call("dispose_returned", sku, location, fp, actor, idem, *opts)
        result, was_replayed = yield from self._stock_offer_write(
            call, sku, location, idem, actor, fp, f"{sku} at {location}"
        )
        return replayed(stock_level(result["levels"]), was_replayed)
