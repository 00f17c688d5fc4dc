"""Reservation parts: a reservation has one part per partition its lines live in, and
its id names those partitions, home first (``rsv_<24 hex>_<p>[-<p>...]``). These helpers
read parts and build the calls on the reservation layout of lua/includes/reservation.lua;
the reservation operations and the sweeper share them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from earmark import limits, validation
from earmark.engine.ops.offers import OFFERING_SCRIPTS, Offering
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


class ReservationParts(Offering):
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

    def _run_part(
        self,
        script: str,
        reservation_id: str,
        part: Part,
        *opts: Any,
        fp: str = "",
        actor: str = SWEEPER_ACTOR,
        idem: str = "",
        owner_only: bool = False,
    ) -> Op[tuple[Json, bool]]:
        """Runs ``script`` on one part, as ``_part_call`` builds it; a release or commit
        (which may free a drop's units or convert an offer) with the offer part its
        script asks for. Returns (result, replayed)."""
        call = self._part_call(
            script,
            reservation_id,
            part,
            *opts,
            fp=fp,
            actor=actor,
            idem=idem,
            owner_only=owner_only,
        )
        if script not in OFFERING_SCRIPTS:
            return script_reply((yield call))
        # A release of a part read with its drop brings the offer keys at once.
        hint = str(part.record.get("drop") or "") if script == "release_reservation" else ""
        return script_reply((yield from self._offering(call, part.partition, part.lines, hint)))

    def _known_parts(self) -> dict[str, tuple[int, list[Json]]]:
        """Reservation id -> (partition, lines) of one-partition reservations this engine
        reserved or read. A part's lines never change once reserved, so an entry is never
        stale: the scripts still check them (``lines_mismatch``) and that the part exists
        (``reservation_not_found``), and a forgotten entry only costs a read."""
        known: dict[str, tuple[int, list[Json]]] = self.__dict__.setdefault("_known_part_table", {})
        return known

    def _remember_part(self, reservation_id: str, partition: int, lines: list[Json]) -> None:
        known = self._known_parts()
        if len(known) >= limits.KNOWN_PARTS_MAX:
            del known[next(iter(known))]  # the oldest entry
        known[reservation_id] = (
            partition,
            [{"sku": line["sku"], "location": line["location"]} for line in lines],
        )

    def _parts_for_write(self, reservation_id: str) -> Op[list[Part]]:
        """The parts a write on an existing reservation acts on: from memory for a
        one-partition reservation this engine knows (no round trip), else read."""
        found = self._known_parts().get(reservation_id)
        if found is not None:
            partition, lines = found
            return [Part(partition, {"lines": lines}, 0)]
        return (yield from self._read_parts(reservation_id))

    def _read_parts(self, reservation_id: str) -> Op[list[Part]]:
        parts = []
        for p in self.parts_of(reservation_id):
            record, now_ms = yield from self._read_part(p, reservation_id)
            if record is None:
                raise ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id)
            parts.append(Part(p, record, now_ms))
        if len(parts) == 1:
            self._remember_part(reservation_id, parts[0].partition, parts[0].record["lines"])
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
            result, _ = yield from self._run_part(script, reservation_id, part, *opts)
            replies.append(result)
        return replies
