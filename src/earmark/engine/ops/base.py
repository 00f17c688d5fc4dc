"""What every ops mixin shares: the engine's key names, partition count and config, the
idempotency records beside the state a script changes, and the stock-layout call.

Each resource's operations live in a mixin of their own (``stock``, ``reservations``,
``transfers``, ...), composed into ``Operations`` (``earmark.engine.ops``) as redis-py
composes ``CoreCommands``. The drivers (``Engine``, ``AsyncEngine``) supply ``keys``,
``config`` and the store's ``state``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import orjson

from earmark import limits, validation
from earmark.engine.bootstrap import StoreState
from earmark.engine.config import EngineConfig
from earmark.engine.replies import Json, fingerprint, raise_for_error, script_reply, text
from earmark.engine.steps import Batch, Call, Op
from earmark.errors import IdempotencyConflict
from earmark.keys import Keys, idempotency_digest, partition_of
from earmark.models import Line

LineInput = Line | tuple[str, int] | tuple[str, int, str]
# A script's answer when it may not decide yet (lua/includes/holds.lua, reclaim_more).
RECLAIM_MORE = "reclaim_more"
DEFAULT_ACTOR = "library"


class OpsBase:
    """The state every operation reads; set by the driver."""

    keys: Keys
    config: EngineConfig
    state: StoreState | None

    @property
    def partitions(self) -> int:
        if self.state is None:
            raise RuntimeError(f"call {type(self).__name__}.start() first")
        return self.state.partitions

    def partition_of(self, sku: str) -> int:
        """The partition holding every location of ``sku``."""
        return partition_of(sku, self.partitions)

    def _who(self, actor: str, idem: str | None, *, required: bool) -> tuple[str, str]:
        actor = validation.text(actor, "actor", limits.ACTOR_LENGTH_MAX, required=True)
        return actor, validation.idempotency_key(idem, required=required)

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

    def _trusted(self, p: int) -> tuple[str | int, ...]:
        """A command to send first in a pipeline of plain reads of partition ``p``: its
        reply goes to ``_check_trusted``, so an emptied or fenced Redis answers 503, not
        'not found'."""
        return ("HMGET", self.keys.meta(p), "generation", "fenced")

    @staticmethod
    def _check_trusted(reply: Any) -> None:
        generation, fenced = reply
        if not generation:
            reason = "no generation marker: its data was lost or never set up"
            raise_for_error({"error": "store_not_ready", "reason": reason})
        if fenced:
            raise_for_error({"error": "store_not_ready", "reason": f"fenced: {text(fenced)}"})

    def _read_part(self, p: int, reservation_id: str) -> Op[tuple[Json | None, int]]:
        """This partition's part of a reservation (None when there is none) and the
        server's clock; ``StoreNotReady`` when the partition cannot be trusted."""
        keys = [self.keys.meta(p), self.keys.reservation(p, reservation_id)]
        raw = yield Call("read_reservation", keys, [])
        record = orjson.loads(raw[0])
        if isinstance(record, dict) and "error" in record:
            raise_for_error(record)
        return record, int(raw[1])

    def _unclaim(
        self, idem: str, actor: str, fp: str, parts: set[int], held: Iterable[int] = ()
    ) -> Op[None]:
        """Forgets a request refused as a whole (nothing of it stands): its home claim, and
        the ``digest/part`` records of the parts ``held`` before the refusal and rolled
        back since. A refusal binds nothing (lua/includes/write.lua, ``finish``): without
        this a retry would replay a rolled-back part, and the key could not carry another
        request. Only records with this request's fingerprint go
        (lua/release_idempotency.lua); nothing to do where ``_claim`` claimed nothing."""
        if not idem or self.partitions == 1:
            return
        digest = idempotency_digest(actor, idem)
        home = self._key_home(digest)
        if parts == {home}:
            return
        records = [self.keys.idempotency(home, digest)]
        records += [self.keys.idempotency(p, f"{digest}/part") for p in sorted(set(held))]
        yield Batch([Call("release_idempotency", [key], [fp]) for key in records])

    def _reclaiming(self, call: Call) -> Op[tuple[Json, bool]]:
        """Runs a write script again while it answers ``reclaim_more``: the per-call bound
        on expired holds given back is kept, but an answer is only given once it does not
        depend on expired holds still counted. Each such call gave back a full bound of
        them (progress); after ``RECLAIM_ROUNDS_MAX`` calls the reply is still
        ``reclaim_more`` (``ReclaimBacklog`` for ``raise_for_error``)."""
        result: Json = {}
        was_replayed = False
        for _ in range(limits.RECLAIM_ROUNDS_MAX):
            result, was_replayed = script_reply((yield call))
            if result.get("error") != RECLAIM_MORE:
                break
        return result, was_replayed

    def _write(
        self, call: Call, idem: str, actor: str, fp: str, parts: set[int], subject: str
    ) -> Op[tuple[Json, bool]]:
        """One write script whose request lives in one call: its result and whether it
        was replayed, or the refusal raised (after ``_unclaim``)."""
        result, was_replayed = yield from self._reclaiming(call)
        if "error" in result:
            yield from self._unclaim(idem, actor, fp, parts)
            raise_for_error(result, subject)
        return result, was_replayed

    def _stock_call(
        self, script: str, sku: str, location: str, fp: str, actor: str, idem: str, *opts: Any
    ) -> Call:
        """A call on the stock layout of lua/includes/stock.lua."""
        p = self.partition_of(sku)
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
        args = self._write_args(fp, actor, idem)
        args += [sku, location, self.config.reclaim_per_line_max, *opts]
        return Call(script, keys, args)

    def _write_args(self, fp: str, actor: str, idem: str) -> list[str | int]:
        """The ARGV prefix every write script takes (lua/includes/write.lua)."""
        return [fp, actor, idem, self.config.idempotency_retention_ms]

    def _stock_write(
        self,
        script: str,
        sku: str,
        location: str,
        actor: str,
        idem: str | None,
        *opts: Any,
        qty_checked: bool = False,
    ) -> Op[tuple[Json, bool]]:
        """A script on the stock layout (lifecycle writes): validation of the (sku, location) and of
        the first option (a qty, unless ``qty_checked``), idempotency, one call. Returns
        the result and whether it was replayed."""
        sku, location = validation.sku(sku), validation.location(location)
        if not qty_checked:
            validation.qty(opts[0])
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint(script, sku, location, *opts)
        parts = {self.partition_of(sku)}
        yield from self._claim(idem_key, actor, fp, parts, "")
        call = self._stock_call(script, sku, location, fp, actor, idem_key, *opts)
        return (yield from self._write(call, idem_key, actor, fp, parts, f"{sku} at {location}"))
