"""Events that move no bucket, recorded for the durable record and its webhooks: the
discrepancy cases of a reconciliation (docs/reconciliation.md) are announced this way,
so a case's webhook comes from the record like every other."""

from __future__ import annotations

from collections.abc import Mapping

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, OpsBase
from earmark.engine.replies import fingerprint
from earmark.engine.steps import Call, Op
from earmark.errors import InvalidRequest

NOTE_TYPES = ("discrepancy_opened", "discrepancy_resolved", "discrepancy_overdue")
NOTE_FIELDS_MAX = 16  # lua/note_event.lua


class NoteOps(OpsBase):
    @operation
    def note(
        self,
        event_type: str,
        sku: str,
        fields: Mapping[str, str],
        *,
        location: str = limits.DEFAULT_LOCATION,
        qty: int = 0,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[int]:
        """Appends one event of ``event_type`` (one of ``NOTE_TYPES``) with no deltas to
        the SKU's partition stream; returns its time (ms, Redis TIME). With an
        idempotency key a retry records nothing more."""
        event_type = validation.choice(event_type, "event_type", NOTE_TYPES)
        sku, location = validation.sku(sku), validation.location(location)
        if len(fields) > NOTE_FIELDS_MAX:
            raise InvalidRequest(f"at most {NOTE_FIELDS_MAX} fields", field="fields")
        pairs: list[str] = []
        for name, value in fields.items():
            pairs += [validation.text(name, "field", 64, required=True), str(value)]
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("note", event_type, sku, location, qty, *pairs)
        p = self.partition_of(sku)
        yield from self._claim(idem, actor, fp, {p}, "")
        keys = [self.keys.meta(p), self.keys.events(p), self._idem_key(p, actor, idem, {p})]
        args = [*self._write_args(fp, actor, idem), event_type, sku, location, qty]
        call = Call("note_event", keys, [*args, len(fields), *pairs])
        result, _ = yield from self._write(call, idem, actor, fp, {p}, sku)
        return int(result["at"])
