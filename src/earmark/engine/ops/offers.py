"""The offer part of the scripts that free or commit a drop's hold (release, expiry,
commit) or add units of a drop's SKU (receipts of stock, purchase orders and transfers,
adjustments, counts, restocked returns; lua/includes/offers.lua). Units such a script
frees go to the head of the SKU's waitlist in the same script; it needs the queue's
head, each candidate's pending entries and a fresh reservation id per offer in its KEYS
and ARGV. A call that did not bring them (or whose head moved since it was read) is
answered ``offer_keys`` before anything is written, and is made again with what the
queue holds now."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from earmark import limits
from earmark.engine.ops.base import RECLAIM_MORE, OpsBase
from earmark.engine.replies import Json, raise_for_error, script_reply, text
from earmark.engine.steps import Call, Op, Pipeline

# The freeing script's answer when the part is a drop's and the call did not bring that
# drop's offer keys (lua/includes/offers.lua, offer_check).
OFFER_KEYS = "offer_keys"
# Reservation scripts that take an offer part after their own arguments (each gives
# back a drop's hold it finds expired; release and commit also end offers).
OFFERING_SCRIPTS = frozenset(
    {
        "release_reservation",
        "commit_reservation",
        "extend_reservation",
        "ship_reservation",
        "pin_reservation",
    }
)
# The actor of the sweeper's offer pass (its events name it).
SWEEP = "earmark:sweeper"


def offer_id(partition: int) -> str:
    """A fresh reservation id for an offer held in ``partition``."""
    return f"rsv_{secrets.token_hex(12)}_{partition}"


class Offering(OpsBase):
    def _offering(
        self,
        call: Call,
        partition: int,
        lines: list[tuple[str, str]],
        drop: str = "",
        *,
        line_holds: bool = False,
    ) -> Op[Any]:
        """Runs a call on a script that takes an offer part (``lines``: the (sku,
        location) it may offer units of) with the offer part its script asks for, read
        first when ``drop`` is named; returns its reply as ``script_reply`` reads it.
        ``line_holds``: the script's own keys lack the holds of its lines, so a named
        offer part is preceded by the hold expiries and hold qty of the offer line.
        A stock script's ``reclaim_more`` is called again with the same offer part, as
        ``_reclaiming`` does, at most ``RECLAIM_ROUNDS_MAX`` calls."""
        keys: list[str] = []
        args: list[Any] = [""]
        if drop:
            keys, args = yield from self._offer_part(partition, drop, lines, line_holds)
        offer_rounds = reclaim_rounds = 0
        while True:
            reply = yield Call(call.script, [*call.keys, *keys], [*call.args, *args])
            result, _ = script_reply(reply)
            error = result.get("error")
            if error == RECLAIM_MORE and reclaim_rounds + 1 < limits.RECLAIM_ROUNDS_MAX:
                reclaim_rounds += 1
                continue
            offer_rounds += 1
            if error != OFFER_KEYS or offer_rounds >= limits.OFFER_KEY_ROUNDS_MAX:
                return reply  # still offer_keys: raise_for_error answers it (retry later)
            drop = str(result["drop"])
            keys, args = yield from self._offer_part(partition, drop, lines, line_holds)

    def _offer_part(
        self, p: int, drop_id: str, lines: list[tuple[str, str]], line_holds: bool = False
    ) -> Op[tuple[list[str], list[Any]]]:
        """The offer KEYS and ARGV for a part of ``drop_id``: its first line of one of the
        drop's SKUs, that SKU's queue head and each candidate's pending entries (after
        that line's hold expiries and hold qty when ``line_holds``)."""
        skus = sorted({sku for sku, _ in lines})
        reads: list[tuple[str | int, ...]] = [
            ("HMGET", self.keys.drop(p, drop_id), "skus", "limit")
        ]
        reads += [
            ("ZRANGE", self.keys.drop_queue(p, drop_id, sku), 0, limits.OFFERS_PER_CALL_MAX - 1)
            for sku in skus
        ]
        replies = yield Pipeline(reads)
        raw_skus, limit = replies[0]
        if raw_skus is None:
            raise RuntimeError(f"a reservation part names drop {drop_id}, which has no rules")
        drop_skus = set(orjson.loads(text(raw_skus)))
        sku, location = next((s, loc) for s, loc in lines if s in drop_skus)
        heads = [text(c) for c in replies[1 + skus.index(sku)]]
        pending: list[list[str]] = [[] for _ in heads]
        if limit is not None and heads:
            entries = yield Pipeline(
                [("HGETALL", self.keys.drop_customer(p, drop_id, c)) for c in heads]
            )
            pending = [
                sorted(text(rid) for rid, units in e.items() if not text(units).startswith("c:"))
                for e in entries
            ]
        keys: list[str] = []
        if line_holds:
            keys += [
                self.keys.hold_expiries(p, sku, location),
                self.keys.hold_qty(p, sku, location),
            ]
        keys += [
            self.keys.drop(p, drop_id),
            self.keys.drop_waitlist(p, drop_id),
            self.keys.drop_queue(p, drop_id, sku),
            self.keys.drop_at_limit(p, drop_id),
        ]
        args: list[Any] = [drop_id, sku, location, len(heads)]
        for customer, rids in zip(heads, pending, strict=True):
            rid = offer_id(p)
            keys += [self.keys.drop_customer(p, drop_id, customer), self.keys.reservation(p, rid)]
            keys += [self.keys.reservation(p, r) for r in rids]
            args += [customer, rid, len(rids), *rids]
        return keys, args

    def _stock_offer_write(
        self,
        call: Call,
        sku: str,
        location: str,
        idem: str,
        actor: str,
        fp: str,
        subject: str,
    ) -> Op[tuple[Json, bool]]:
        """A stock-layout write that may free units of a drop's SKU (a receipt, a
        restocked return, an adjustment, a count): the partition's drop index,
        reservation expiries and the offers' retention go after its own KEYS and ARGV,
        then the offer part its script asks for. Returns (result, replayed), or the
        refusal raised (after ``_unclaim``)."""
        p = self.partition_of(sku)
        keys = [*call.keys, self.keys.drop_index(p), self.keys.expiries(p)]
        args = [*call.args, self.config.reservation_retention_ms]
        reply = yield from self._offering(Call(call.script, keys, args), p, [(sku, location)])
        result, was_replayed = script_reply(reply)
        if "error" in result:
            yield from self._unclaim(idem, actor, fp, {p})
            raise_for_error(result, subject)
        return result, was_replayed

    def _offer_pass(self, p: int) -> Op[int]:
        """The sweeper's offer pass on partition ``p``: every location of every SKU of a
        drop with a waitlist and someone in its queue gets an ``offer_waitlist`` call.
        Returns the offers made."""
        (index,) = yield Pipeline([("HGETALL", self.keys.drop_index(p))])
        by_drop: dict[str, list[str]] = {}
        for sku, drop in index.items():
            by_drop.setdefault(text(drop), []).append(text(sku))
        pairs = sorted((d, s) for d, skus in by_drop.items() for s in skus)
        if not pairs:
            return 0
        depths = yield Pipeline([("ZCARD", self.keys.drop_queue(p, d, s)) for d, s in pairs])
        waited = [pair for pair, depth in zip(pairs, depths, strict=True) if int(depth)]
        if not waited:
            return 0
        places = yield Pipeline([("SMEMBERS", self.keys.locations(p, s)) for _, s in waited])
        offered = 0
        for (drop, sku), locations in zip(waited, places, strict=True):
            for location in sorted(text(loc) for loc in locations):
                stock, hexp, hqty, _ = self.keys.reservation_line_keys(p, sku, location)
                keys = [self.keys.meta(p), self.keys.events(p), self._idem_key(p, SWEEP, "", {p})]
                keys += [self.keys.expiries(p), stock, hexp, hqty]
                args = [*self._write_args("", SWEEP, ""), self.config.reservation_retention_ms]
                call = Call("offer_waitlist", keys, args)
                reply = yield from self._offering(call, p, [(sku, location)], drop)
                result, _ = script_reply(reply)
                raise_for_error(result, f"{sku}@{location}")
                offered += int(result["offered"])
        return offered
