"""Drops: a named set of SKUs with an opening time, a closing time and a per-customer
limit, all enforced inside the reserve script on Redis TIME (lua/includes/drops.lua).

A drop lives in its SKUs' partition: its rules, the partition's sku -> drop index, each
customer's entries and rate counter all carry that partition's hash tag, so the reserve
script that claims a hold reads them atomically (docs/drops.md explains why a drop's SKUs
must share one partition).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, OpsBase
from earmark.engine.ops.drop_figures import customers_at_limit
from earmark.engine.replies import Json, fingerprint, replayed, text
from earmark.engine.steps import Call, Op, Pipeline
from earmark.errors import DropNotFound, InvalidRequest
from earmark.models import UNCHANGED, Drop, DropPage, Unchanged, from_ms

# The reserve script's answer when a cart takes a drop's SKU and the call did not bring
# that drop's keys (lua/includes/drops.lua, drop_gate).
DROP_KEYS = "drop_keys"


def _ms(value: object, what: str) -> int:
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise InvalidRequest(f"{what} must be a date-time with a time zone", field=what)
    return int(value.timestamp() * 1000)


def _limit(value: object) -> int | None:
    if value is None:
        return None
    return validation.whole(value, "per_customer_limit", 1, limits.DROP_CUSTOMER_LIMIT_MAX)


class DropReserve(OpsBase):
    """The drop half of a reserve call, shared with ``ReservationOps``."""

    def _drop_hints(self) -> dict[tuple[int, str], str]:
        """(partition, sku) -> the drop the reserve script last named for it: a hint that
        saves the first round trip, never a decision (the script checks the index)."""
        hints: dict[tuple[int, str], str] = self.__dict__.setdefault("_drop_hint_table", {})
        if len(hints) >= limits.DROP_HINTS_MAX:
            hints.clear()
        return hints

    def _drop_reserving(
        self, call: Call, p: int, customer: str, skus: list[str]
    ) -> Op[tuple[Json, bool]]:
        """Runs a reserve call of partition ``p`` with the drop part of its KEYS and ARGV
        (lua/includes/drops.lua, drop_call_at). A cart that takes a drop's SKU and did not
        bring that drop's keys (or the customer's pending entries) is answered
        ``drop_keys`` with them, and the call is made again with their keys. Only the
        script decides: the hint of a drop seen before only saves a round trip."""
        rate = self.config.drop_attempts_per_second
        hints = self._drop_hints()
        drop = next((hints[(p, s)] for s in skus if (p, s) in hints), "")
        rids: list[str] = []
        result: Json = {}
        was_replayed = False
        for _ in range(limits.DROP_KEY_ROUNDS_MAX):
            keys = list(call.keys)
            if drop:
                keys += [
                    self.keys.drop(p, drop),
                    self.keys.drop_customer(p, drop, customer),
                    self.keys.drop_rate(p, drop, customer),
                    self.keys.drop_at_limit(p, drop),
                    self.keys.drop_waitlist(p, drop),
                ]
                keys += [self.keys.reservation(p, rid) for rid in rids]
            args = [*call.args, customer, drop, rate, len(rids), *rids]
            result, was_replayed = yield from self._reclaiming(Call(call.script, keys, args))
            if result.get("error") != DROP_KEYS:
                break
            drop, rids = str(result["drop"]), [str(r) for r in result["rids"]]
            if len(rids) > limits.DROP_CUSTOMER_LIMIT_MAX:
                raise RuntimeError(f"drop {drop}: more pending entries than any limit allows")
            for sku in skus:
                hints.pop((p, sku), None)
            hints[(p, skus[0])] = drop
        return result, was_replayed


class DropOps(OpsBase):
    @operation
    def create_drop(
        self,
        drop_id: str,
        skus: Iterable[str],
        *,
        opens_at: datetime.datetime,
        closes_at: datetime.datetime | None = None,
        per_customer_limit: int | None = None,
        hold_ttl_seconds: float | None = None,
        waitlist: bool = False,
        offer_ttl_seconds: float | None = None,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Drop]:
        """A drop of ``skus`` (all in one partition; a SKU in at most one drop). Raises
        ``DropExists`` for a taken id, ``SkuInDrop`` for a SKU of another drop."""
        drop_id = validation.name(drop_id, "id", limits.DROP_ID_LENGTH_MAX)
        if isinstance(skus, str):
            raise InvalidRequest("skus must be a list of SKUs", field="skus")
        names = [validation.sku(s) for s in skus]
        if not 1 <= len(names) <= limits.DROP_SKUS_MAX or len(set(names)) != len(names):
            raise InvalidRequest(
                f"skus must name 1 to {limits.DROP_SKUS_MAX} distinct SKUs", field="skus"
            )
        partitions = {self.partition_of(s) for s in names}
        if len(partitions) != 1:
            raise InvalidRequest(
                "a drop's SKUs must share one partition (docs/drops.md)", field="skus"
            )
        (p,) = partitions
        rules = self._rules(
            opens_at, closes_at, per_customer_limit, hold_ttl_seconds, waitlist, offer_ttl_seconds
        )
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("create_drop", drop_id, names, *rules)
        yield from self._claim(idem, actor, fp, {p}, "")
        call = self._drop_call(p, drop_id, "create", rules, names, fp, actor, idem)
        result, was_replayed = yield from self._write(call, idem, actor, fp, {p}, drop_id)
        return replayed((yield from self._drop_view(p, result["drop"])), was_replayed)

    @operation
    def update_drop(
        self,
        drop_id: str,
        *,
        opens_at: datetime.datetime | Unchanged = UNCHANGED,
        closes_at: datetime.datetime | Unchanged | None = UNCHANGED,
        per_customer_limit: int | Unchanged | None = UNCHANGED,
        hold_ttl_seconds: float | Unchanged = UNCHANGED,
        waitlist: bool | Unchanged = UNCHANGED,
        offer_ttl_seconds: float | Unchanged = UNCHANGED,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Drop]:
        """Changes the times and limits of a drop that has not opened (Redis clock);
        ``DropAlreadyOpen`` afterwards. Fields left ``UNCHANGED`` keep their value."""
        p, record = yield from self._find_drop(drop_id)
        current = self._record(drop_id, record)

        def pick(value: Any, now: Any) -> Any:
            return now if value is UNCHANGED else value

        rules = self._rules(
            pick(opens_at, current.opens_at),
            pick(closes_at, current.closes_at),
            pick(per_customer_limit, current.per_customer_limit),
            pick(hold_ttl_seconds, current.hold_ttl_seconds),
            pick(waitlist, current.waitlist),
            pick(offer_ttl_seconds, current.offer_ttl_seconds),
        )
        actor, idem = self._who(actor, idempotency_key, required=False)
        fp = fingerprint("update_drop", drop_id, *rules)
        yield from self._claim(idem, actor, fp, {p}, "")
        call = self._drop_call(p, drop_id, "update", rules, [], fp, actor, idem)
        result, was_replayed = yield from self._write(call, idem, actor, fp, {p}, drop_id)
        return replayed((yield from self._drop_view(p, result["drop"])), was_replayed)

    @operation
    def get_drop(self, drop_id: str) -> Op[Drop]:
        """A drop's rules and live figures (units sold and held over every location,
        waitlist entries in line)."""
        p, record = yield from self._find_drop(drop_id)
        return (yield from self._drop_view(p, self._lua_view(drop_id, record)))

    def _rules(
        self,
        opens_at: object,
        closes_at: object,
        per_customer_limit: object,
        hold_ttl_seconds: object,
        waitlist: object,
        offer_ttl_seconds: object,
    ) -> tuple[int, int | None, int | None, int, bool, int]:
        """Validated rules, times in ms: (opens, closes, limit, hold ttl, waitlist, offer
        ttl)."""
        opens = _ms(opens_at, "opens_at")
        closes = None if closes_at is None else _ms(closes_at, "closes_at")
        if closes is not None and closes <= opens:
            raise InvalidRequest("closes_at must be after opens_at", field="closes_at")
        hold_ms = self._ttl(hold_ttl_seconds, "hold_ttl_seconds")
        offer_ms = self._ttl(offer_ttl_seconds, "offer_ttl_seconds")
        flag = validation.flag(waitlist, "waitlist")
        return opens, closes, _limit(per_customer_limit), hold_ms, flag, offer_ms

    def _ttl(self, seconds: object, what: str) -> int:
        try:
            return validation.ttl_ms(seconds, self.config.default_ttl_ms, self.config.max_ttl_ms)
        except InvalidRequest as error:
            raise InvalidRequest(error.message.replace("ttl_seconds", what), field=what) from error

    def _drop_call(
        self,
        p: int,
        drop_id: str,
        mode: str,
        rules: tuple[int, int | None, int | None, int, bool, int],
        skus: list[str],
        fp: str,
        actor: str,
        idem: str,
    ) -> Call:
        opens, closes, limit, hold_ms, waitlist, offer_ms = rules
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, {p}),
            self.keys.drop(p, drop_id),
            self.keys.drop_index(p),
        ]
        args = self._write_args(fp, actor, idem)
        args += [mode, drop_id, opens, "" if closes is None else closes]
        args += ["" if limit is None else limit, hold_ms, "1" if waitlist else "0", offer_ms]
        args += [len(skus), *skus]
        if mode == "create":
            args.append(secrets.token_hex(16))  # the opening seed, secret until opens_at
        return Call("write_drop", keys, args)

    def _find_drop(self, drop_id: str) -> Op[tuple[int, dict[str, str]]]:
        """The partition and rules of a drop: its id does not name its partition (the
        caller chose it), so every partition is asked in one pipeline. Reads only."""
        missing = DropNotFound(f"no drop {drop_id}", id=drop_id)
        if not isinstance(drop_id, str) or not drop_id or len(drop_id) > limits.DROP_ID_LENGTH_MAX:
            raise missing
        if not limits.NAME_PATTERN.fullmatch(drop_id):
            raise missing
        found = yield Pipeline(
            [("HGETALL", self.keys.drop(p, drop_id)) for p in range(self.partitions)]
        )
        for p, raw in enumerate(found):
            if raw:
                trusted = yield Pipeline([self._trusted(p)])
                self._check_trusted(trusted[0])
                return p, {text(k): text(v) for k, v in raw.items()}
        raise missing

    @staticmethod
    def _lua_view(drop_id: str, r: dict[str, str]) -> Json:
        """The rules hash as write_drop returns it."""

        def number(name: str) -> int | None:
            value = r.get(name, "")
            return int(value) if value else None

        return {
            "id": drop_id,
            "skus": orjson.loads(r["skus"]),
            "opens_at": number("opens_at"),
            "closes_at": number("closes_at"),
            "limit": number("limit"),
            "hold_ttl_ms": number("hold_ttl_ms"),
            "waitlist": r.get("waitlist") == "1",
            "offer_ttl_ms": number("offer_ttl_ms"),
            "created_at": number("created_at"),
            "updated_at": number("updated_at"),
            "actor": r.get("actor", ""),
            "seed": r.get("seed"),
        }

    def _record(self, drop_id: str, record: dict[str, str]) -> Drop:
        return _drop(self._lua_view(drop_id, record), now_ms=0, sold=0, held=0)

    def _drop_view(self, p: int, view: Json) -> Op[Drop]:
        """The drop with its live figures: committed and reserved units of its SKUs at
        every location, entries waiting in its queues and holding an offer, and
        whether it is open on the server clock."""
        skus = [str(s) for s in view["skus"]]
        locations = yield Pipeline([("SMEMBERS", self.keys.locations(p, s)) for s in skus])
        pairs = [(s, text(loc)) for s, locs in zip(skus, locations, strict=True) for loc in locs]
        reads: list[tuple[str | int, ...]] = [
            ("TIME",),
            ("HGET", self.keys.drop_waitlist(p, str(view["id"])), "#offered"),
        ]
        reads += [("ZCARD", self.keys.drop_queue(p, str(view["id"]), s)) for s in skus]
        reads += [
            ("HMGET", self.keys.stock(p, s, loc), "reserved", "committed") for s, loc in pairs
        ]
        replies = yield Pipeline(reads)
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        offered = int(replies[1] or 0)
        waiting = sum(int(c) for c in replies[2 : 2 + len(skus)])
        levels = replies[2 + len(skus) :]
        held = sum(int(r[0] or 0) for r in levels)
        sold = sum(int(r[1] or 0) for r in levels)
        limit = view.get("limit")
        at_limit = None
        if limit is not None:
            drop_id = str(view["id"])
            at_limit = yield from customers_at_limit(self.keys, p, drop_id, int(limit), now_ms)
        return _drop(
            view,
            now_ms=now_ms,
            sold=sold,
            held=held,
            waiting=waiting,
            offered=offered,
            at_limit=at_limit,
        )


def _drop(
    view: Json,
    *,
    now_ms: int,
    sold: int,
    held: int,
    waiting: int = 0,
    offered: int = 0,
    at_limit: int | None = None,
) -> Drop:
    # A script's view leaves out what is none (cjson drops nil fields).
    opens, closes = int(view["opens_at"]), view.get("closes_at")
    seed, opened = view.get("seed"), now_ms >= opens
    return Drop(
        id=str(view["id"]),
        skus=tuple(str(s) for s in view["skus"]),
        opens_at=from_ms(opens),
        closes_at=from_ms(closes),
        per_customer_limit=view.get("limit"),
        hold_ttl_seconds=int(view["hold_ttl_ms"]) / 1000,
        waitlist=bool(view["waitlist"]),
        offer_ttl_seconds=int(view["offer_ttl_ms"]) / 1000,
        created_at=from_ms(view.get("created_at")),
        updated_at=from_ms(view.get("updated_at")),
        actor=str(view["actor"]),
        open=opened and (closes is None or now_ms < int(closes)),
        sold=sold,
        held=held,
        waiting=waiting,
        customers_at_limit=at_limit,
        offered=offered,
        opening_seed=seed if opened else None,
        opening_seed_sha256=hashlib.sha256(seed.encode()).hexdigest() if seed else None,
    )


# -- listing (GET /v1/drops, the console's Drops page) -----------------------------------


class DropListing(OpsBase):
    """Drops a page at a time, by id. Each partition's drop index (sku -> drop id) names
    every drop: a page reads the indexes (their size is the drops' SKUs, a few per drop,
    and drops are few), then the rules and figures of at most ``limit`` drops."""

    if TYPE_CHECKING:  # from DropOps, beside this mixin in Operations

        def _drop_view(self, p: int, view: Json) -> Op[Drop]: ...

        @staticmethod
        def _lua_view(drop_id: str, r: dict[str, str]) -> Json: ...

    @operation
    def list_drops(self, *, cursor: str | None = None, limit: int = 50) -> Op[DropPage]:
        """Drops with an id after ``cursor`` (the previous page's ``next_cursor``), in id
        order, with their live figures as ``get_drop`` reads them."""
        if not 1 <= limit <= limits.DROP_PAGE_LIMIT_MAX:
            raise InvalidRequest(f"limit must be between 1 and {limits.DROP_PAGE_LIMIT_MAX}")
        if cursor is not None and not limits.NAME_PATTERN.fullmatch(cursor):
            raise InvalidRequest(f"{cursor!r} is not a cursor of this listing", field="cursor")
        indexes = yield Pipeline(
            [("HVALS", self.keys.drop_index(p)) for p in range(self.partitions)]
        )
        home = {text(d): p for p, ids in enumerate(indexes) for d in ids}
        after = sorted(d for d in home if cursor is None or d > cursor)
        wanted = after[:limit]
        parts = sorted({home[d] for d in wanted})
        trusted = yield Pipeline([self._trusted(p) for p in parts])
        for reply in trusted:
            self._check_trusted(reply)
        records = yield Pipeline([("HGETALL", self.keys.drop(home[d], d)) for d in wanted])
        items: list[Drop] = []
        for drop_id, raw in zip(wanted, records, strict=True):
            if raw:  # the index names a drop whose rules are gone: nothing to show
                record = {text(k): text(v) for k, v in raw.items()}
                view = self._lua_view(drop_id, record)
                items.append((yield from self._drop_view(home[drop_id], view)))
        more = len(after) > limit
        return DropPage(items=items, next_cursor=wanted[-1] if more else None)


def opening_rank(seed: str, sku: str, customer: str) -> float:
    """A customer's place among those who joined a SKU's waitlist before the drop opened
    (docs/drops.md, "Fair opening"): the first 13 hex digits of
    SHA-256("<seed>|<sku>|<customer>") as a fraction of 16**13, in [0, 1). Sorting those
    customers by it (ties by customer id) is the order they are served in; anyone with
    the published seed and the ledger's ``waitlist_joined`` events re-derives it."""
    digest = hashlib.sha256(f"{seed}|{sku}|{customer}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13
