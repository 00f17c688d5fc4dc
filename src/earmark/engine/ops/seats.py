"""Seats with per-tenant limits (docs/seats.md), built on the reservation engine: a
tenant's seat pool is a stock record at the location ``~seats`` (on_hand = the limit,
reserved = pending invites, committed = assigned seats), an invite is a hold with a TTL
and an assignment a commitment. Every write is one script of the seat layout
(lua/includes/seats.lua) in the tenant's partition; invites and floating leases stop
counting at their expiry, given back by the next write that touches the tenant (as holds
are by reserve) or by a read that leaves them out.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import cast

import orjson

from earmark import limits, validation
from earmark.engine.operation import operation
from earmark.engine.ops.base import DEFAULT_ACTOR, OpsBase
from earmark.engine.replies import Json, fingerprint, raise_for_error, replayed
from earmark.engine.steps import Call, Op
from earmark.errors import InvalidOverage, InvalidRequest, InvalidSeatCap, InvalidUserId
from earmark.models import (
    Seat,
    SeatFreed,
    SeatInvite,
    SeatOverage,
    SeatPool,
    SeatUser,
    SeatUserPage,
    from_ms,
)

PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


def tenant_name(value: object) -> str:
    return validation.name(value, "tenant", limits.TENANT_LENGTH_MAX)


def user_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidUserId("user must be a non-empty string", field="user")
    if len(value) > limits.SEAT_USER_LENGTH_MAX:
        raise InvalidUserId(
            f"user is longer than {limits.SEAT_USER_LENGTH_MAX} characters", field="user"
        )
    if not limits.SEAT_USER_PATTERN.fullmatch(value):
        raise InvalidUserId(
            f"user {value!r} may hold only letters, digits, '.', '_', '-', '@' and '+' and "
            "must start with a letter or digit",
            field="user",
        )
    return value


def seat_limit(cap: int, overage: str) -> int:
    """floor(cap x factor), in integers (no float rounding at the boundary)."""
    numerator, denominator = limits.SEAT_OVERAGES[overage]
    return cap * numerator // denominator


def _cap(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSeatCap("cap must be an integer", field="cap")
    if not 0 <= value <= limits.SEAT_CAP_MAX:
        raise InvalidSeatCap(f"cap must be between 0 and {limits.SEAT_CAP_MAX}", field="cap")
    return value


def _overage(value: object) -> SeatOverage:
    if not isinstance(value, str) or value not in limits.SEAT_OVERAGES:
        names = ", ".join(limits.SEAT_OVERAGES)
        raise InvalidOverage(f"overage must be one of {names}", field="overage")
    return cast(SeatOverage, value)


def _seconds_ms(value: object, what: str, low_ms: int, high_ms: int) -> int:
    seconds = validation.whole(value, what, 1, high_ms // 1000)
    return max(seconds * 1000, low_ms)


class SeatOps(OpsBase):
    def _seat_keys(self, tenant: str) -> tuple[int, list[str]]:
        p = self.partition_of(tenant)
        return p, self.keys.seat_layout(p, tenant)

    def _seat_write(
        self, script: str, tenant: str, actor: str, idem: str | None, *opts: str | int
    ) -> Op[tuple[Json, bool]]:
        """One script of the seat layout: idempotency in the tenant's partition."""
        actor, idem_key = self._who(actor, idem, required=False)
        fp = fingerprint(script, tenant, *opts)
        p, layout = self._seat_keys(tenant)
        parts = {p}
        yield from self._claim(idem_key, actor, fp, parts, "")
        keys = [
            self.keys.meta(p),
            self.keys.events(p),
            self._idem_key(p, actor, idem_key, parts),
            *layout,
        ]
        args = [*self._write_args(fp, actor, idem_key), tenant, limits.SEAT_RECLAIM_MAX, *opts]
        return (
            yield from self._write(Call(script, keys, args), idem_key, actor, fp, parts, tenant)
        )

    @operation
    def set_seat_cap(
        self,
        tenant: str,
        cap: int,
        *,
        overage: str = "none",
        floating: bool = False,
        lease_seconds: int | None = None,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[SeatPool]:
        """Creates the tenant's seat pool or changes it: at most floor(cap x factor)
        seats (assigned plus pending invites). A cap below use evicts nobody: the tenant
        is ``over_cap`` until use falls to the limit. ``floating``: assignments are
        leases of ``lease_seconds``, renewed by ``renew_seat``."""
        tenant, cap, overage = tenant_name(tenant), _cap(cap), _overage(overage)
        floating = validation.flag(floating, "floating")
        lease_ms = 0
        if floating:
            if lease_seconds is None:
                raise InvalidRequest("a floating pool needs lease_seconds", field="lease_seconds")
            lease_ms = _seconds_ms(
                lease_seconds, "lease_seconds", limits.SEAT_LEASE_MS_MIN, limits.SEAT_LEASE_MS_MAX
            )
        elif lease_seconds is not None:
            raise InvalidRequest("lease_seconds is for floating pools only", field="lease_seconds")
        limit = seat_limit(cap, overage)
        flag = "1" if floating else "0"
        yield from self._seat_write(
            "set_seat_cap", tenant, actor, idempotency_key, cap, overage, limit, flag, lease_ms
        )
        return (yield from self._read_pool(tenant, ""))

    @operation
    def assign_seat(
        self,
        tenant: str,
        user: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Seat]:
        """Gives ``user`` a seat; a user who holds one keeps it (``created`` False), a user
        with a live invite takes the invited seat. Raises ``SeatLimitReached`` when every
        seat is taken, ``OverCap`` while the tenant is over its cap, ``TenantNotFound``."""
        tenant, user = tenant_name(tenant), user_id(user)
        result, was = yield from self._seat_write(
            "assign_seat", tenant, actor, idempotency_key, user
        )
        return replayed(_seat(result["seat"]), was)

    @operation
    def free_seat(
        self,
        tenant: str,
        user: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[SeatFreed]:
        """Gives back ``user``'s seat, or revokes its pending invite; idempotent."""
        tenant, user = tenant_name(tenant), user_id(user)
        result, was = yield from self._seat_write("free_seat", tenant, actor, idempotency_key, user)
        freed = SeatFreed(
            tenant=tenant, user=user, freed=result["freed"], revoked=result["revoked"]
        )
        return replayed(freed, was)

    @operation
    def invite_seat(
        self,
        tenant: str,
        user: str,
        ttl_seconds: int,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[SeatInvite]:
        """Holds a seat for ``user`` for ``ttl_seconds``; the limit is checked now, so
        ``accept_invite`` always finds the seat. A live invite is returned unchanged
        (``created`` False). Raises as ``assign_seat``, and ``SeatAlreadyAssigned``."""
        tenant, user = tenant_name(tenant), user_id(user)
        ttl_ms = _seconds_ms(
            ttl_seconds, "ttl_seconds", limits.INVITE_TTL_MS_MIN, limits.INVITE_TTL_MS_MAX
        )
        result, was = yield from self._seat_write(
            "invite_seat", tenant, actor, idempotency_key, user, ttl_ms
        )
        invite = result["invite"]
        model = SeatInvite(
            tenant=tenant,
            user=user,
            created=invite["created"],
            expires_at=from_ms(int(invite["expires_at"])),
        )
        return replayed(model, was)

    @operation
    def accept_invite(
        self,
        tenant: str,
        user: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Seat]:
        """Turns ``user``'s live invite into a seat (never refused for the limit: the
        invite holds it). Raises ``InviteNotFound`` when no live invite is left."""
        tenant, user = tenant_name(tenant), user_id(user)
        result, was = yield from self._seat_write(
            "accept_invite", tenant, actor, idempotency_key, user
        )
        return replayed(_seat(result["seat"]), was)

    @operation
    def renew_seat(
        self,
        tenant: str,
        user: str,
        *,
        actor: str = DEFAULT_ACTOR,
        idempotency_key: str | None = None,
    ) -> Op[Seat]:
        """The heartbeat of a floating seat: its lease runs ``lease_seconds`` from now.
        Raises ``SeatNotFound`` when the user holds no live seat (a lease that ran out
        freed it)."""
        tenant, user = tenant_name(tenant), user_id(user)
        result, was = yield from self._seat_write(
            "renew_seat", tenant, actor, idempotency_key, user
        )
        return replayed(_seat(result["seat"]), was)

    @operation
    def seats(self, tenant: str, *, period: str | None = None) -> Op[SeatPool]:
        """The tenant's pool now; ``high_water_mark`` is of ``period`` (YYYY-MM, UTC),
        the current month by default: the figure to bill per seat."""
        tenant = tenant_name(tenant)
        if period is not None and (not isinstance(period, str) or not PERIOD.fullmatch(period)):
            raise InvalidRequest("period must be YYYY-MM", field="period")
        return (yield from self._read_pool(tenant, period or ""))

    @operation
    def seat_users(
        self, tenant: str, *, cursor: str | None = None, limit: int = limits.SEAT_USERS_PAGE_DEFAULT
    ) -> Op[SeatUserPage]:
        """A page of the tenant's assigned users in user-id order; pass ``next_cursor``
        for the next one."""
        tenant = tenant_name(tenant)
        after = "" if cursor is None else user_id(cursor)
        size = validation.whole(limit, "limit", 1, limits.SEAT_USERS_PAGE_MAX)
        found = yield from self._read_seats(tenant, "users", "", after, size)
        users = [
            SeatUser(user=u["user"], lease_expires_at=_ms(u.get("lease_expires_at")))
            for u in found["users"]
        ]
        next_cursor = found["last"] if found["more"] else None
        return SeatUserPage(tenant=tenant, users=users, next_cursor=next_cursor)

    def _read_seats(self, tenant: str, mode: str, period: str, after: str, size: int) -> Op[Json]:
        p, layout = self._seat_keys(tenant)
        pool, _index, config, users, invites, leases, hwm, _log = layout
        keys = [self.keys.meta(p), pool, config, users, invites, leases, hwm]
        raw = yield Call("read_seats", keys, [mode, tenant, period, after, size], replicated=False)
        found: Json = orjson.loads(raw)
        raise_for_error(found, tenant)
        return found

    def _read_pool(self, tenant: str, period: str) -> Op[SeatPool]:
        found = yield from self._read_seats(tenant, "pool", period, "", 1)
        numerator, denominator = limits.SEAT_OVERAGES[found["overage"]]
        used = int(found["assigned"]) + int(found["invited"])
        lease_ms = int(found["lease_ms"])
        return SeatPool(
            tenant=tenant,
            cap=int(found["cap"]),
            overage=found["overage"],
            factor=numerator / denominator,
            limit=int(found["limit"]),
            assigned=int(found["assigned"]),
            invited=int(found["invited"]),
            available=max(int(found["limit"]) - used, 0),
            over_cap=used > int(found["limit"]),
            floating=bool(found["floating"]),
            lease_seconds=lease_ms // 1000 if found["floating"] else None,
            period=found["period"],
            high_water_mark=int(found["high_water_mark"]),
        )


def _ms(value: object) -> datetime | None:
    return from_ms(int(value)) if isinstance(value, int | float) else None


def _seat(view: Json) -> Seat:
    return Seat(
        tenant=view["tenant"],
        user=view["user"],
        created=bool(view["created"]),
        lease_expires_at=_ms(view.get("lease_expires_at")),
    )
