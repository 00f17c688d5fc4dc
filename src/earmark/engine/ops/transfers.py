"""Transfers between two locations of a SKU: units leave on_hand at the source for
in_transit at the destination, then arrive (docs/design/lifecycle.md)."""

from __future__ import annotations

import secrets

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.offers import Offering
from earmark.engine.replies import (
    Json,
    fingerprint,
    raise_for_error,
    replayed,
    script_reply,
    text,
    transfer,
)
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import InvalidRequest, TransferNotFound
from earmark.models import Transfer


class TransferOps(Offering):
    @operation
    def transfer(
        self,
        sku: str,
        qty: int,
        from_location: str,
        to_location: str,
        *,
        reference: str = "",
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Transfer]:
        """on_hand at ``from_location`` -> in_transit at ``to_location``; raises
        ``InsufficientStock`` when fewer units are available at the source (expired holds
        there are reclaimed first)."""
        sku, qty = validation.sku(sku), validation.qty(qty)
        source = validation.name(from_location, "from_location", limits.LOCATION_LENGTH_MAX)
        target = validation.name(to_location, "to_location", limits.LOCATION_LENGTH_MAX)
        if source == target:
            raise InvalidRequest("a transfer needs two different locations", field="to_location")
        reference = validation.text(reference, "reference", limits.REFERENCE_LENGTH_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem = self._who(actor, idempotency_key, required=False)
        p = self.partition_of(sku)
        fp = fingerprint("transfer", sku, qty, source, target, reference, reason)
        tid = yield from self._claim(idem, actor, fp, {p}, f"trf_{secrets.token_hex(12)}_{p}")
        call = self._stock_call(
            "transfer_stock", sku, source, fp, actor, idem, qty, target, tid, reference, reason
        )
        extra = [
            self.keys.stock(p, sku, target),
            self.keys.on_hand_log(p, sku, target),
            self.keys.transfer(p, tid),
        ]
        call = Call(call.script, [*call.keys, *extra], call.args)
        result, was_replayed = yield from self._write(call, idem, actor, fp, {p}, tid)
        return replayed(transfer(result["transfer"]), was_replayed)

    @operation
    def receive_transfer(
        self,
        transfer_id: str,
        qty_received: int,
        *,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Transfer]:
        """The transfer arrives: in_transit -> on_hand at the destination; missing units
        are written off, surplus units land in on_hand (``transfer_discrepancy``).
        Receiving again with the same qty returns the record; with another qty it raises
        ``TransferAlreadyReceived``. Units of a drop's SKU go to its waitlist first
        (offers at the destination, in the same script)."""
        p = self._transfer_partition(transfer_id)
        qty = validation.whole(qty_received, "qty_received", 0, limits.QTY_RECEIVED_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem = self._who(actor, idempotency_key, required=False)
        record = yield from self._read_transfer(transfer_id, p)
        sku, target = record["sku"], record["to"]
        fp = fingerprint("receive_transfer", transfer_id, qty, reason)
        yield from self._claim(idem, actor, fp, {p}, "")
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, {p}),
            self.keys.transfer(p, transfer_id),
            self.keys.stock(p, sku, target),
            self.keys.stock_index(p),
            self.keys.locations(p, sku),
            self.keys.on_hand_log(p, sku, target),
            self.keys.drop_index(p),
            self.keys.expiries(p),
            self.keys.hold_expiries(p, sku, target),
            self.keys.hold_qty(p, sku, target),
        ]
        args = self._write_args(fp, actor, idem)
        args += [transfer_id, sku, target, qty, reason, limits.FINISHED_RECORD_RETENTION_MS]
        args.append(self.config.reservation_retention_ms)
        call = Call("receive_transfer", keys, args)
        reply = yield from self._offering(call, p, [(sku, target)])
        result, was_replayed = script_reply(reply)
        if "error" in result:
            yield from self._unclaim(idem, actor, fp, {p})
            raise_for_error(result, transfer_id)
        return replayed(transfer(result["transfer"]), was_replayed)

    @operation
    def get_transfer(self, transfer_id: str) -> Op[Transfer]:
        """A transfer and its status (in_transit or received)."""
        p = self._transfer_partition(transfer_id)
        return transfer((yield from self._read_transfer(transfer_id, p)))

    def _transfer_partition(self, transfer_id: str) -> int:
        """The partition in the id; an id that cannot be one of ours names no transfer
        (``TransferNotFound``, the 404 of HTTP)."""
        missing = TransferNotFound(f"no transfer {transfer_id}", id=transfer_id)
        if not validation.TRANSFER_ID.fullmatch(str(transfer_id)):
            raise missing
        p = int(transfer_id.rsplit("_", 1)[1])
        if p >= self.partitions:
            raise missing
        return p

    def _read_transfer(self, transfer_id: str, p: int) -> Op[Json]:
        trusted, raw = yield Pipeline(
            [self._trusted(p), ("HGETALL", self.keys.transfer(p, transfer_id))]
        )
        self._check_trusted(trusted)
        if not raw:
            raise TransferNotFound(f"no transfer {transfer_id}", id=transfer_id)
        return {**{text(k): text(v) for k, v in raw.items()}, "id": transfer_id}
