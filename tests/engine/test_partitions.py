"""Carts that span partitions: all-or-nothing holds, two-phase commits, the sweeper
finishing the work of a caller that died half way, and idempotency across partitions.
Runs on fakeredis, one real redis-server and a real 3-master Redis Cluster."""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Generator
from typing import Any

import pytest

from earmark import (
    CommitInProgress,
    Engine,
    IdempotencyConflict,
    InsufficientStock,
    NotOwner,
    ReservationExpired,
    ReservationReleased,
)
from earmark.engine.ops.base import DEFAULT_ACTOR
from earmark.engine.ops.parts import Part
from earmark.engine.replies import script_reply
from earmark.keys import idempotency_digest, partition_of
from tests.support.backends import Backend

PARTITIONS = 4


def spread_skus(count: int) -> list[str]:
    """SKUs that land in ``count`` different partitions, in partition order (so the first
    SKU of a cart is in its home partition, part 0)."""
    found: dict[int, str] = {}
    for i in range(1000):
        sku = f"SKU-{i}"
        found.setdefault(partition_of(sku, PARTITIONS), sku)
        if len(found) == count:
            return [found[p] for p in sorted(found)]
    raise AssertionError("not enough partitions reached")


@pytest.fixture
def multi(backend: Backend) -> Engine:
    engine = backend.engine(partitions=PARTITIONS, pin_ms=1000)
    for sku in spread_skus(PARTITIONS):
        engine.receive(sku, 10)
    return engine


def buckets(engine: Engine) -> dict[str, tuple[int, int, int]]:
    return {
        s.sku: (s.on_hand, s.reserved, s.committed)
        for s in engine.availability(spread_skus(PARTITIONS))
    }


def test_a_cart_across_partitions_is_held_as_one_reservation(multi: Engine) -> None:
    a, b, c, _ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 1), (b, 2), (c, 3)], idempotency_key="cart")
    assert len(held.id.rsplit("_", 1)[1].split("-")) == 3
    assert held.status == "held"
    assert {(x.sku, x.qty) for x in held.lines} == {(a, 1), (b, 2), (c, 3)}
    assert multi.get_reservation(held.id).status == "held"
    assert buckets(multi)[c] == (10, 3, 0)


def test_a_refusal_in_one_partition_leaves_no_hold_in_any(multi: Engine) -> None:
    a, b, c, _ = spread_skus(PARTITIONS)
    with pytest.raises(InsufficientStock) as refused:
        multi.reserve([(a, 1), (b, 11), (c, 12)], idempotency_key="too-much")
    assert {(s.sku, s.requested, s.available) for s in refused.value.shortfalls} == {
        (b, 11, 10),
        (c, 12, 10),
    }
    assert all(reserved == 0 for _, reserved, _ in buckets(multi).values())
    # The retry is evaluated again: refused the same way, still nothing held.
    with pytest.raises(InsufficientStock):
        multi.reserve([(a, 1), (b, 11), (c, 12)], idempotency_key="too-much")
    assert all(reserved == 0 for _, reserved, _ in buckets(multi).values())


def test_a_refused_cart_across_partitions_binds_nothing_to_its_key(multi: Engine) -> None:
    """The parts held before the refusal were rolled back and the key's home claim is
    undone: a retry once stock frees is a new reservation with every line (not the
    rolled-back part replayed), and the key may carry another cart."""
    a, b, c, _ = spread_skus(PARTITIONS)
    with pytest.raises(InsufficientStock):
        multi.reserve([(a, 1), (b, 11)], idempotency_key="retry")
    multi.receive(b, 5)
    held = multi.reserve([(a, 1), (b, 11)], idempotency_key="retry")
    assert held.status == "held" and not held.replayed
    assert {(x.sku, x.qty) for x in held.lines} == {(a, 1), (b, 11)}
    assert multi.get_reservation(held.id).status == "held"
    assert (buckets(multi)[a], buckets(multi)[b]) == ((10, 1, 0), (15, 11, 0))
    assert multi.reserve([(a, 1), (b, 11)], idempotency_key="retry") == held
    # A one-partition cart outside the key's home partition goes through the home claim
    # too; its refusal leaves the key free for another request.
    key = key_homed_outside(partition_of(c, PARTITIONS))
    with pytest.raises(InsufficientStock):
        multi.reserve([(c, 99)], idempotency_key=key)
    assert multi.reserve([(c, 1)], idempotency_key=key).lines[0].sku == c


def key_homed_outside(partition: int) -> str:
    """An idempotency key (of the default actor) whose home record is in another
    partition, so a request in ``partition`` claims it there first."""
    for i in range(1000):
        key = f"key-{i}"
        digest = idempotency_digest(DEFAULT_ACTOR, key)
        if zlib.crc32(digest.encode()) % PARTITIONS != partition:
            return key
    raise AssertionError("no such key")


def test_commit_release_extend_ship_across_partitions(multi: Engine) -> None:
    a, b, c, d = spread_skus(PARTITIONS)
    first = multi.reserve([(a, 1), (b, 2)], idempotency_key="one")
    second = multi.reserve([(c, 3), (d, 4)], idempotency_key="two")
    assert multi.extend(first.id, 300).status == "held"
    committed = multi.commit(first.id)
    assert committed.status == "committed"
    assert multi.commit(first.id).status == "committed"
    assert multi.release(second.id).status == "released"
    assert multi.ship(first.id).status == "shipped"
    assert buckets(multi) == {a: (9, 0, 0), b: (8, 0, 0), c: (10, 0, 0), d: (10, 0, 0)}


def test_owner_only_refuses_another_actors_cart_across_partitions(multi: Engine) -> None:
    a, b, *_ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 1), (b, 2)], idempotency_key="own", actor="shop-1")
    with pytest.raises(NotOwner):
        multi.commit(held.id, actor="shop-2", owner_only=True, idempotency_key="steal")
    with pytest.raises(NotOwner):
        multi.release(held.id, actor="shop-2", owner_only=True)
    assert multi.get_reservation(held.id).status == "held"  # nothing pinned, nothing freed
    assert multi.commit(held.id, actor="shop-1", owner_only=True).status == "committed"


def test_a_cart_whose_holds_expired_is_never_committed(backend: Backend, multi: Engine) -> None:
    backend.freeze()
    a, b, *_ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 1), (b, 1)], idempotency_key="late", ttl_seconds=1)
    backend.advance(1.2)
    with pytest.raises(ReservationExpired):
        multi.commit(held.id)
    assert multi.get_reservation(held.id).status == "expired"
    assert buckets(multi)[a] == (10, 0, 0) and buckets(multi)[b] == (10, 0, 0)


def run_part(engine: Engine, script: str, rid: str, index: int, *opts: Any) -> dict[str, Any]:
    """Runs one part script directly, as a caller that dies half way would have."""

    def op() -> Generator[Any, Any, dict[str, Any]]:
        parts: list[Part] = yield from engine._read_parts(rid)
        reply = yield engine._part_call(script, rid, parts[index], *opts)
        return script_reply(reply)[0]

    return engine.run(op())


def test_commit_never_commits_some_lines_while_another_part_is_gone(multi: Engine) -> None:
    a, b, c, _ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 1), (b, 1), (c, 1)], idempotency_key="partly")
    run_part(multi, "release_reservation", held.id, 2, "release", "test", "")
    with pytest.raises(ReservationReleased):
        multi.commit(held.id)
    assert {sku: level[2] for sku, level in buckets(multi).items()} == dict.fromkeys(
        buckets(multi), 0
    )
    assert all(reserved == 0 for _, reserved, _ in buckets(multi).values())


def test_the_sweeper_finishes_a_commit_whose_caller_died_after_the_decision(
    backend: Backend, multi: Engine
) -> None:
    backend.freeze()
    a, b, *_ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 2), (b, 3)], idempotency_key="crash", ttl_seconds=60)
    token = secrets.token_hex(8)
    run_part(multi, "pin_reservation", held.id, 0, token, 1000)
    run_part(multi, "pin_reservation", held.id, 1, token, 1000)
    run_part(multi, "commit_reservation", held.id, 0, "pinned", token)  # the decision; then death
    assert multi.get_reservation(held.id).status == "committed"
    assert buckets(multi)[b] == (10, 3, 0)
    assert multi.sweep().pins_resolved == 0  # the pin is not yet stale
    backend.advance(1.2)
    assert multi.sweep().pins_resolved == 1
    assert buckets(multi)[a] == (10, 0, 2) and buckets(multi)[b] == (10, 0, 3)
    assert multi.ship(held.id).status == "shipped"


def test_the_sweeper_undoes_pins_of_a_caller_that_died_before_the_decision(
    backend: Backend, multi: Engine
) -> None:
    backend.freeze()
    a, b, *_ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 2), (b, 3)], idempotency_key="crash", ttl_seconds=60)
    token = secrets.token_hex(8)
    run_part(multi, "pin_reservation", held.id, 0, token, 1000)
    run_part(multi, "pin_reservation", held.id, 1, token, 1000)
    with pytest.raises(CommitInProgress):
        multi.commit(held.id)
    backend.advance(1.2)
    assert multi.sweep().pins_resolved >= 1
    assert multi.get_reservation(held.id).status == "held"
    assert multi.commit(held.id).status == "committed"
    assert buckets(multi)[a] == (10, 0, 2) and buckets(multi)[b] == (10, 0, 3)


def test_a_pinned_hold_past_its_ttl_is_not_reclaimed_by_reserve(
    backend: Backend, multi: Engine
) -> None:
    backend.freeze()
    a, b, *_ = spread_skus(PARTITIONS)
    held = multi.reserve([(a, 10), (b, 1)], idempotency_key="pinned", ttl_seconds=1)
    token = secrets.token_hex(8)
    run_part(multi, "pin_reservation", held.id, 0, token, 60_000)
    backend.advance(1.2)
    with pytest.raises(InsufficientStock):
        multi.reserve([(a, 1)], idempotency_key="grab")
    assert run_part(multi, "commit_reservation", held.id, 0, "pinned", token)["ok"]


def test_an_idempotency_key_reused_for_another_cart_conflicts_in_any_partition(
    multi: Engine,
) -> None:
    skus = spread_skus(PARTITIONS)
    for n, (first, second) in enumerate((x, y) for x in skus for y in skus if x != y):
        key = f"reused-{n}"
        multi.reserve([(first, 1)], idempotency_key=key, ttl_seconds=5)
        with pytest.raises(IdempotencyConflict):
            multi.reserve([(second, 1)], idempotency_key=key)
        with pytest.raises(IdempotencyConflict):
            multi.reserve([(first, 1), (second, 1)], idempotency_key=key)
        assert multi.reserve([(first, 1)], idempotency_key=key, ttl_seconds=5).lines[0].sku == first


def test_a_replayed_multi_partition_reserve_returns_the_same_reservation(multi: Engine) -> None:
    a, b, *_ = spread_skus(PARTITIONS)
    first = multi.reserve([(a, 1), (b, 1)], idempotency_key="again")
    again = multi.reserve([(a, 1), (b, 1)], idempotency_key="again")
    assert again.id == first.id
    assert buckets(multi)[a] == (10, 1, 0)
