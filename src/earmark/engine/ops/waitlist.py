"""The waitlist of a drop (docs/drops.md, "Waitlist"): a customer joins the line of one
of the drop's SKUs, reads their place, or leaves it. Entries and queues carry the hash
tag of the drop's partition, beside its rules (lua/includes/waitlist.lua)."""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.drops import DropOps, opening_rank
from earmark.engine.ops.parts import ReservationParts
from earmark.engine.replies import Json, fingerprint, raise_for_error, replayed, text
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import (
    CustomerLimitExceeded,
    InvalidRequest,
    SkuNotInDrop,
    WaitlistEntryNotFound,
)
from earmark.models import WaitlistEntry, WaitlistOffer, from_ms

# decline_waitlist's answer for an entry that holds an offer: releasing the offer's
# reservation declines it (and passes its units on in that script).
WAITLIST_OFFERED = "waitlist_offered"


class WaitlistOps(DropOps, ReservationParts):
    @operation
    def join_waitlist(
        self,
        drop_id: str,
        customer: str,
        sku: str,
        qty: int = 1,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[WaitlistEntry]:
        """Puts ``customer`` in line for ``qty`` units of ``sku``, behind everyone already
        waiting. Joining again while waiting (or holding an offer) returns that entry
        unchanged; after the entry has finished (declined, expired, converted) the customer
        joins again at the back. ``WaitlistDisabled`` when the drop's ``waitlist`` is off,
        ``SkuNotInDrop``, ``CustomerLimitExceeded`` for more units than the drop's limit."""
        p, record = yield from self._find_drop(drop_id)
        who = self._waitlister(customer)
        sku = self._drop_sku(drop_id, record, sku)
        units = validation.whole(qty, "qty", 1, limits.DROP_CUSTOMER_LIMIT_MAX)
        limit = record.get("limit", "")
        if limit and units > int(limit):
            raise CustomerLimitExceeded(
                f"drop {drop_id} allows {limit} units per customer: {units} asked",
                drop=drop_id,
                limit=int(limit),
                used=0,
                requested=units,
            )
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("join_waitlist", drop_id, who, sku, units)
        yield from self._claim(idem, actor, fp, {p}, "")
        call = self._waitlist_call("join_waitlist", p, drop_id, who, sku, fp, actor, idem)
        seed = record.get("seed")
        # The script decides on Redis TIME whether the join is before opens_at, and only
        # then places the customer by this rank (the fair opening).
        call.args.extend((units, repr(opening_rank(seed, sku, who)) if seed else ""))
        result, was_replayed = yield from self._write(call, idem, actor, fp, {p}, drop_id)
        return replayed(_entry(drop_id, result["entry"]), was_replayed)

    @operation
    def decline_waitlist(
        self,
        drop_id: str,
        customer: str,
        sku: str | None = None,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[WaitlistEntry]:
        """The customer leaves the line (``declined``); declining a finished entry changes
        nothing. An entry holding an offer declines it: the offer's reservation is
        released and its units go to the next in line in that script. ``sku`` may be
        left out while the customer has an entry for one SKU only.
        ``WaitlistEntryNotFound`` when the customer never joined."""
        p, record = yield from self._find_drop(drop_id)
        who = validation.customer(customer)
        if not who:
            raise self._no_entry(drop_id, who, None)
        sku = yield from self._entry_sku(p, drop_id, record, who, sku)
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("decline_waitlist", drop_id, who, sku)
        yield from self._claim(idem, actor, fp, {p}, "")
        call = self._waitlist_call("decline_waitlist", p, drop_id, who, sku, fp, actor, idem)
        result, was_replayed = yield from self._reclaiming(call)
        if result.get("error") == WAITLIST_OFFERED:
            yield from self._decline_offer(str(result["reservation"]), actor)
            # The entry is finished now: the same call answers it, and keeps the answer.
            result, was_replayed = yield from self._reclaiming(call)
        if "error" in result:
            yield from self._unclaim(idem, actor, fp, {p})
            raise_for_error(result, drop_id)
        return replayed(_entry(drop_id, result["entry"]), was_replayed)

    def _decline_offer(self, reservation_id: str, actor: str) -> Op[None]:
        """Releases an offer's reservation as its customer's decline (no idempotency key
        of its own: releasing twice is a no-op, and the decline keeps the key)."""
        (part,) = yield from self._read_parts(reservation_id)
        result, _ = yield from self._run_part(
            "release_reservation", reservation_id, part, "release", "declined", "", actor=actor
        )
        if "error" in result and result.get("status") not in ("committed", "shipped"):
            raise_for_error(result, reservation_id)  # a committed offer is converted

    @operation
    def get_waitlist_entry(
        self, drop_id: str, customer: str, sku: str | None = None
    ) -> Op[WaitlistEntry]:
        """The customer's entry: status and place in line. ``sku`` may be left out while
        the customer has an entry for one SKU of the drop only (else ``InvalidRequest``,
        field ``sku``). Reads only."""
        p, record = yield from self._find_drop(drop_id)
        who = validation.customer(customer)
        if not who:
            raise self._no_entry(drop_id, who, None)
        sku = yield from self._entry_sku(p, drop_id, record, who, sku)
        replies = yield Pipeline(
            [
                ("HGET", self.keys.drop_waitlist(p, drop_id), f"{sku}|{who}"),
                ("ZRANK", self.keys.drop_queue(p, drop_id, sku), who),
            ]
        )
        raw, rank = replies
        if raw is None:
            raise self._no_entry(drop_id, who, sku)
        stored = orjson.loads(text(raw))
        status = str(stored["status"])
        if status == "waiting" and rank is None:
            raise RuntimeError(f"drop {drop_id}: a waiting entry of {who} is not in its queue")
        position = int(rank) + 1 if status == "waiting" else 0
        view = {**stored, "customer": who, "sku": sku, "position": position}
        return _entry(drop_id, view)

    def _waitlister(self, customer: object) -> str:
        who = validation.customer(customer)
        if not who:
            raise InvalidRequest("customer is required", field="customer")
        return who

    @staticmethod
    def _drop_sku(drop_id: str, record: dict[str, str], sku: object) -> str:
        name = validation.sku(sku)
        if name not in orjson.loads(record["skus"]):
            raise SkuNotInDrop(f"{name} is not a SKU of drop {drop_id}", sku=name, drop=drop_id)
        return name

    @staticmethod
    def _no_entry(drop_id: str, customer: str, sku: str | None) -> WaitlistEntryNotFound:
        return WaitlistEntryNotFound(
            f"the customer has no waitlist entry on drop {drop_id}", customer=customer, sku=sku
        )

    def _entry_sku(
        self, p: int, drop_id: str, record: dict[str, str], customer: str, sku: object
    ) -> Op[str]:
        """The SKU a customer's entry is for: the one named, or the only one they have."""
        if sku is not None:
            return self._drop_sku(drop_id, record, sku)
        skus = [str(s) for s in orjson.loads(record["skus"])]
        fields = [f"{s}|{customer}" for s in skus]
        (found,) = yield Pipeline([("HMGET", self.keys.drop_waitlist(p, drop_id), *fields)])
        mine = [s for s, raw in zip(skus, found, strict=True) if raw is not None]
        if not mine:
            raise self._no_entry(drop_id, customer, None)
        if len(mine) > 1:
            raise InvalidRequest(
                "the customer waits for several SKUs of this drop: name one", field="sku"
            )
        return mine[0]

    def _waitlist_call(
        self,
        script: str,
        p: int,
        drop_id: str,
        customer: str,
        sku: str,
        fp: str,
        actor: str,
        idem: str,
    ) -> Call:
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, {p}),
            self.keys.drop(p, drop_id),
            self.keys.drop_waitlist(p, drop_id),
            self.keys.drop_queue(p, drop_id, sku),
        ]
        args: list[Any] = [*self._write_args(fp, actor, idem), drop_id, customer, sku]
        return Call(script, keys, args)


def _entry(drop_id: str, view: Json) -> WaitlistEntry:
    offer = None
    if view["status"] == "offered":
        expires_at = from_ms(int(view["expires_at"]))
        if expires_at is None:
            raise RuntimeError(f"drop {drop_id}: an offered entry without its expiry")
        offer = WaitlistOffer(reservation_id=str(view["reservation"]), expires_at=expires_at)
    return WaitlistEntry(
        drop=drop_id,
        customer=str(view["customer"]),
        sku=str(view["sku"]),
        qty=int(view["qty"]),
        status=view["status"],
        position=int(view["position"]),
        offer=offer,
        joined_at=_at(view["joined_at"]),
        changed_at=_at(view["changed_at"]),
    )


def _at(ms: object) -> datetime.datetime:
    """Redis server time (ms) as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(int(str(ms)) / 1000, tz=datetime.UTC)
