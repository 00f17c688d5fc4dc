"""Reservation parts: a reservation has one part per partition its lines live in, and
its id names those partitions, home first (``rsv_<24 hex>_<p>[-<p>...]``). These helpers
read parts and build the calls on the reservation layout of lua/includes/reservation.lua;
the reservation operations and the sweeper share them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from earmark import validation
from earmark.engine.ops.base import OpsBase
from earmark.engine.replies import Json, script_reply
from earmark.engine.steps import Call, Op
from earmark.errors import ReservationNotFound

SWEEPER_ACTOR = "earmark:sweeper"


@dataclass(frozen=True, slots=True)
class Part:
    """One partition's part of a reservation as read from Redis."""

    partition: int
    record: Json
    now_ms: int

    @property
    def lines(self) -> list[tuple[str, str]]:
        return [(line["sku"], line["location"]) for line in self.record["lines"]]


class ReservationParts(OpsBase):
    def parts_of(self, reservation_id: str) -> list[int]:
        """The partitions a reservation spans; encoded in its id (home partition first).

        An id that cannot be one of this store's (wrong shape, a partition it does not
        have) names no reservation: ``ReservationNotFound``, as for an id never issued,
        so the library and HTTP (404) answer alike and nothing is written."""
        if not validation.RESERVATION_ID.fullmatch(str(reservation_id)):
            raise ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id)
        parts = [int(p) for p in reservation_id.rsplit("_", 1)[1].split("-")]
        if any(p >= self.partitions for p in parts) or len(set(parts)) != len(parts):
            raise ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id)
        return parts

    def _part_call(
        self,
        script: str,
        reservation_id: str,
        part: Part,
        *opts: Any,
        fp: str = "",
        actor: str = SWEEPER_ACTOR,
        idem: str = "",
        owner_only: bool = False,
    ) -> Call:
        p = part.partition
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, set(self.parts_of(reservation_id))),
            self.keys.reservation(p, reservation_id),
            self.keys.expiries(p),
            self.keys.pins(p),
        ]
        args = self._write_args(fp, actor, idem)
        args += [reservation_id, "1" if owner_only else "0", len(part.lines)]
        for sku, location in part.lines:
            keys.extend(self.keys.reservation_line_keys(p, sku, location))
            args.extend((sku, location))
        args.extend(opts)
        return Call(script, keys, args)

    def _read_parts(self, reservation_id: str) -> Op[list[Part]]:
        parts = []
        for p in self.parts_of(reservation_id):
            record, now_ms = yield from self._read_part(p, reservation_id)
            if record is None:
                raise ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id)
            parts.append(Part(p, record, now_ms))
        return parts

    def _read_parts_or_none(self, rid: str) -> Op[list[Part] | None]:
        try:
            return (yield from self._read_parts(rid))
        except ReservationNotFound:
            return None

    def _each_part(
        self, script: str, reservation_id: str, parts: list[Part], *opts: Any
    ) -> Op[list[Json]]:
        """Runs a cleanup script on every part and returns their replies."""
        replies = []
        for part in parts:
            raw = yield self._part_call(script, reservation_id, part, *opts)
            replies.append(script_reply(raw)[0])
        return replies
