"""The sweeper's pass: expire held parts past their expiry and resolve the pins of
multi-partition commits whose caller died (``earmark.engine.sweeper`` runs it in a
loop), and offer a drop's free units to its waitlist. Holds never need it to be correct;
see docs/design/keys.md. Offers need it only beyond what a freeing script offers itself
(docs/drops.md, "Offers")."""

from __future__ import annotations

from earmark.engine.operation import operation
from earmark.engine.ops.parts import Part, ReservationParts
from earmark.engine.replies import raise_for_error, text
from earmark.engine.steps import Op, Pipeline
from earmark.models import SweepReport


class SweepOps(ReservationParts):
    @operation
    def sweep(self) -> Op[SweepReport]:
        """One sweeper pass over every partition: expire overdue holds and resolve stale
        multi-partition pins, at most ``sweep_batch_max`` of each per partition, then
        offer the units still free of a drop's SKU to the customers waiting for it."""
        expired = resolved = offered = 0
        for p in range(self.partitions):
            expired += yield from self._sweep_expiries(p)
            resolved += yield from self._sweep_pins(p)
            offered += yield from self._offer_pass(p)
        return SweepReport(expired=expired, pins_resolved=resolved, offered=offered)

    def _sweep_expiries(self, p: int) -> Op[int]:
        batch = self.config.sweep_batch_max
        replies = yield Pipeline([("ZRANGE", self.keys.expiries(p), 0, batch - 1)])
        expired = 0
        for rid in map(text, replies[0]):
            record, now_ms = yield from self._read_part(p, rid)
            if record is None:
                yield Pipeline([("ZREM", self.keys.expiries(p), rid)])
                continue
            part = Part(p, record, now_ms)
            if record["status"] == "held" and part.now_ms < int(record["expires_at"]):
                break  # sorted by expiry: the rest are live too
            result, _ = yield from self._run_part(
                "release_reservation", rid, part, "expire", "ttl", ""
            )
            raise_for_error(result, rid)
            if record["status"] == "held" and result["reservation"]["status"] == "expired":
                expired += 1
        return expired

    def _sweep_pins(self, p: int) -> Op[int]:
        batch = self.config.sweep_batch_max
        replies = yield Pipeline([("ZRANGE", self.keys.pins(p), 0, batch - 1)])
        resolved = 0
        for rid in map(text, replies[0]):
            parts = yield from self._read_parts_or_none(rid)
            if parts is None:
                yield Pipeline([("ZREM", self.keys.pins(p), rid)])
                continue
            mine = next(part for part in parts if part.partition == p)
            record = mine.record
            if record["status"] != "pinned":
                yield Pipeline([("ZREM", self.keys.pins(p), rid)])
                continue
            if mine.now_ms < int(record["pin_deadline"]):
                break  # sorted by deadline
            resolved += 1
            yield from self._resolve_pin(rid, parts, mine)
        return resolved

    def _resolve_pin(self, rid: str, parts: list[Part], mine: Part) -> Op[None]:
        """A pin outlived its deadline: its commit attempt died. The home part decides:
        committed means every part commits; otherwise the stale pins are undone."""
        token = str(mine.record["pin_token"])
        home = parts[0]
        home_status = str(home.record["status"])
        if home_status == "pinned" and home.record.get("pin_token") == token:
            (reply,) = yield from self._each_part("unpin_reservation", rid, [home], token, 1)
            raise_for_error(reply, rid)
            home_status = str(reply["reservation"]["status"])
        if mine is home:
            return
        if home_status in ("committed", "shipped"):
            replies = yield from self._each_part("commit_reservation", rid, [mine], "pinned", token)
        elif home_status == "pinned" and home.record.get("pin_token") == token:
            return  # the home pin of this attempt is still live: its caller may yet commit
        else:
            replies = yield from self._each_part("unpin_reservation", rid, [mine], token, 1)
        raise_for_error(replies[0], rid)
