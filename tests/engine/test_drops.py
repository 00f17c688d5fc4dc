"""Drops (docs/drops.md): opening and closing on the Redis clock, a customer required,
the per-customer limit across carts and API keys with released and expired holds giving
units back, the rate limit, and bad input refused with nothing written; on fakeredis, a
real redis-server and a real Redis Cluster (4 partitions)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from earmark import (
    CartSpansDrops,
    CustomerLimitExceeded,
    CustomerRequired,
    DropAlreadyOpen,
    DropExists,
    DropNotFound,
    DropNotOpen,
    Engine,
    InsufficientStock,
    InvalidRequest,
    RateLimited,
    SkuInDrop,
    limits,
)
from tests.support.backends import Backend, level_of, stream_lengths

Clock = Callable[[float], None]


def server_now(engine: Engine) -> datetime:
    seconds, micros = engine.client.time()
    return datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, tz=UTC)


def open_drop(engine: Engine, sku: str = "TEE", units: int = 10, **rules: object) -> None:
    """A drop of ``sku`` with ``units`` on hand that opened a minute ago (server clock)."""
    engine.receive(sku, units)
    rules.setdefault("opens_at", server_now(engine) - timedelta(minutes=1))
    rules.setdefault("per_customer_limit", 2)
    engine.create_drop(f"drop-{sku}", [sku], **rules)  # type: ignore[arg-type]


def test_a_drop_is_created_read_and_changed_before_it_opens(engine: Engine) -> None:
    engine.receive("TEE", 5)
    opens = server_now(engine) + timedelta(hours=1)
    drop = engine.create_drop(
        "launch",
        ["TEE"],
        opens_at=opens,
        per_customer_limit=2,
        hold_ttl_seconds=120,
        offer_ttl_seconds=60,
    )
    assert (drop.id, drop.skus, drop.per_customer_limit, drop.open) == (
        "launch",
        ("TEE",),
        2,
        False,
    )
    assert drop.hold_ttl_seconds == 120 and drop.closes_at is None
    assert abs((drop.opens_at - opens).total_seconds()) < 0.002
    changed = engine.update_drop(
        "launch", per_customer_limit=3, closes_at=opens + timedelta(hours=2)
    )
    assert changed.per_customer_limit == 3 and changed.closes_at is not None
    again = engine.get_drop("launch")
    assert again == changed
    # Each rule change is an event with its actor (qty 0, no deltas: no bucket moves).
    p = engine.partition_of("TEE")
    recorded = [f for _, f in engine.client.xrange(engine.keys.events(p)) if "drop" in f]
    moved = [orjson.loads(f["deltas"]) for f in recorded]
    assert [(f["type"], f["drop"], f["actor"]) for f in recorded] == [
        ("drop_created", "launch", "library"),
        ("drop_changed", "launch", "library"),
    ]
    assert not any(moved)
    assert (again.sold, again.held) == (0, 0)


def test_a_drop_sku_needs_a_customer_and_an_open_drop(engine: Engine) -> None:
    engine.receive("TEE", 5)
    engine.create_drop("later", ["TEE"], opens_at=server_now(engine) + timedelta(hours=1))
    with pytest.raises(CustomerRequired):
        engine.reserve([("TEE", 1)], idempotency_key="k0")
    with pytest.raises(DropNotOpen) as refused:
        engine.reserve([("TEE", 1)], idempotency_key="k1", customer="ann")
    opens_at = datetime.fromisoformat(refused.value.details["opens_at"])
    assert opens_at > server_now(engine) and refused.value.details["closes_at"] is None
    assert level_of(engine, "TEE").reserved == 0
    # Other SKUs of the partition are not the drop's: no customer needed.
    engine.receive("PLAIN", 1)
    engine.reserve([("PLAIN", 1)], idempotency_key="k2")


def test_the_drop_opens_and_closes_on_the_server_clock(
    fake_engine: Engine, request: pytest.FixtureRequest
) -> None:
    backend = Backend("fake", request)
    backend.freeze()
    engine = fake_engine
    engine.receive("TEE", 5)
    now = server_now(engine)
    engine.create_drop(
        "timed",
        ["TEE"],
        opens_at=now + timedelta(seconds=10),
        closes_at=now + timedelta(seconds=20),
    )
    with pytest.raises(DropNotOpen):
        engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    backend.advance(11)
    assert engine.get_drop("timed").open
    engine.reserve([("TEE", 1)], idempotency_key="b", customer="ann")
    with pytest.raises(DropAlreadyOpen):
        engine.update_drop("timed", per_customer_limit=5)
    backend.advance(10)
    with pytest.raises(DropNotOpen):
        engine.reserve([("TEE", 1)], idempotency_key="c", customer="ann")


def test_the_limit_counts_every_cart_and_key_and_a_release_gives_units_back(engine: Engine) -> None:
    open_drop(engine, per_customer_limit=3)
    first = engine.reserve([("TEE", 2)], idempotency_key="a", customer="ann", actor="shop-a")
    engine.commit(first.id, actor="shop-a")
    second = engine.reserve([("TEE", 1)], idempotency_key="b", customer="ANN ", actor="shop-b")
    with pytest.raises(CustomerLimitExceeded) as refused:
        engine.reserve([("TEE", 1)], idempotency_key="c", customer=" Ann", actor="shop-c")
    assert (refused.value.details["limit"], refused.value.details["used"]) == (3, 3)
    engine.release(second.id, actor="shop-b")
    engine.reserve([("TEE", 1)], idempotency_key="d", customer="ann", actor="shop-c")
    # Another customer has an allowance of its own.
    engine.reserve([("TEE", 3)], idempotency_key="e", customer="bob")
    drop = engine.get_drop("drop-TEE")
    assert (drop.sold, drop.held) == (2, 4)
    with pytest.raises(CustomerLimitExceeded):
        engine.reserve([("TEE", 4)], idempotency_key="f", customer="cat")


def test_a_drops_holds_and_sales_name_their_customer_in_the_events(engine: Engine) -> None:
    """The ledger alone can count a customer against the limit: the 'reserved' and
    'committed' events of a drop's hold carry its (normalised) customer and drop; a hold
    of no drop carries neither."""
    open_drop(engine)
    engine.receive("PLAIN", 5)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer=" Ann ")
    engine.commit(held.id)
    engine.reserve([("PLAIN", 1)], idempotency_key="b")
    p = engine.partition_of("TEE")
    events = [f for _, f in engine.client.xrange(engine.keys.events(p))]
    ours = [e for e in events if e["type"] in ("reserved", "committed") and e["sku"] == "TEE"]
    assert [(e["type"], e["customer"], e["drop"]) for e in ours] == [
        ("reserved", "ann", "drop-TEE"),
        ("committed", "ann", "drop-TEE"),
    ]
    q = engine.partition_of("PLAIN")
    plain = [f for _, f in engine.client.xrange(engine.keys.events(q)) if f["sku"] == "PLAIN"]
    assert plain and all("customer" not in e and "drop" not in e for e in plain)


def test_an_expired_hold_gives_its_units_back_to_the_allowance(backend: Backend) -> None:
    engine = backend.engine()
    open_drop(engine, per_customer_limit=1, hold_ttl_seconds=1)
    held = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann", ttl_seconds=600)
    assert (held.expires_at - held.created_at).total_seconds() == 1  # the drop's hold TTL
    with pytest.raises(CustomerLimitExceeded):
        engine.reserve([("TEE", 1)], idempotency_key="b", customer="ann")
    backend.advance(1.1)
    engine.reserve([("TEE", 1)], idempotency_key="c", customer="ann")
    assert level_of(engine, "TEE").reserved == 1


def test_customers_at_their_limit_count_live_holds_and_sales(backend: Backend) -> None:
    engine = backend.engine()
    open_drop(engine, units=20, per_customer_limit=2, hold_ttl_seconds=1)
    assert engine.get_drop("drop-TEE").customers_at_limit == 0
    engine.reserve([("TEE", 2)], idempotency_key="a", customer="ann")  # at the limit
    engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")  # below it
    sold = engine.reserve([("TEE", 1)], idempotency_key="c1", customer="cat")
    engine.commit(sold.id)
    engine.reserve([("TEE", 1)], idempotency_key="c2", customer="cat")  # 1 sold + 1 held
    dan = engine.reserve([("TEE", 2)], idempotency_key="d", customer="dan")
    assert engine.get_drop("drop-TEE").customers_at_limit == 3
    engine.release(dan.id)  # released: below the limit again
    (listed,) = engine.list_drops().items
    assert listed.customers_at_limit == 2
    backend.advance(1.1)  # every hold expired, swept or not: only cat's sale is left
    assert engine.get_drop("drop-TEE").customers_at_limit == 0
    engine.reserve([("TEE", 1)], idempotency_key="c3", customer="cat")  # back at it
    engine.reserve([("TEE", 1)], idempotency_key="a2", customer="ann")  # below: not counted
    assert engine.get_drop("drop-TEE").customers_at_limit == 1
    engine.receive("FREE", 5)
    engine.create_drop("no-limit", ["FREE"], opens_at=server_now(engine))
    engine.reserve([("FREE", 5)], idempotency_key="f", customer="ann")
    assert engine.get_drop("no-limit").customers_at_limit is None


def test_a_replayed_reserve_is_not_counted_twice(engine: Engine) -> None:
    open_drop(engine, per_customer_limit=1)
    first = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    again = engine.reserve([("TEE", 1)], idempotency_key="a", customer="ann")
    assert again.id == first.id and again.replayed
    assert level_of(engine, "TEE").reserved == 1


def test_the_rate_limit_refuses_a_hammering_identity(backend: Backend) -> None:
    backend.freeze(tick=False)  # a ticking clock on a busy machine may cross a second
    engine = backend.engine(drop_attempts_per_second=2)
    open_drop(engine, per_customer_limit=1)
    engine.reserve([("TEE", 1)], idempotency_key="a", customer="bot")
    outcomes = []
    for n in range(3):
        try:
            engine.reserve([("TEE", 1)], idempotency_key=f"b{n}", customer="bot")
        except (CustomerLimitExceeded, RateLimited) as error:
            outcomes.append(error.code)
    # Within one second: the second attempt is judged on the limit, the rest are throttled
    # (on a real server the second may turn over in between: then the limit answers).
    assert "rate_limited" in outcomes or backend.real
    assert set(outcomes) <= {"customer_limit_exceeded", "rate_limited"}
    engine.reserve([("TEE", 1)], idempotency_key="c", customer="someone-else")
    if not backend.real:
        backend.advance(1)
        with pytest.raises(CustomerLimitExceeded):
            engine.reserve([("TEE", 1)], idempotency_key="d", customer="bot")


def test_rate_limited_carries_retry_after() -> None:
    assert RateLimited.http_status == 429 and RateLimited.retry_after_seconds == 1


def test_a_cart_may_not_take_two_drops(engine: Engine) -> None:
    skus = [s for s in (f"S{n}" for n in range(40)) if engine.partition_of(s) == 0][:2]
    for sku in skus:
        open_drop(engine, sku)
    with pytest.raises(CartSpansDrops):
        engine.reserve([(skus[0], 1), (skus[1], 1)], idempotency_key="x", customer="ann")
    assert [level_of(engine, s).reserved for s in skus] == [0, 0]


def test_drops_hold_carts_with_plain_skus_and_refuse_short_stock(engine: Engine) -> None:
    open_drop(engine, units=1, per_customer_limit=None)
    engine.receive("CAP", 5)
    held = engine.reserve([("TEE", 1), ("CAP", 2)], idempotency_key="a", customer="ann")
    assert held.status == "held"
    with pytest.raises(InsufficientStock):
        engine.reserve([("TEE", 1)], idempotency_key="b", customer="bob")


# -- bad input: a stable code and nothing written -----------------------------------------


def test_bad_drops_are_refused_and_write_nothing(engine: Engine) -> None:
    engine.receive("TEE", 5)
    now = server_now(engine)
    before = stream_lengths(engine)
    keys_before = sorted(engine.client.keys(f"{engine.keys.prefix}:*"))
    cases: list[tuple[dict[str, object], str]] = [
        ({"opens_at": now, "closes_at": now - timedelta(seconds=1)}, "closes_at"),
        ({"opens_at": now, "closes_at": now}, "closes_at"),
        ({"opens_at": now, "per_customer_limit": -1}, "per_customer_limit"),
        ({"opens_at": now, "per_customer_limit": 0}, "per_customer_limit"),
        (
            {"opens_at": now, "per_customer_limit": limits.DROP_CUSTOMER_LIMIT_MAX + 1},
            "per_customer_limit",
        ),
        ({"opens_at": now.replace(tzinfo=None)}, "opens_at"),
        ({"opens_at": "tomorrow"}, "opens_at"),
        ({"opens_at": now, "hold_ttl_seconds": -5}, "hold_ttl_seconds"),
        ({"opens_at": now, "offer_ttl_seconds": 0}, "offer_ttl_seconds"),
        ({"opens_at": now, "waitlist": "yes"}, "waitlist"),
    ]
    for rules, field in cases:
        with pytest.raises(InvalidRequest) as refused:
            engine.create_drop("d", ["TEE"], **rules)  # type: ignore[arg-type]
        assert (refused.value.code, refused.value.details["field"]) == ("invalid_request", field)
    for drop_id, skus, field in [
        ("", ["TEE"], "id"),
        ("x" * (limits.DROP_ID_LENGTH_MAX + 1), ["TEE"], "id"),
        ("d", [], "skus"),
        ("d", ["TEE", "TEE"], "skus"),
        ("d", "TEE", "skus"),
        ("d", ["bad sku"], "sku"),
    ]:
        with pytest.raises(InvalidRequest) as refused:
            engine.create_drop(drop_id, skus, opens_at=now)  # type: ignore[arg-type]
        assert refused.value.details["field"] == field
    assert stream_lengths(engine) == before
    assert sorted(engine.client.keys(f"{engine.keys.prefix}:*")) == keys_before
    for unknown in ("nope", "", "a b", "x" * 100):
        with pytest.raises(DropNotFound):
            engine.get_drop(unknown)
        with pytest.raises(DropNotFound):
            engine.update_drop(unknown, per_customer_limit=1)


def test_a_drop_id_or_sku_is_taken_once(engine: Engine) -> None:
    engine.receive("TEE", 5)
    now = server_now(engine) + timedelta(hours=1)
    engine.create_drop("d", ["TEE"], opens_at=now)
    with pytest.raises(DropExists):
        engine.create_drop("d", ["TEE"], opens_at=now)
    with pytest.raises(SkuInDrop) as refused:
        engine.create_drop("e", ["TEE"], opens_at=now)
    assert refused.value.details == {"sku": "TEE", "drop": "d"}
    with pytest.raises(InvalidRequest) as bad:
        engine.update_drop("d", closes_at=now - timedelta(hours=2))
    assert bad.value.details["field"] == "closes_at"
    assert engine.get_drop("d").closes_at is None


def test_a_customer_id_is_bounded_and_printable(engine: Engine) -> None:
    open_drop(engine)
    before = stream_lengths(engine)
    for bad in ("x" * (limits.CUSTOMER_LENGTH_MAX + 1), "caf\u00e9", 42):
        with pytest.raises(InvalidRequest) as refused:
            engine.reserve([("TEE", 1)], idempotency_key="k", customer=bad)  # type: ignore[arg-type]
        assert refused.value.details["field"] == "customer"
    assert stream_lengths(engine) == before


def test_a_drop_across_partitions_is_refused(request: pytest.FixtureRequest) -> None:
    engine = Backend("fake", request).engine(partitions=4)
    skus = ["A", "B", "C", "D", "E"]
    assert len({engine.partition_of(s) for s in skus}) > 1
    with pytest.raises(InvalidRequest) as refused:
        engine.create_drop("wide", skus, opens_at=server_now(engine))
    assert refused.value.details["field"] == "skus"
