"""Every engine operation, written once, free of I/O.

Each operation is a generator: it yields the Redis steps it needs (a script call
or a pipeline of plain commands), receives their replies, and returns a model or
raises one of our errors. ``Engine`` and ``AsyncEngine`` only drive these
generators, so blocking and asyncio callers run exactly the same logic.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from earmark import limits, validation
from earmark.engine.config import EngineConfig
from earmark.engine.replies import (
    Json,
    fingerprint,
    part_status,
    raise_for_error,
    reservation,
    reservation_from_views,
    script_reply,
    stock_level,
    text,
)
from earmark.errors import (
    IdempotencyConflict,
    InsufficientStock,
    InvalidRequest,
    ReservationNotFound,
    SkuNotFound,
)
from earmark.keys import Keys, idempotency_digest, partition_of
from earmark.models import Line, Reservation, Shortfall, StockLevel, SweepReport

T = TypeVar("T")

SWEEPER_ACTOR = "earmark:sweeper"


@dataclass(frozen=True, slots=True)
class Call:
    """Run one Lua script (EVALSHA, loading it on NOSCRIPT)."""

    script: str
    keys: list[str]
    args: list[str | int]


@dataclass(frozen=True, slots=True)
class Batch:
    """Several script calls in one round trip where the client allows it (a pipeline on
    one Redis); one after the other on a cluster. Replies come back in order."""

    calls: list[Call]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Plain commands sent in one round trip (no transaction)."""

    commands: list[tuple[str | int, ...]]


Step = Call | Batch | Pipeline
Op = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Part:
    """One partition's part of a reservation as read from Redis."""

    partition: int
    record: Json
    now_ms: int

    @property
    def lines(self) -> list[tuple[str, str]]:
        return [(line["sku"], line["location"]) for line in self.record["lines"]]


class Operations:
    """The operations of one engine: its key names, partition count and config."""

    def __init__(self, keys: Keys, partitions: int, config: EngineConfig) -> None:
        self.keys = keys
        self.partitions = partitions
        self.config = config

    # -- helpers ---------------------------------------------------------------

    def partition(self, sku: str) -> int:
        return partition_of(sku, self.partitions)

    def parts_of(self, reservation_id: str) -> list[int]:
        """The partitions a reservation spans; encoded in its id (home partition first)."""
        validation.reservation_id(reservation_id)
        parts = [int(p) for p in reservation_id.rsplit("_", 1)[1].split("-")]
        if any(p >= self.partitions for p in parts) or len(set(parts)) != len(parts):
            raise InvalidRequest("not a reservation id of this store", field="reservation_id")
        return parts

    def _idem_key(self, partition: int, actor: str, idem: str, parts: set[int]) -> str:
        """The idempotency record a script keeps beside the state it changes.

        A key's *home* record is ``idempotency(home, digest)`` (home: a hash of the digest).
        Work done entirely in the home partition keeps its record there, so it sees every
        other use of the key. Work that touches any other partition first claims the
        home record (``_claim``) and keeps its per-partition records as ``digest/part``.
        """
        if not idem:
            return self.keys.idempotency(partition, "none")
        digest = idempotency_digest(actor, idem)
        if self.partitions == 1 or parts == {self._key_home(digest)}:
            return self.keys.idempotency(partition, digest)
        return self.keys.idempotency(partition, f"{digest}/part")

    def _key_home(self, digest: str) -> int:
        return zlib.crc32(digest.encode()) % self.partitions

    def _claim(self, idem: str, actor: str, fp: str, parts: set[int], value: str) -> Op[str]:
        """Binds the key to this request in its home record when the work happens outside
        the home partition; returns the value stored by the first claim (a reservation
        id), so a replay after a crash half way reuses it."""
        if not idem or self.partitions == 1:
            return value
        digest = idempotency_digest(actor, idem)
        home = self._key_home(digest)
        if parts == {home}:
            return value  # the operation's own record is the home record
        key = self.keys.idempotency(home, digest)
        retention = self.config.idempotency_retention_ms
        raw = yield Call("claim_idempotency", [key], [fp, value, retention])
        if text(raw[0]) == "conflict":
            raise IdempotencyConflict("this idempotency key was already used for another request")
        return text(raw[1])

    def _stock_call(
        self, script: str, sku: str, location: str, fp: str, actor: str, idem: str, *opts: Any
    ) -> Call:
        p = self.partition(sku)
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem, {p}),
            self.keys.stock(p, sku, location),
            self.keys.stock_index(p),
            self.keys.hold_expiries(p, sku, location),
            self.keys.hold_qty(p, sku, location),
            self.keys.locations(p, sku),
            self.keys.on_hand_log(p, sku, location),
        ]
        config = self.config
        args: list[str | int] = [sku, location, fp, actor, idem]
        args += [config.idempotency_retention_ms, config.reclaim_per_line_max, *opts]
        return Call(script, keys, args)

    def _part_call(
        self,
        script: str,
        reservation_id: str,
        part: Part,
        *opts: Any,
        fp: str = "",
        actor: str = SWEEPER_ACTOR,
        idem: str = "",
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
        args: list[str | int] = [
            reservation_id,
            fp,
            actor,
            idem,
            self.config.idempotency_retention_ms,
            len(part.lines),
        ]
        for sku, location in part.lines:
            keys.extend(self.keys.reservation_line_keys(p, sku, location))
            args.extend((sku, location))
        args.extend(opts)
        return Call(script, keys, args)

    def _read_parts(self, reservation_id: str) -> Op[list[Part]]:
        parts = []
        for p in self.parts_of(reservation_id):
            raw = yield Call("read_reservation", [self.keys.reservation(p, reservation_id)], [])
            record = orjson.loads(raw[0])
            if record is None:
                raise ReservationNotFound(f"no reservation {reservation_id}", id=reservation_id)
            parts.append(Part(p, record, int(raw[1])))
        return parts

    def _each_part(
        self, script: str, reservation_id: str, parts: list[Part], *opts: Any
    ) -> Op[list[Json]]:
        """Runs a cleanup script on every part and returns their replies."""
        replies = []
        for part in parts:
            raw = yield self._part_call(script, reservation_id, part, *opts)
            replies.append(script_reply(raw)[0])
        return replies

    # -- stock -----------------------------------------------------------------

    def receive(
        self, sku: str, qty: int, *, location: str, reference: str, actor: str, idem: str | None
    ) -> Op[StockLevel]:
        sku, location = validation.sku(sku), validation.location(location)
        qty = validation.qty(qty)
        reference = validation.text(reference, "reference", limits.REFERENCE_LENGTH_MAX)
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint("receive", sku, location, qty, reference)
        yield from self._claim(idem_key, actor, fp, {self.partition(sku)}, "")
        call = self._stock_call("receive_stock", sku, location, fp, actor, idem_key, qty, reference)
        result, _ = script_reply((yield call))
        raise_for_error(result)
        return stock_level(result["levels"])

    def adjust(
        self,
        sku: str,
        delta: int,
        *,
        reason: str,
        location: str,
        force: bool,
        actor: str,
        idem: str | None,
    ) -> Op[StockLevel]:
        sku, location = validation.sku(sku), validation.location(location)
        bound = limits.ADJUST_DELTA_MAX
        delta = validation.whole(delta, "delta", -bound, bound)
        if delta == 0:
            raise InvalidRequest("delta must not be zero", field="delta")
        reason = validation.text(reason, "reason", limits.REASON_LENGTH_MAX, required=True)
        if not isinstance(force, bool):
            raise InvalidRequest("force must be a boolean", field="force")
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint("adjust", sku, location, delta, reason, force)
        yield from self._claim(idem_key, actor, fp, {self.partition(sku)}, "")
        flag = "1" if force else "0"
        call = self._stock_call(
            "adjust_stock", sku, location, fp, actor, idem_key, delta, reason, flag
        )
        result, _ = script_reply((yield call))
        raise_for_error(result)
        return stock_level(result["levels"])

    def availability(self, items: Iterable[str | tuple[str, str]]) -> Op[list[StockLevel]]:
        """Every bucket of many (sku, location) in one round trip (a plain sku: default).

        Holds past their expiry no longer count in ``reserved``, reclaimed or not."""
        wanted: list[tuple[str, str]] = []
        for item in items:
            sku, location = (item, limits.DEFAULT_LOCATION) if isinstance(item, str) else item
            wanted.append((validation.sku(sku), validation.location(location)))
            if len(wanted) > limits.SKUS_PER_READ_MAX:
                raise InvalidRequest(f"at most {limits.SKUS_PER_READ_MAX} SKUs per read")
        found = yield from self._read_stock(wanted)
        return [
            level or StockLevel(sku=sku, location=location)
            for (sku, location), level in zip(wanted, found, strict=True)
        ]

    def stock(self, sku: str, location: str) -> Op[StockLevel]:
        """One (sku, location); ``SkuNotFound`` when it was never received or adjusted."""
        sku, location = validation.sku(sku), validation.location(location)
        (level,) = yield from self._read_stock([(sku, location)])
        if level is None:
            raise SkuNotFound(
                f"no stock record for {sku} at {location}", sku=sku, location=location
            )
        return level

    def _read_stock(self, wanted: list[tuple[str, str]]) -> Op[list[StockLevel | None]]:
        """One read_stock call per partition, all in one batch."""
        by_part: dict[int, list[int]] = {}
        for index, (sku, _) in enumerate(wanted):
            by_part.setdefault(self.partition(sku), []).append(index)
        calls = []
        for p, indexes in by_part.items():
            keys = [k for i in indexes for k in self.keys.line_keys(p, *wanted[i])]
            calls.append(Call("read_stock", keys, [limits.EXPIRED_READ_PER_LINE_MAX]))
        replies = (yield Batch(calls)) if calls else []
        found: list[StockLevel | None] = [None] * len(wanted)
        for indexes, reply in zip(by_part.values(), replies, strict=True):
            for i, levels in zip(indexes, orjson.loads(reply), strict=True):
                if levels is not None:
                    levels.pop("expired_unreclaimed")
                    sku, location = wanted[i]
                    found[i] = stock_level({**levels, "sku": sku, "location": location})
        return found

    # -- reservations ------------------------------------------------------------

    def _who(self, actor: str, idem: str | None, *, required: bool) -> tuple[str, str]:
        actor = validation.text(actor, "actor", limits.ACTOR_LENGTH_MAX, required=True)
        return actor, validation.idempotency_key(idem, required=required)

    def reserve(
        self,
        lines: Iterable[Line | tuple[str, int] | tuple[str, int, str]],
        *,
        ttl_seconds: float | None,
        channel: str,
        actor: str,
        idem: str | None,
    ) -> Op[Reservation]:
        cart = validation.lines(lines)
        config = self.config
        ttl_ms = validation.ttl_ms(ttl_seconds, config.default_ttl_ms, config.max_ttl_ms)
        channel = validation.text(channel, "channel", limits.CHANNEL_LENGTH_MAX)
        actor, idem_key = self._who(actor, idem, required=True)
        by_part: dict[int, list[Line]] = {}
        for line in cart:
            by_part.setdefault(self.partition(line.sku), []).append(line)
        parts = sorted(by_part)
        fp = fingerprint("reserve", [(x.sku, x.location, x.qty) for x in cart], ttl_ms, channel)
        new_id = f"rsv_{secrets.token_hex(12)}_{'-'.join(map(str, parts))}"
        rid = yield from self._claim(idem_key, actor, fp, set(parts), new_id)
        replies: list[tuple[int, Json]] = []
        for p in parts:
            call = self._reserve_call(rid, p, by_part[p], fp, ttl_ms, channel, actor, idem_key)
            result, _ = script_reply((yield call))
            replies.append((p, result))
        refused = [r for _, r in replies if not r.get("ok")]
        if not refused:
            return reservation_from_views([r["reservation"] for _, r in replies])
        held = [Part(p, r["reservation"], 0) for p, r in replies if r.get("ok")]
        yield from self._each_part("release_reservation", rid, held, "release", "rollback", "")
        for result in refused:
            if result["error"] != "insufficient_stock":
                raise_for_error(result, rid)
        shortfalls = [Shortfall(**line) for r in refused for line in r["lines"]]
        names = ", ".join(f"{s.sku}@{s.location} ({s.available}/{s.requested})" for s in shortfalls)
        raise InsufficientStock(f"not enough stock for: {names}", shortfalls)

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
        args: list[str | int] = [
            rid,
            fp,
            ttl_ms,
            channel,
            actor,
            idem,
            config.idempotency_retention_ms,
            config.reclaim_per_line_max,
            config.reservation_retention_ms,
            len(lines),
        ]
        for line in lines:
            keys.extend(self.keys.reservation_line_keys(p, line.sku, line.location))
            args.extend((line.sku, line.location, line.qty))
        return Call("reserve", keys, args)

    def _prepare(
        self, op: str, reservation_id: str, actor: str, idem: str | None, *request: Any
    ) -> Op[tuple[list[Part], str, str, str]]:
        """Validation, idempotency claim and the parts, shared by the operations on an
        existing reservation. Returns (parts, fingerprint, actor, idempotency key)."""
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint(op, reservation_id, *request)
        parts = set(self.parts_of(reservation_id))
        yield from self._claim(idem_key, actor, fp, parts, "")
        return (yield from self._read_parts(reservation_id)), fp, actor, idem_key

    def _on_parts(
        self, script: str, rid: str, parts: list[Part], fp: str, actor: str, idem: str, *opts: Any
    ) -> Op[list[Json]]:
        views = []
        for part in parts:
            call = self._part_call(script, rid, part, *opts, fp=fp, actor=actor, idem=idem)
            result, _ = script_reply((yield call))
            raise_for_error(result, rid)
            views.append(result["reservation"])
        return views

    def commit(self, reservation_id: str, *, actor: str, idem: str | None) -> Op[Reservation]:
        rid = reservation_id
        parts, fp, actor, idem_key = yield from self._prepare("commit", rid, actor, idem)
        if len(parts) == 1:
            views = yield from self._on_parts(
                "commit_reservation", rid, parts, fp, actor, idem_key, "direct", ""
            )
            return reservation_from_views(views)
        return (yield from self._commit_parts(rid, parts, actor))

    def _commit_parts(self, rid: str, parts: list[Part], actor: str) -> Op[Reservation]:
        """Two-phase commit across partitions: pin every part (home first), then commit
        the home part, which is the decision, then the others. A pin that finds a part
        expired or released gives every other part back; the sweeper finishes or undoes
        the pins of a caller that died half way (see docs/keys.md)."""
        token = secrets.token_hex(8)
        pinned: list[Part] = []
        for part in parts:
            call = self._part_call(
                "pin_reservation", rid, part, token, self.config.pin_ms, actor=actor
            )
            result, _ = script_reply((yield call))
            if result.get("ok"):
                if result["reservation"]["status"] in ("committed", "shipped"):
                    yield from self._each_part("unpin_reservation", rid, pinned, token, 0)
                    return (yield from self.get_reservation(rid))
                pinned.append(part)
                continue
            if result.get("status") in ("expired", "released"):
                rest = [p for p in parts if p is not part]
                yield from self._each_part(
                    "release_reservation", rid, rest, "release", "expired_part", token
                )
            else:
                yield from self._each_part("unpin_reservation", rid, pinned, token, 0)
            raise_for_error(result, rid)
        views = []
        for part in parts:
            call = self._part_call("commit_reservation", rid, part, "pinned", token, actor=actor)
            result, _ = script_reply((yield call))
            if result.get("error") and part is parts[0]:
                yield from self._each_part("unpin_reservation", rid, parts[1:], token, 0)
            raise_for_error(result, rid)
            views.append(result["reservation"])
        return reservation_from_views(views)

    def release(self, reservation_id: str, *, actor: str, idem: str | None) -> Op[Reservation]:
        rid = reservation_id
        parts, fp, actor, idem_key = yield from self._prepare("release", rid, actor, idem)
        views = yield from self._on_parts(
            "release_reservation", rid, parts, fp, actor, idem_key, "release", "release", ""
        )
        return reservation_from_views(views)

    def extend(
        self, reservation_id: str, *, ttl_seconds: float, actor: str, idem: str | None
    ) -> Op[Reservation]:
        rid = reservation_id
        ttl_ms = validation.ttl_ms(ttl_seconds, self.config.default_ttl_ms, self.config.max_ttl_ms)
        parts, fp, actor, idem_key = yield from self._prepare("extend", rid, actor, idem, ttl_ms)
        views = []
        for part in parts:
            call = self._part_call(
                "extend_reservation", rid, part, ttl_ms, fp=fp, actor=actor, idem=idem_key
            )
            result, _ = script_reply((yield call))
            if result.get("status") == "expired":
                # One expired part makes the whole reservation uncommittable: free the rest.
                rest = [p for p in parts if p is not part]
                yield from self._each_part(
                    "release_reservation", rid, rest, "release", "expired_part", ""
                )
            raise_for_error(result, rid)
            views.append(result["reservation"])
        return reservation_from_views(views)

    def ship(self, reservation_id: str, *, actor: str, idem: str | None) -> Op[Reservation]:
        rid = reservation_id
        parts, fp, actor, idem_key = yield from self._prepare("ship", rid, actor, idem)
        views = yield from self._on_parts("ship_reservation", rid, parts, fp, actor, idem_key)
        return reservation_from_views(views)

    def get_reservation(self, reservation_id: str) -> Op[Reservation]:
        parts = yield from self._read_parts(reservation_id)
        statuses = [part_status(part.record, part.now_ms) for part in parts]
        return reservation(reservation_id, [part.record for part in parts], statuses)

    # -- sweeper -----------------------------------------------------------------

    def sweep(self) -> Op[SweepReport]:
        """One pass over every partition: expire held parts past their expiry and resolve
        pins past their deadline, at most ``sweep_batch_max`` of each per partition."""
        expired = resolved = 0
        for p in range(self.partitions):
            expired += yield from self._sweep_expiries(p)
            resolved += yield from self._sweep_pins(p)
        return SweepReport(expired=expired, pins_resolved=resolved)

    def _sweep_expiries(self, p: int) -> Op[int]:
        batch = self.config.sweep_batch_max
        replies = yield Pipeline([("ZRANGE", self.keys.expiries(p), 0, batch - 1)])
        expired = 0
        for rid in map(text, replies[0]):
            raw = yield Call("read_reservation", [self.keys.reservation(p, rid)], [])
            record = orjson.loads(raw[0])
            if record is None:
                yield Pipeline([("ZREM", self.keys.expiries(p), rid)])
                continue
            part = Part(p, record, int(raw[1]))
            if record["status"] == "held" and part.now_ms < int(record["expires_at"]):
                break  # sorted by expiry: the rest are live too
            call = self._part_call("release_reservation", rid, part, "expire", "ttl", "")
            result, _ = script_reply((yield call))
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

    def _read_parts_or_none(self, rid: str) -> Op[list[Part] | None]:
        try:
            return (yield from self._read_parts(rid))
        except ReservationNotFound:
            return None

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
