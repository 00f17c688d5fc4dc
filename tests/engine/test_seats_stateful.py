"""Random sequences of seat operations (assign, free, invite, accept, heartbeat,
set-cap, the clock moving past invite TTLs and leases) against the engine on fakeredis
(2 partitions, a frozen clock) and a plain Python model of a tenant's seats. After every
step the pool must match the model, and the limit must hold for every new seat."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from earmark import (
    InviteNotFound,
    OverCap,
    SeatAlreadyAssigned,
    SeatLimitReached,
    SeatNotFound,
    limits,
)
from tests.support.model import machine_engine

TENANTS = ["acme", "beta"]
USERS = ["ann", "bob", "cat", "dan", "eve"]
OVERAGES = list(limits.SEAT_OVERAGES)
LEASE_SECONDS = 30


@dataclass
class TenantModel:
    """Seats as the docs describe them, with times in ms on the machine's clock."""

    cap: int
    overage: str
    floating: bool
    assigned: dict[str, int | None] = field(default_factory=dict)  # user -> lease expiry
    invites: dict[str, int] = field(default_factory=dict)  # user -> expiry

    @property
    def limit(self) -> int:
        num, den = limits.SEAT_OVERAGES[self.overage]
        return self.cap * num // den

    def expire(self, now: int) -> None:
        self.invites = {u: t for u, t in self.invites.items() if t > now}
        self.assigned = {u: t for u, t in self.assigned.items() if t is None or t > now}

    @property
    def used(self) -> int:
        return len(self.assigned) + len(self.invites)

    def refusal(self) -> type[Exception] | None:
        if self.used > self.limit:
            return OverCap
        if self.used >= self.limit:
            return SeatLimitReached
        return None


class SeatMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine, self.clock = machine_engine("seats", None)
        self.model: dict[str, TenantModel] = {}

    def teardown(self) -> None:
        self.engine.close()
        self.clock.stop()

    def lease(self, tenant: TenantModel) -> int | None:
        return self.clock.now_ms + LEASE_SECONDS * 1000 if tenant.floating else None

    def live(self, name: str) -> TenantModel | None:
        tenant = self.model.get(name)
        if tenant is not None:
            tenant.expire(self.clock.now_ms)
        return tenant

    @rule(
        name=st.sampled_from(TENANTS),
        cap=st.integers(0, 4),
        overage=st.sampled_from(OVERAGES),
        floating=st.booleans(),
    )
    def set_cap(self, name: str, cap: int, overage: str, floating: bool) -> None:
        lease = LEASE_SECONDS if floating else None
        pool = self.engine.set_seat_cap(
            name, cap, overage=overage, floating=floating, lease_seconds=lease
        )
        tenant = self.live(name)
        if tenant is None:
            self.model[name] = TenantModel(cap, overage, floating)
        else:
            tenant.cap, tenant.overage, tenant.floating = cap, overage, floating
        assert pool.limit == self.model[name].limit

    @rule(name=st.sampled_from(TENANTS), user=st.sampled_from(USERS))
    def assign(self, name: str, user: str) -> None:
        tenant = self.live(name)
        if tenant is None:
            return
        if user in tenant.assigned:
            seat = self.engine.assign_seat(name, user)
            assert not seat.created
            if tenant.floating:
                tenant.assigned[user] = self.lease(tenant)
            return
        if user in tenant.invites:
            assert self.engine.assign_seat(name, user).created
            del tenant.invites[user]
            tenant.assigned[user] = self.lease(tenant)
            return
        refusal = tenant.refusal()
        if refusal is not None:
            try:
                self.engine.assign_seat(name, user)
            except refusal:
                return
            raise AssertionError(f"assign past the limit was not refused with {refusal}")
        assert self.engine.assign_seat(name, user).created
        tenant.assigned[user] = self.lease(tenant)

    @rule(name=st.sampled_from(TENANTS), user=st.sampled_from(USERS))
    def free(self, name: str, user: str) -> None:
        tenant = self.live(name)
        if tenant is None:
            return
        freed = self.engine.free_seat(name, user)
        assert (freed.freed, freed.revoked) == (user in tenant.assigned, user in tenant.invites)
        tenant.assigned.pop(user, None)
        tenant.invites.pop(user, None)

    @rule(name=st.sampled_from(TENANTS), user=st.sampled_from(USERS), ttl=st.integers(1, 90))
    def invite(self, name: str, user: str, ttl: int) -> None:
        tenant = self.live(name)
        if tenant is None:
            return
        if user in tenant.assigned:
            try:
                self.engine.invite_seat(name, user, ttl)
            except SeatAlreadyAssigned:
                return
            raise AssertionError("an assigned user was invited")
        if user in tenant.invites:
            assert not self.engine.invite_seat(name, user, ttl).created
            return
        refusal = tenant.refusal()
        if refusal is not None:
            try:
                self.engine.invite_seat(name, user, ttl)
            except refusal:
                return
            raise AssertionError(f"invite past the limit was not refused with {refusal}")
        assert self.engine.invite_seat(name, user, ttl).created
        tenant.invites[user] = self.clock.now_ms + ttl * 1000

    @rule(name=st.sampled_from(TENANTS), user=st.sampled_from(USERS))
    def accept(self, name: str, user: str) -> None:
        tenant = self.live(name)
        if tenant is None:
            return
        if user in tenant.assigned:
            assert not self.engine.accept_invite(name, user).created
        elif user in tenant.invites:
            assert self.engine.accept_invite(name, user).created  # never refused
            del tenant.invites[user]
            tenant.assigned[user] = self.lease(tenant)
        else:
            try:
                self.engine.accept_invite(name, user)
            except InviteNotFound:
                return
            raise AssertionError("accepted an invite that is not live")

    @rule(name=st.sampled_from(TENANTS), user=st.sampled_from(USERS))
    def heartbeat(self, name: str, user: str) -> None:
        tenant = self.live(name)
        if tenant is None:
            return
        if user not in tenant.assigned:
            try:
                self.engine.renew_seat(name, user)
            except SeatNotFound:
                return
            raise AssertionError("renewed a seat the user does not hold")
        self.engine.renew_seat(name, user)
        if tenant.floating:  # a heartbeat on a floating tenant starts or renews a lease
            tenant.assigned[user] = self.lease(tenant)

    @rule(seconds=st.sampled_from([1, 10, 31, 95]))
    def time_passes(self, seconds: int) -> None:
        self.clock.shift(seconds * 1000)

    @invariant()
    def pools_match_the_model(self) -> None:
        for name in self.model:
            tenant = self.live(name)
            assert tenant is not None
            pool = self.engine.seats(name)
            assert (pool.assigned, pool.invited) == (len(tenant.assigned), len(tenant.invites))
            assert pool.over_cap == (tenant.used > tenant.limit)
            users = [u.user for u in self.engine.seat_users(name, limit=10).users]
            assert users == sorted(tenant.assigned)


SeatMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_seats_against_the_model = SeatMachine.TestCase
