"""Purchase orders: inbound units from a supplier, received in deliveries
(docs/design/lifecycle.md).

A purchase order has one part per partition its lines live in (like a reservation), and
its id names those partitions, home first: ``po_<24 hex>_<p>[-<p>...]``. Each part is
created, received and closed by its own script, so the effect on each line is atomic and
exactly-once, but an order spanning partitions is not changed atomically as a whole: a
call that stops half way is finished by calling it again with the same idempotency key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import orjson

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, LineInput
from earmark.engine.ops.offers import Offering
from earmark.engine.replies import (
    Json,
    fingerprint,
    purchase_order,
    raise_for_error,
    replayed,
    script_reply,
    text,
)
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import InvalidRequest, PurchaseOrderNotFound
from earmark.models import Line, PurchaseOrder


class PurchaseOrderOps(Offering):
    def purchase_order_parts(self, po_id: str) -> list[int]:
        """The partitions a purchase order spans; encoded in its id (home first). An id
        that cannot be one of ours names no order (``PurchaseOrderNotFound``, HTTP's 404)."""
        missing = PurchaseOrderNotFound(f"no purchase order {po_id}", id=po_id)
        if not validation.PURCHASE_ORDER_ID.fullmatch(str(po_id)):
            raise missing
        parts = [int(p) for p in po_id.rsplit("_", 1)[1].split("-")]
        if any(p >= self.partitions for p in parts) or len(set(parts)) != len(parts):
            raise missing
        return parts

    @operation
    def create_purchase_order(
        self,
        lines: Iterable[LineInput],
        *,
        supplier: str,
        expected_date: str,
        idempotency_key: str,
        reference: str = "",
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
    ) -> Op[PurchaseOrder]:
        """inbound += qty per line (``expected_date`` as YYYY-MM-DD). The idempotency key
        is required: a retry after a failure half way must reach the same order, or its
        inbound would never clear."""
        ordered = validation.lines(lines, "purchase order")
        supplier = validation.text(supplier, "supplier", limits.SUPPLIER_LENGTH_MAX, required=True)
        expected_date = validation.iso_date(expected_date, "expected_date")
        reference = validation.text(reference, "reference", limits.REFERENCE_LENGTH_MAX)
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem_key = self._who(actor, idempotency_key, required=True)
        by_part: dict[int, list[Line]] = {}
        for line in ordered:
            by_part.setdefault(self.partition_of(line.sku), []).append(line)
        parts = sorted(by_part)
        wanted = [(x.sku, x.location, x.qty) for x in ordered]
        fp = fingerprint(
            "create_purchase_order", wanted, supplier, expected_date, reference, reason
        )
        new_id = f"po_{secrets.token_hex(12)}_{'-'.join(map(str, parts))}"
        po_id = yield from self._claim(idem_key, actor, fp, set(parts), new_id)
        views: list[Json] = []
        every_part_replayed = True
        for p in parts:
            head = [supplier, expected_date, reference, reason, len(by_part[p])]
            line_args = [(x.sku, x.location, x.qty) for x in by_part[p]]
            call = self._po_call(
                "create_purchase_order", po_id, p, set(parts), fp, actor, idem_key, head, line_args
            )
            result, was_replayed = script_reply((yield call))
            yield from self._refused_first(result, views, idem_key, actor, fp, set(parts))
            raise_for_error(result, po_id)
            views.append(result["purchase_order"])
            every_part_replayed = every_part_replayed and was_replayed
        return replayed(purchase_order(views), every_part_replayed)

    @operation
    def receive_purchase_order(
        self,
        po_id: str,
        lines: Iterable[LineInput],
        *,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[PurchaseOrder]:
        """A delivery: per line, inbound -= min(qty, outstanding) and on_hand += qty.
        Parts are received in partition order; if one turns out closed, the parts before
        it stay received (``PurchaseOrderClosed.details['received_before']`` names them).
        Units of a drop's SKU go to its waitlist first: each part's first line of a drop's
        SKU offers them in the same script (any other drop line of that part is served by
        the sweeper's offer pass)."""
        parts = self.purchase_order_parts(po_id)
        delivered = validation.lines(lines, "delivery")
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem_key = self._who(actor, idempotency_key, required=False)
        records = yield from self._read_po_parts(po_id, parts)
        by_part: dict[int, list[Line]] = {}
        for line in delivered:
            p = self.partition_of(line.sku)
            known = {(x["sku"], x["location"]) for x in records.get(p, {}).get("lines", [])}
            if (line.sku, line.location) not in known:
                raise InvalidRequest(
                    f"purchase order {po_id} has no line for {line.sku} at {line.location}",
                    field="lines",
                )
            by_part.setdefault(p, []).append(line)
        touched = sorted(by_part)
        wanted = [(x.sku, x.location, x.qty) for x in delivered]
        fp = fingerprint("receive_purchase_order", po_id, wanted, reason)
        yield from self._claim(idem_key, actor, fp, set(touched), "")
        views = {p: records[p] for p in parts}
        done: list[Json] = []
        every_part_replayed = True
        for p in touched:
            line_args = [(x.sku, x.location, x.qty) for x in by_part[p]]
            call = self._po_call(
                "receive_purchase_order",
                po_id,
                p,
                set(touched),
                fp,
                actor,
                idem_key,
                [reason, len(line_args)],
                line_args,
            )
            keys = [*call.keys, self.keys.drop_index(p), self.keys.expiries(p)]
            args = [*call.args, self.config.reservation_retention_ms]
            offer_lines = [(sku, location) for sku, location, _ in line_args]
            reply = yield from self._offering(
                Call(call.script, keys, args), p, offer_lines, line_holds=True
            )
            result, was_replayed = script_reply(reply)
            if result.get("error") == "purchase_order_closed":
                before = [x.model_dump() for q in touched if q < p for x in by_part[q]]
                result["received"] = before
            yield from self._refused_first(result, done, idem_key, actor, fp, set(touched))
            raise_for_error(result, po_id)
            views[p] = result["purchase_order"]
            done.append(views[p])
            every_part_replayed = every_part_replayed and was_replayed
        return replayed(purchase_order([views[p] for p in parts]), every_part_replayed)

    @operation
    def close_purchase_order(
        self,
        po_id: str,
        *,
        cancel: bool = False,
        reason: str = "",
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[PurchaseOrder]:
        """Every part stops expecting units: inbound loses what is still outstanding.
        Closing (or cancelling) twice is a no-op; a closed order cannot be cancelled."""
        parts = self.purchase_order_parts(po_id)
        mode = "cancel" if validation.flag(cancel, "cancel") else "close"
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX)
        actor, idem_key = self._who(actor, idempotency_key, required=False)
        records = yield from self._read_po_parts(po_id, parts)
        fp = fingerprint("close_purchase_order", po_id, mode, reason)
        yield from self._claim(idem_key, actor, fp, set(parts), "")
        views: list[Json] = []
        every_part_replayed = True
        for p in parts:
            line_args = [(x["sku"], x["location"]) for x in records[p]["lines"]]
            head = [mode, reason, limits.FINISHED_RECORD_RETENTION_MS, len(line_args)]
            call = self._po_call(
                "close_purchase_order", po_id, p, set(parts), fp, actor, idem_key, head, line_args
            )
            result, was_replayed = script_reply((yield call))
            yield from self._refused_first(result, views, idem_key, actor, fp, set(parts))
            raise_for_error(result, po_id)
            views.append(result["purchase_order"])
            every_part_replayed = every_part_replayed and was_replayed
        return replayed(purchase_order(views), every_part_replayed)

    @operation
    def get_purchase_order(self, po_id: str) -> Op[PurchaseOrder]:
        """A purchase order with every line's expected, received and outstanding units."""
        parts = self.purchase_order_parts(po_id)
        records = yield from self._read_po_parts(po_id, parts)
        return purchase_order([records[p] for p in parts])

    # -- helpers -----------------------------------------------------------------------

    def _refused_first(
        self, result: Json, done: list[Json], idem: str, actor: str, fp: str, parts: set[int]
    ) -> Op[None]:
        """A refusal before any part changed frees the key; after one did, the key stays
        bound, so repeating the call finishes the rest (see the module docstring)."""
        if "error" in result and not done:
            yield from self._unclaim(idem, actor, fp, parts)

    def _read_po_parts(self, po_id: str, parts: list[int]) -> Op[dict[int, Json]]:
        """Every part as a script's view; ``PurchaseOrderNotFound`` when one is missing."""
        records: dict[int, Json] = {}
        for p in parts:
            trusted, raw = yield Pipeline(
                [self._trusted(p), ("HGETALL", self.keys.purchase_order(p, po_id))]
            )
            self._check_trusted(trusted)
            if not raw:
                raise PurchaseOrderNotFound(f"no purchase order {po_id}", id=po_id)
            record: Json = {text(k): text(v) for k, v in raw.items()}
            record["lines"] = orjson.loads(record["lines"])
            record["id"] = po_id
            records[p] = record
        return records

    def _po_call(
        self,
        script: str,
        po_id: str,
        p: int,
        parts: set[int],
        fp: str,
        actor: str,
        idem: str,
        head: list[Any],
        lines: list[tuple[Any, ...]],
    ) -> Call:
        """The purchase order layout of lua/includes/purchase_order.lua."""
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, parts),
            self.keys.purchase_order(p, po_id),
            self.keys.stock_index(p),
        ]
        args = self._write_args(fp, actor, idem)
        args += [po_id, *head]
        for line in lines:
            sku, location = line[0], line[1]
            keys.extend(
                [
                    self.keys.stock(p, sku, location),
                    self.keys.locations(p, sku),
                    self.keys.on_hand_log(p, sku, location),
                ]
            )
            args.extend(line)
        return Call(script, keys, args)
