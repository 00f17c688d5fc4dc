"""Seats with per-tenant limits (docs/seats.md) on fakeredis, a real redis-server and a
real Redis Cluster (4 partitions): caps and overage factors, idempotent assignment,
invites and their expiry, a cap lowered below use, floating leases, the high-water mark
and paging. Time moves with ``clock`` (time-machine on fakeredis, a real wait on a
server); no sweeper runs in any of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from redis.crc import key_slot

from earmark import (
    Engine,
    IdempotencyConflict,
    InvalidOverage,
    InvalidRequest,
    InvalidSeatCap,
    InvalidUserId,
    InviteNotFound,
    OverCap,
    SeatAlreadyAssigned,
    SeatLimitReached,
    SeatNotFound,
    TenantNotFound,
    limits,
)
from earmark.engine.steps import Call, Op
from tests.engine.test_scripts import SEAT_SCRIPT_NAMES
from tests.support.backends import Backend, stream_lengths

Clock = Callable[[float], None]
BUCKETS = ("on_hand", "reserved", "committed")


def seat_events(engine: Engine, tenant: str) -> list[dict[str, Any]]:
    p = engine.partition_of(tenant)
    found = []
    for _, fields in engine.client.xrange(engine.keys.events(p)):
        if fields["sku"] == tenant and fields["location"] == limits.SEAT_LOCATION:
            found.append(fields)
    return found


def types(engine: Engine, tenant: str) -> Counter[str]:
    return Counter(e["type"] for e in seat_events(engine, tenant))


def assert_pool_explained(engine: Engine, tenant: str) -> None:
    """What the flusher records: the deltas of the tenant's events sum to its pool hash,
    and the pool's buckets are its users and invites."""
    import orjson

    totals = dict.fromkeys(BUCKETS, 0)
    for event in seat_events(engine, tenant):
        for bucket, units in (orjson.loads(event["deltas"]) or {}).items():
            totals[bucket] += units
    p = engine.partition_of(tenant)
    raw = engine.client.hgetall(engine.keys.seat_pool(p, tenant))
    assert {b: int(raw.get(b, 0)) for b in BUCKETS} == totals
    assert totals["committed"] == engine.client.zcard(engine.keys.seat_users(p, tenant))
    assert totals["reserved"] == engine.client.zcard(engine.keys.seat_invites(p, tenant))


@pytest.mark.parametrize(
    ("cap", "overage", "limit"),
    [(10, "none", 10), (10, "1.25x", 12), (10, "1.5x", 15), (10, "2x", 20), (3, "1.25x", 3)],
)
def test_each_overage_factor_allows_floor_of_cap_times_factor(
    engine: Engine, cap: int, overage: str, limit: int
) -> None:
    pool = engine.set_seat_cap("acme", cap, overage=overage)
    assert (pool.cap, pool.overage, pool.limit, pool.available) == (cap, overage, limit, limit)
    for n in range(limit):
        assert engine.assign_seat("acme", f"u{n}").created
    with pytest.raises(SeatLimitReached) as refused:
        engine.assign_seat("acme", "one-too-many")
    assert refused.value.details == {"cap": cap, "used": limit, "limit": limit, "tenant": "acme"}
    pool = engine.seats("acme")
    assert (pool.assigned, pool.available, pool.over_cap) == (limit, 0, False)
    assert_pool_explained(engine, "acme")


def test_an_assignment_is_idempotent_per_user_whatever_the_key(engine: Engine) -> None:
    engine.set_seat_cap("acme", 2)
    first = engine.assign_seat("acme", "ann@example.com", idempotency_key="k1")
    assert first.created and not first.replayed
    again = engine.assign_seat("acme", "ann@example.com", idempotency_key="k2")
    assert not again.created and not again.replayed
    replay = engine.assign_seat("acme", "ann@example.com", idempotency_key="k1")
    assert replay.replayed
    unkeyed = engine.assign_seat("acme", "ann@example.com")
    assert not unkeyed.created
    with pytest.raises(IdempotencyConflict):
        engine.assign_seat("acme", "bob", idempotency_key="k1")
    assert engine.seats("acme").assigned == 1
    assert types(engine, "acme")["seat_assigned"] == 1


def test_freeing_is_idempotent_and_gives_the_seat_back(engine: Engine) -> None:
    engine.set_seat_cap("acme", 1)
    engine.assign_seat("acme", "ann")
    freed = engine.free_seat("acme", "ann")
    assert (freed.freed, freed.revoked) == (True, False)
    again = engine.free_seat("acme", "ann")
    assert (again.freed, again.revoked) == (False, False)
    assert engine.assign_seat("acme", "bob").created
    assert types(engine, "acme")["seat_freed"] == 1
    assert_pool_explained(engine, "acme")


def test_an_invite_holds_its_seat_until_accepted(engine: Engine) -> None:
    engine.set_seat_cap("acme", 1)
    invite = engine.invite_seat("acme", "ann", 600)
    assert invite.created
    assert not engine.invite_seat("acme", "ann", 600).created  # the live invite, unchanged
    assert engine.invite_seat("acme", "ann", 60).expires_at == invite.expires_at
    with pytest.raises(SeatLimitReached):
        engine.assign_seat("acme", "bob")  # the invited seat cannot be stolen
    with pytest.raises(SeatLimitReached):
        engine.invite_seat("acme", "bob", 600)  # the limit is checked at invite time
    pool = engine.seats("acme")
    assert (pool.assigned, pool.invited, pool.available) == (0, 1, 0)
    seat = engine.accept_invite("acme", "ann")
    assert seat.created
    assert not engine.accept_invite("acme", "ann").created
    with pytest.raises(SeatAlreadyAssigned):
        engine.invite_seat("acme", "ann", 600)
    pool = engine.seats("acme")
    assert (pool.assigned, pool.invited) == (1, 0)
    assert types(engine, "acme")["seat_accepted"] == 1
    assert_pool_explained(engine, "acme")


def test_an_accept_succeeds_even_over_cap(engine: Engine) -> None:
    engine.set_seat_cap("acme", 2)
    engine.invite_seat("acme", "ann", 600)
    engine.assign_seat("acme", "bob")
    assert engine.set_seat_cap("acme", 0).over_cap
    assert engine.accept_invite("acme", "ann").created
    assert engine.seats("acme").assigned == 2


def test_assigning_an_invited_user_takes_the_invited_seat(engine: Engine) -> None:
    engine.set_seat_cap("acme", 1)
    engine.invite_seat("acme", "ann", 600)
    assert engine.assign_seat("acme", "ann").created
    assert types(engine, "acme")["seat_accepted"] == 1
    assert (engine.seats("acme").assigned, engine.seats("acme").invited) == (1, 0)


def test_freeing_an_invited_user_revokes_the_invite(engine: Engine) -> None:
    engine.set_seat_cap("acme", 1)
    engine.invite_seat("acme", "ann", 600)
    freed = engine.free_seat("acme", "ann")
    assert (freed.freed, freed.revoked) == (False, True)
    with pytest.raises(InviteNotFound):
        engine.accept_invite("acme", "ann")
    assert engine.assign_seat("acme", "bob").created


def test_an_expired_invite_frees_its_seat_without_a_sweeper(engine: Engine, clock: Clock) -> None:
    engine.set_seat_cap("acme", 1)
    engine.invite_seat("acme", "ann", 1)
    clock(1.3)
    pool = engine.seats("acme")  # a read leaves it out before anything gives it back
    assert (pool.invited, pool.available) == (0, 1)
    assert engine.assign_seat("acme", "bob").created  # the write gives it back first
    with pytest.raises(InviteNotFound) as refused:
        engine.accept_invite("acme", "ann")
    assert refused.value.details["user"] == "ann"
    counted = types(engine, "acme")
    assert (counted["seat_invite_expired"], counted["seat_assigned"]) == (1, 1)
    expired = next(e for e in seat_events(engine, "acme") if e["type"] == "seat_invite_expired")
    assert expired["actor"] == "earmark:expiry"
    assert_pool_explained(engine, "acme")


def test_accepting_an_invite_that_just_expired_is_refused(engine: Engine, clock: Clock) -> None:
    engine.set_seat_cap("acme", 1)
    engine.invite_seat("acme", "ann", 1)
    clock(1.3)
    with pytest.raises(InviteNotFound):
        engine.accept_invite("acme", "ann")
    assert engine.seats("acme").invited == 0
    assert_pool_explained(engine, "acme")


def test_a_cap_lowered_below_use_evicts_nobody_and_refuses_until_use_falls(
    engine: Engine,
) -> None:
    engine.set_seat_cap("acme", 3)
    for user in ("ann", "bob", "cat"):
        engine.assign_seat("acme", user)
    pool = engine.set_seat_cap("acme", 1)
    assert (pool.limit, pool.assigned, pool.over_cap) == (1, 3, True)
    with pytest.raises(OverCap) as refused:
        engine.assign_seat("acme", "dan")
    assert refused.value.details == {"cap": 1, "used": 3, "limit": 1, "tenant": "acme"}
    with pytest.raises(OverCap):
        engine.invite_seat("acme", "dan", 600)
    assert not engine.assign_seat("acme", "ann").created  # a holder keeps its seat
    assert types(engine, "acme")["seats_over_cap"] == 1
    engine.free_seat("acme", "ann")
    assert engine.seats("acme").over_cap  # 2 > 1
    engine.free_seat("acme", "bob")
    assert not engine.seats("acme").over_cap  # use fell to the limit
    assert types(engine, "acme")["seats_under_cap"] == 1
    with pytest.raises(SeatLimitReached):
        engine.assign_seat("acme", "dan")  # full, no longer over
    engine.free_seat("acme", "cat")
    assert engine.assign_seat("acme", "dan").created
    over = next(e for e in seat_events(engine, "acme") if e["type"] == "seats_over_cap")
    assert (over["cap"], over["used"], over["limit"]) == ("1", "3", "1")
    assert_pool_explained(engine, "acme")


def test_raising_the_cap_clears_over_cap(engine: Engine) -> None:
    engine.set_seat_cap("acme", 2)
    engine.assign_seat("acme", "ann")
    engine.assign_seat("acme", "bob")
    assert engine.set_seat_cap("acme", 1).over_cap
    pool = engine.set_seat_cap("acme", 1, overage="2x")
    assert (pool.limit, pool.over_cap) == (2, False)
    assert types(engine, "acme")["seats_under_cap"] == 1


def test_setting_the_same_cap_again_records_nothing(engine: Engine) -> None:
    engine.set_seat_cap("acme", 5, overage="1.5x")
    before = stream_lengths(engine)
    assert engine.set_seat_cap("acme", 5, overage="1.5x").limit == 7
    assert stream_lengths(engine) == before


def test_a_floating_lease_expires_without_a_sweeper(engine: Engine, clock: Clock) -> None:
    pool = engine.set_seat_cap("acme", 1, floating=True, lease_seconds=2)
    assert (pool.floating, pool.lease_seconds) == (True, 2)
    seat = engine.assign_seat("acme", "ann")
    assert seat.lease_expires_at is not None
    clock(1.2)
    renewed = engine.renew_seat("acme", "ann")
    assert renewed.lease_expires_at is not None and renewed.lease_expires_at > seat.lease_expires_at
    clock(1.2)
    assert engine.seats("acme").assigned == 1  # renewed: still live
    clock(1.2)
    assert engine.seats("acme").assigned == 0  # the read leaves the lapsed lease out
    with pytest.raises(SeatNotFound):
        engine.renew_seat("acme", "ann")
    assert engine.assign_seat("acme", "bob").created
    counted = types(engine, "acme")
    assert (counted["seat_lease_expired"], counted["seat_renewed"]) == (1, 1)
    assert_pool_explained(engine, "acme")


def test_a_lapsed_lease_is_given_back_by_the_next_assign(engine: Engine, clock: Clock) -> None:
    engine.set_seat_cap("acme", 1, floating=True, lease_seconds=1)
    engine.assign_seat("acme", "ann")
    clock(1.3)
    assert engine.assign_seat("acme", "bob").created
    assert [u.user for u in engine.seat_users("acme").users] == ["bob"]


def test_a_heartbeat_on_a_fixed_seat_changes_nothing(engine: Engine) -> None:
    engine.set_seat_cap("acme", 1)
    engine.assign_seat("acme", "ann")
    before = stream_lengths(engine)
    assert engine.renew_seat("acme", "ann").lease_expires_at is None
    assert stream_lengths(engine) == before
    with pytest.raises(SeatNotFound):
        engine.renew_seat("acme", "bob")


def test_the_high_water_mark_of_the_period(engine: Engine) -> None:
    engine.set_seat_cap("acme", 5)
    for user in ("ann", "bob", "cat"):
        engine.assign_seat("acme", user)
    engine.free_seat("acme", "ann")
    engine.free_seat("acme", "bob")
    engine.assign_seat("acme", "dan")
    pool = engine.seats("acme")
    assert (pool.assigned, pool.high_water_mark) == (2, 3)
    now = datetime.now(UTC)
    assert pool.period in {now.strftime("%Y-%m")}
    past = engine.seats("acme", period="2000-01")
    assert (past.period, past.high_water_mark, past.assigned) == ("2000-01", 0, 2)


def test_the_billing_period_turns_with_the_redis_clock(fake_engine: Engine) -> None:
    """Months end on Redis TIME (fakeredis: the clock time-machine moves), in UTC."""
    engine = fake_engine
    with time_machine.travel(datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC), tick=False) as t:
        engine.set_seat_cap("acme", 5)
        engine.assign_seat("acme", "ann")
        engine.assign_seat("acme", "bob")
        assert engine.seats("acme").period == "2026-11"
        t.move_to(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))
        engine.free_seat("acme", "ann")
        december = engine.seats("acme")
        # ann and bob were held when December began
        assert (december.period, december.high_water_mark) == ("2026-12", 2)
        engine.assign_seat("acme", "cat")
        engine.assign_seat("acme", "dan")
        assert engine.seats("acme").high_water_mark == 3
        assert engine.seats("acme", period="2026-11").high_water_mark == 2
        t.move_to(datetime(2028, 2, 29, 12, 0, tzinfo=UTC))
        assert engine.seats("acme").period == "2028-02"
        t.move_to(datetime(2028, 3, 1, 0, 0, tzinfo=UTC))
        assert engine.seats("acme").period == "2028-03"
        t.move_to(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
        assert engine.seats("acme").period == "1999-12"


def test_assigned_users_page_in_user_id_order(engine: Engine) -> None:
    engine.set_seat_cap("acme", 10)
    users = [f"user{n:02d}" for n in (7, 3, 9, 1, 5, 2, 8)]
    for user in users:
        engine.assign_seat("acme", user)
    engine.invite_seat("acme", "zed", 600)  # invited, not assigned: not listed
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = engine.seat_users("acme", cursor=cursor, limit=3)
        pages += 1
        seen += [u.user for u in page.users]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(users)
    assert pages == 3


def test_an_unknown_tenant_is_not_found_and_nothing_is_written(engine: Engine) -> None:
    before = stream_lengths(engine)
    for call in (
        lambda: engine.assign_seat("nobody", "ann"),
        lambda: engine.invite_seat("nobody", "ann", 60),
        lambda: engine.accept_invite("nobody", "ann"),
        lambda: engine.free_seat("nobody", "ann"),
        lambda: engine.renew_seat("nobody", "ann"),
        lambda: engine.seats("nobody"),
        lambda: engine.seat_users("nobody"),
    ):
        with pytest.raises(TenantNotFound) as refused:
            call()
        assert refused.value.details == {"tenant": "nobody"}
    assert stream_lengths(engine) == before


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        (lambda e: e.set_seat_cap("acme", -1), InvalidSeatCap, "cap"),
        (lambda e: e.set_seat_cap("acme", limits.SEAT_CAP_MAX + 1), InvalidSeatCap, "cap"),
        (lambda e: e.set_seat_cap("acme", "5"), InvalidSeatCap, "cap"),
        (lambda e: e.set_seat_cap("acme", 5, overage="3x"), InvalidOverage, "overage"),
        (lambda e: e.set_seat_cap("acme", 5, floating=True), InvalidRequest, "lease_seconds"),
        (lambda e: e.set_seat_cap("acme", 5, lease_seconds=5), InvalidRequest, "lease_seconds"),
        (lambda e: e.set_seat_cap("no tenant", 5), InvalidRequest, "tenant"),
        (lambda e: e.assign_seat("acme", "u" * 129), InvalidUserId, "user"),
        (lambda e: e.assign_seat("acme", ""), InvalidUserId, "user"),
        (lambda e: e.assign_seat("acme", "a user"), InvalidUserId, "user"),
        (lambda e: e.invite_seat("acme", "ann", 0), InvalidRequest, "ttl_seconds"),
        (lambda e: e.invite_seat("acme", "x" * 200, 60), InvalidUserId, "user"),
        (lambda e: e.seats("acme", period="2026-13"), InvalidRequest, "period"),
        (lambda e: e.seat_users("acme", limit=0), InvalidRequest, "limit"),
    ],
)
def test_bad_input_is_refused_with_its_code_and_writes_nothing(
    fake_engine: Engine, call: Callable[[Engine], Any], error: type[Exception], field: str
) -> None:
    fake_engine.set_seat_cap("acme", 5)
    before = stream_lengths(fake_engine)
    with pytest.raises(error) as refused:
        call(fake_engine)
    assert type(refused.value) is error
    assert refused.value.details["field"] == field  # type: ignore[attr-defined]
    assert stream_lengths(fake_engine) == before
    assert fake_engine.seats("acme").cap == 5


def test_every_seat_call_keeps_its_keys_in_one_slot(request: pytest.FixtureRequest) -> None:
    engine = Backend("fake", request).engine(partitions=4)
    seen: set[str] = set()

    def checked(op: Op[Any]) -> Op[Any]:
        step = next(op)
        while True:
            calls = [step] if isinstance(step, Call) else getattr(step, "calls", [])
            for call in calls:
                assert len({key_slot(key.encode()) for key in call.keys}) == 1, call
                seen.add(call.script)
            try:
                step = op.send((yield step))
            except StopIteration as stop:
                return stop.value

    run = engine.run
    engine.run = lambda op: run(checked(op))  # type: ignore[method-assign]
    tenants = [f"tenant{n}" for n in range(8)]
    assert len({engine.partition_of(t) for t in tenants}) > 1
    for tenant in tenants:
        engine.set_seat_cap(
            tenant, 2, floating=True, lease_seconds=60, idempotency_key=f"c{tenant}"
        )
        engine.assign_seat(tenant, "ann", idempotency_key=f"a{tenant}")
        engine.renew_seat(tenant, "ann")
        engine.invite_seat(tenant, "bob", 60)
        engine.accept_invite(tenant, "bob")
        engine.free_seat(tenant, "ann")
        engine.seats(tenant)
        engine.seat_users(tenant)
    # restore_seats is run (and slot-checked) by tests/durable/test_seats_durable.py
    assert seen >= set(SEAT_SCRIPT_NAMES) - {"restore_seats"}
