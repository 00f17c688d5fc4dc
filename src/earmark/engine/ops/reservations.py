"""Reservations: hold a cart (all or nothing), then commit, release, extend or ship it.
See docs/design/reservations.md for the state machine and docs/design/keys.md for carts that span
partitions (held part by part with rollback, committed in two phases)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, LineInput
from earmark.engine.ops.drops import DropReserve
from earmark.engine.ops.parts import Part, ReservationParts
from earmark.engine.replies import (
    Json,
    fingerprint,
    part_status,
    raise_for_error,
    replayed,
    reservation,
    reservation_from_views,
)
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import InsufficientStock, SkuNotFound
from earmark.models import Line, Reservation, Shortfall


class ReservationOps(ReservationParts, DropReserve):
    @operation
    def reserve(
        self,
        lines: Iterable[LineInput],
        *,
        idempotency_key: str,
        ttl_seconds: float | None = None,
        channel: str = "",
        actor: str = DEFAULT_ACTOR,
        customer: str | None = None,
    ) -> Op[Reservation]:
        """Holds every line or none; raises ``InsufficientStock`` naming each short line.
        ``customer`` (trimmed, case-folded) is required for a drop's SKU, whose rules
        apply in the same script (docs/drops.md)."""
        cart = validation.lines(lines)
        config = self.config
        ttl_ms = validation.ttl_ms(ttl_seconds, config.default_ttl_ms, config.max_ttl_ms)
        channel = validation.text(channel, "channel", limits.CHANNEL_LENGTH_MAX)
        actor, idem = self._who(actor, idempotency_key, required=True)
        customer = validation.customer(customer)
        by_part: dict[int, list[Line]] = {}
        for line in cart:
            by_part.setdefault(self.partition_of(line.sku), []).append(line)
        parts = sorted(by_part)
        fp = fingerprint(
            "reserve", [(x.sku, x.location, x.qty) for x in cart], ttl_ms, channel, customer
        )
        new_id = f"rsv_{secrets.token_hex(12)}_{'-'.join(map(str, parts))}"
        rid = yield from self._claim(idem, actor, fp, set(parts), new_id)
        replies: list[tuple[int, Json]] = []
        every_part_replayed = True
        for p in parts:
            call = self._reserve_call(rid, p, by_part[p], fp, ttl_ms, channel, actor, idem)
            skus = [line.sku for line in by_part[p]]
            result, was_replayed = yield from self._drop_reserving(call, p, customer, skus)
            replies.append((p, result))
            every_part_replayed = every_part_replayed and was_replayed
        refused = [r for _, r in replies if not r.get("ok")]
        if not refused:
            held_cart = reservation_from_views([r["reservation"] for _, r in replies])
            if len(replies) == 1:
                p, view = replies[0]
                self._remember_part(held_cart.id, p, view["reservation"]["lines"])
            return replayed(held_cart, every_part_replayed)
        held = [Part(p, r["reservation"], 0) for p, r in replies if r.get("ok")]
        yield from self._each_part("release_reservation", rid, held, "release", "rollback", "")
        # Nothing of the request stands: the key binds nothing (a retry is a new request).
        yield from self._unclaim(idem, actor, fp, set(parts), [part.partition for part in held])
        for result in refused:
            if result["error"] != "insufficient_stock":
                raise_for_error(result, rid)
        shortfalls = [Shortfall(**line) for r in refused for line in r["lines"]]
        unknown = yield from self._never_stocked(shortfalls)
        if unknown:
            raise SkuNotFound.for_lines(unknown)
        raise InsufficientStock.for_lines(shortfalls)

    def _never_stocked(self, shortfalls: list[Shortfall]) -> Op[list[tuple[str, str]]]:
        """The short lines whose SKU has no stock record at any location (its locations
        set is empty): a typo, not a sell-out. Asked only on the refusal path, so the
        reserve script keeps no extra key per line; a line with units free is known."""
        empty = [s for s in shortfalls if s.available == 0]
        if not empty:
            return []
        skus = sorted({s.sku for s in empty})
        found = yield Pipeline(
            [("EXISTS", self.keys.locations(self.partition_of(sku), sku)) for sku in skus]
        )
        unknown = {sku for sku, exists in zip(skus, found, strict=True) if not int(exists)}
        return [(s.sku, s.location) for s in empty if s.sku in unknown]

    def _reserve_call(
        self,
        rid: str,
        p: int,
        lines: list[Line],
        fp: str,
        ttl_ms: int,
        channel: str,
        actor: str,
        idem: str,
    ) -> Call:
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, set(self.parts_of(rid))),
            self.keys.reservation(p, rid),
            self.keys.expiries(p),
            self.keys.pins(p),
        ]
        config = self.config
        args = self._write_args(fp, actor, idem)
        args += [rid, ttl_ms, channel, config.reclaim_per_line_max]
        args += [config.reservation_retention_ms, len(lines)]
        for line in lines:
            keys.extend(self.keys.reservation_line_keys(p, line.sku, line.location))
            args.extend((line.sku, line.location, line.qty))
        if channel:  # [channels] its rules in this partition (lua/includes/channels.lua)
            keys.append(self.keys.channel(p, channel))
        keys.append(self.keys.drop_index(p))  # [drops] see _drop_reserving
        return Call("reserve", keys, args)

    def _prepare(
        self, op: str, reservation_id: str, actor: str, idem: str | None, *request: Any
    ) -> Op[tuple[list[Part], str, str, str]]:
        """Validation, idempotency claim and the parts, shared by the operations on an
        existing reservation. Returns (parts, fingerprint, actor, idempotency key)."""
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint(op, reservation_id, *request)
        parts = set(self.parts_of(reservation_id))
        # Read before the claim: a missing reservation binds nothing to the key. A
        # one-partition reservation this engine knows needs no read (one round trip); if
        # it is gone, its script refuses and the claim is given back (_on_parts).
        found = yield from self._parts_for_write(reservation_id)
        yield from self._claim(idem_key, actor, fp, parts, "")
        return found, fp, actor, idem_key

    def _on_parts(
        self,
        script: str,
        rid: str,
        parts: list[Part],
        fp: str,
        actor: str,
        idem: str,
        *opts: Any,
        owner_only: bool,
    ) -> Op[Reservation]:
        """Runs ``script`` on each part in order; the reservation it leaves (a replay when
        every part replayed). A refusal by the first part (nothing done) frees the key."""
        views: list[Json] = []
        every_part_replayed = True
        for part in parts:
            result, was_replayed = yield from self._run_part(
                script, rid, part, *opts, fp=fp, actor=actor, idem=idem, owner_only=owner_only
            )
            if "error" in result and not views:
                yield from self._unclaim(idem, actor, fp, {p.partition for p in parts})
            raise_for_error(result, rid)
            views.append(result["reservation"])
            every_part_replayed = every_part_replayed and was_replayed
        return replayed(reservation_from_views(views), every_part_replayed)

    @operation
    def commit(
        self,
        reservation_id: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
        owner_only: bool = False,
    ) -> Op[Reservation]:
        """Held -> committed while the hold is live; committing twice is a no-op.
        ``owner_only``: refuse (``NotOwner``, nothing written) unless ``actor`` created the
        reservation; HTTP asks it for API keys without the ``stock`` scope."""
        rid = reservation_id
        owner_only = validation.flag(owner_only, "owner_only")
        parts, fp, actor, idem = yield from self._prepare("commit", rid, actor, idempotency_key)
        if len(parts) == 1:
            return (
                yield from self._on_parts(
                    "commit_reservation",
                    rid,
                    parts,
                    fp,
                    actor,
                    idem,
                    "direct",
                    "",
                    owner_only=owner_only,
                )
            )
        return (yield from self._commit_parts(rid, parts, fp, actor, idem, owner_only))

    def _commit_parts(
        self, rid: str, parts: list[Part], fp: str, actor: str, idem: str, owner_only: bool
    ) -> Op[Reservation]:
        """Two-phase commit across partitions: pin every part (home first), then commit
        the home part, which is the decision, then the others. A pin that finds a part
        expired or released gives every other part back; the sweeper finishes or undoes
        the pins of a caller that died half way (see docs/design/keys.md). A refusal before the
        decision frees the key (``_unclaim``)."""
        token = secrets.token_hex(8)
        pinned: list[Part] = []
        for part in parts:
            result, _ = yield from self._run_part(
                "pin_reservation",
                rid,
                part,
                token,
                self.config.pin_ms,
                actor=actor,
                owner_only=owner_only,
            )
            if result.get("ok"):
                if result["reservation"]["status"] in ("committed", "shipped"):
                    yield from self._each_part("unpin_reservation", rid, pinned, token, 0)
                    return (yield from self._get_reservation(rid))
                pinned.append(part)
                continue
            if result.get("status") in ("expired", "released"):
                rest = [p for p in parts if p is not part]
                yield from self._each_part(
                    "release_reservation", rid, rest, "release", "expired_part", token
                )
            else:
                yield from self._each_part("unpin_reservation", rid, pinned, token, 0)
            yield from self._unclaim(idem, actor, fp, {p.partition for p in parts})
            raise_for_error(result, rid)
        views = []
        for part in parts:
            result, _ = yield from self._run_part(
                "commit_reservation", rid, part, "pinned", token, actor=actor
            )
            if result.get("error") and part is parts[0]:
                yield from self._each_part("unpin_reservation", rid, parts[1:], token, 0)
            raise_for_error(result, rid)
            views.append(result["reservation"])
        return reservation_from_views(views)

    @operation
    def release(
        self,
        reservation_id: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
        owner_only: bool = False,
    ) -> Op[Reservation]:
        """Held -> released (units available again); releasing twice is a no-op.
        ``owner_only``: refuse (``NotOwner``, nothing written) unless ``actor`` created the
        reservation; HTTP asks it for API keys without the ``stock`` scope."""
        rid = reservation_id
        owner_only = validation.flag(owner_only, "owner_only")
        parts, fp, actor, idem = yield from self._prepare("release", rid, actor, idempotency_key)
        return (
            yield from self._on_parts(
                "release_reservation",
                rid,
                parts,
                fp,
                actor,
                idem,
                "release",
                "release",
                "",
                owner_only=owner_only,
            )
        )

    @operation
    def extend(
        self,
        reservation_id: str,
        ttl_seconds: float,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
        owner_only: bool = False,
    ) -> Op[Reservation]:
        """A live hold now expires ``ttl_seconds`` from the server's clock.
        ``owner_only``: refuse (``NotOwner``, nothing written) unless ``actor`` created the
        reservation; HTTP asks it for API keys without the ``stock`` scope."""
        rid = reservation_id
        owner_only = validation.flag(owner_only, "owner_only")
        ttl_ms = validation.ttl_ms(ttl_seconds, self.config.default_ttl_ms, self.config.max_ttl_ms)
        parts, fp, actor, idem = yield from self._prepare(
            "extend", rid, actor, idempotency_key, ttl_ms
        )
        views: list[Json] = []
        every_part_replayed = True
        for part in parts:
            result, was_replayed = yield from self._run_part(
                "extend_reservation",
                rid,
                part,
                ttl_ms,
                fp=fp,
                actor=actor,
                idem=idem,
                owner_only=owner_only,
            )
            if result.get("status") == "expired":
                # One expired part makes the whole reservation uncommittable: free the rest.
                rest = [p for p in parts if p is not part]
                yield from self._each_part(
                    "release_reservation", rid, rest, "release", "expired_part", ""
                )
            if "error" in result and not views:
                yield from self._unclaim(idem, actor, fp, {p.partition for p in parts})
            raise_for_error(result, rid)
            views.append(result["reservation"])
            every_part_replayed = every_part_replayed and was_replayed
        return replayed(reservation_from_views(views), every_part_replayed)

    @operation
    def ship(
        self,
        reservation_id: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
        owner_only: bool = False,
    ) -> Op[Reservation]:
        """Committed -> shipped: the units leave on_hand.
        ``owner_only``: refuse (``NotOwner``, nothing written) unless ``actor`` created the
        reservation; HTTP asks it for API keys without the ``stock`` scope."""
        rid = reservation_id
        owner_only = validation.flag(owner_only, "owner_only")
        parts, fp, actor, idem = yield from self._prepare("ship", rid, actor, idempotency_key)
        return (
            yield from self._on_parts(
                "ship_reservation", rid, parts, fp, actor, idem, owner_only=owner_only
            )
        )

    @operation
    def get_reservation(self, reservation_id: str) -> Op[Reservation]:
        """A reservation and its status (held, committed, released, expired, shipped)."""
        return self._get_reservation(reservation_id)

    def _get_reservation(self, reservation_id: str) -> Op[Reservation]:
        parts = yield from self._read_parts(reservation_id)
        statuses = [part_status(part.record, part.now_ms) for part in parts]
        return reservation(reservation_id, [part.record for part in parts], statuses)
