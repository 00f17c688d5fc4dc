"""Concurrent reserves of one partition as ONE script call (lua/reserve_batch.lua, sent
by earmark.engine.coalesce): each cart all or nothing on its own, answered in order; on
fakeredis, a real redis-server and a cluster (where each partition's batch goes to its
node on its own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import pytest
import redis.cluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark import AsyncEngine, EngineConfig, limits
from earmark.engine import coalesce
from earmark.engine.steps import Call
from earmark.errors import IdempotencyConflict, InsufficientStock, SkuNotFound
from tests.support.backends import Backend, alevel_of, fresh_prefix


async def async_engine(backend: Backend, **config: Any) -> AsyncEngine:
    config.setdefault("prefix", fresh_prefix())
    if backend.name == "cluster":
        config.setdefault("partitions", 4)
    settings = EngineConfig(**config)
    if backend.name == "fake":
        engine = AsyncEngine.embedded(settings, server=backend.server)
    else:
        engine = AsyncEngine.from_url(backend.url(), settings, cluster=backend.name == "cluster")
    return await engine.start()


@pytest.fixture
async def aengine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    engine = await async_engine(backend)
    yield engine
    await engine.close()


@pytest.fixture
def merged(monkeypatch: pytest.MonkeyPatch) -> list[coalesce.Merged]:
    """Every merged unit the coalescer sends."""
    seen: list[coalesce.Merged] = []
    merge = coalesce.merge

    def spy(pending: list[coalesce.Pending], *, batching: bool) -> list[coalesce.Unit]:
        units = merge(pending, batching=batching)
        seen.extend(unit for unit in units if isinstance(unit, coalesce.Merged))
        return units

    monkeypatch.setattr(coalesce, "merge", spy)
    return seen


def one_partition(engine: AsyncEngine) -> bool:
    """On one partition every cart's reserve call arrives in the same loop turn; with
    several, each cart first claims its key in the key's home partition, so the reserves
    arrive over several turns (the cluster tests then check the outcome, and
    test_each_batch_keeps_its_keys_in_one_slot that batches form)."""
    return engine.partitions == 1


async def settle(*calls: Any) -> list[Any]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def test_concurrent_reserves_of_a_partition_are_one_call(
    aengine: AsyncEngine, merged: list[coalesce.Merged]
) -> None:
    await aengine.receive("HOT", 100)
    results = await settle(
        *(aengine.reserve([("HOT", 1)], idempotency_key=f"k{i}") for i in range(20))
    )
    assert all(not isinstance(r, Exception) for r in results)
    assert len({r.id for r in results}) == 20
    if aengine.partitions == 1:
        assert [len(unit.items) for unit in merged] == [20]
    else:
        # Each cart first claims its key in the key's home partition, so replies reach
        # the reserves in several loop turns: fewer, smaller batches, still merged.
        assert merged and max(len(unit.items) for unit in merged) > 1
    level = await alevel_of(aengine, "HOT")
    assert (level.reserved, level.available) == (20, 80)


async def test_mixed_accepted_and_refused_carts_in_one_call(
    aengine: AsyncEngine, merged: list[coalesce.Merged]
) -> None:
    """Each cart is all or nothing on its own: the first five single-unit carts take the
    five units, the rest are refused, a two-line cart short on one line holds nothing,
    an unknown SKU is named as such, and the answers come back to their own callers."""
    await aengine.receive("A", 5)
    await aengine.receive("B", 10)
    calls = [aengine.reserve([("A", 1)], idempotency_key=f"a{i}") for i in range(8)]
    calls.append(aengine.reserve([("B", 2), ("A", 1)], idempotency_key="both"))
    calls.append(aengine.reserve([("NOPE", 1)], idempotency_key="nope"))
    calls.append(aengine.reserve([("B", 3)], idempotency_key="b"))
    results = await settle(*calls)
    if one_partition(aengine):
        assert sum(len(unit.items) for unit in merged) >= 8
    held = [r for r in results[:8] if not isinstance(r, Exception)]
    refused = [r for r in results[:8] if isinstance(r, InsufficientStock)]
    assert (len(held), len(refused)) == (5, 3)
    assert isinstance(results[8], InsufficientStock)
    assert isinstance(results[9], SkuNotFound)
    assert [(line.sku, line.qty) for line in results[10].lines] == [("B", 3)]
    a, b = await alevel_of(aengine, "A"), await alevel_of(aengine, "B")
    assert (a.reserved, a.available) == (5, 0)
    assert (b.reserved, b.available) == (3, 7)


async def test_duplicate_idempotency_keys_within_one_call(
    aengine: AsyncEngine, merged: list[coalesce.Merged]
) -> None:
    """The same key twice in one batch: the second cart replays the first (one hold);
    the same key with another cart is a conflict and holds nothing."""
    await aengine.receive("D", 10)
    first, again, other = await settle(
        aengine.reserve([("D", 2)], idempotency_key="same"),
        aengine.reserve([("D", 2)], idempotency_key="same"),
        aengine.reserve([("D", 3)], idempotency_key="same"),
    )
    if one_partition(aengine):
        assert [len(unit.items) for unit in merged] == [3]
    assert not isinstance(first, Exception) and not isinstance(again, Exception)
    assert again.id == first.id
    assert (first.replayed, again.replayed) == (False, True)
    assert isinstance(other, IdempotencyConflict)
    level = await alevel_of(aengine, "D")
    assert level.reserved == 2


@pytest.mark.parametrize("backend", ["fake", "redis"], indirect=True)
async def test_a_call_spanning_the_ttl_edge(
    backend: Backend, clock: Callable[[float], None], merged: list[coalesce.Merged]
) -> None:
    """Holds that expired just before a batch are reclaimed by its first cart that needs
    them; every later cart of the same call sees the units free again."""
    engine = await async_engine(backend)
    try:
        await engine.receive("T", 4)
        for i in range(4):
            await engine.reserve([("T", 1)], idempotency_key=f"old{i}", ttl_seconds=1)
        assert (await alevel_of(engine, "T")).available == 0
        clock(1.2)
        results = await settle(
            *(engine.reserve([("T", 1)], idempotency_key=f"new{i}") for i in range(6))
        )
        assert [len(unit.items) for unit in merged] == [6]
        held = [r for r in results if not isinstance(r, Exception)]
        assert len(held) == 4
        assert all(isinstance(r, InsufficientStock) for r in results if r not in held)
        level = await alevel_of(engine, "T")
        assert (level.reserved, level.available) == (4, 0)
        events = await engine.client.xrange(engine.keys.events(engine.partition_of("T")))
        assert sum(1 for _, e in events if e["type"] == "expired") == 4
    finally:
        await engine.close()


async def test_a_failing_cart_does_not_fail_the_others(
    aengine: AsyncEngine, merged: list[coalesce.Merged]
) -> None:
    """A call whose script fails (here a broken caller: a line count of 0) gets its own
    error; the carts beside it in the same batch are answered normally."""
    await aengine.receive("F", 3)
    p = aengine.partition_of("F")

    def broken() -> Generator[Call, Any, Any]:
        call = aengine._reserve_call(
            "rsv_" + "0" * 24 + f"_{p}", p, [], "f" * 32, 1000, "", "x", ""
        )
        return (yield call)

    bad, good = await settle(
        aengine.run(broken()), aengine.reserve([("F", 1)], idempotency_key="g")
    )
    if one_partition(aengine):
        assert [len(unit.items) for unit in merged] == [2]
    assert isinstance(bad, Exception) and "line count" in str(bad)
    assert not isinstance(good, Exception) and good.lines[0].qty == 1
    assert (await alevel_of(aengine, "F")).reserved == 1


@pytest.mark.parametrize(
    "backend", [pytest.param("cluster", marks=pytest.mark.cluster)], indirect=True
)
async def test_each_batch_keeps_its_keys_in_one_slot(
    backend: Backend, merged: list[coalesce.Merged]
) -> None:
    """On a cluster concurrent reserves of many partitions become one batch per partition,
    each batch's keys in one slot (so one node runs it)."""
    engine = await async_engine(backend, partitions=8)
    try:
        skus = [f"S{i}" for i in range(16)]
        for sku in skus:
            await engine.receive(sku, 10)
        results = await settle(
            *(
                engine.reserve([(sku, 1)], idempotency_key=f"{sku}-{i}")
                for sku in skus
                for i in range(3)
            )
        )
        assert all(not isinstance(r, Exception) for r in results)
        assert merged
        for unit in merged:
            slots = {redis.cluster.key_slot(k.encode()) for k in unit.call().keys}
            assert len(slots) == 1
        for sku in skus:
            assert (await alevel_of(engine, sku)).reserved == 3
    finally:
        await engine.close()


def test_batches_are_bounded_by_carts_and_bytes() -> None:
    """merge splits a partition's calls past CARTS_PER_CALL_MAX carts or BATCH_BYTES_MAX
    bytes, keeps each call's order, and leaves other scripts and lone calls alone."""
    loop = asyncio.new_event_loop()
    try:

        def pending(script: str, meta: str, size: int = 10) -> coalesce.Pending:
            return coalesce.Pending(Call(script, [meta], ["x" * size]), True, loop.create_future())

        many = [pending("reserve", "m:{0}") for _ in range(limits.CARTS_PER_CALL_MAX + 1)]
        units = coalesce.merge(many, batching=True)
        assert [len(u.items) if isinstance(u, coalesce.Merged) else 1 for u in units] == [
            limits.CARTS_PER_CALL_MAX,
            1,
        ]
        assert isinstance(units[1], coalesce.Pending)
        big = [pending("reserve", "m:{0}", limits.BATCH_BYTES_MAX // 2) for _ in range(3)]
        units = coalesce.merge(big, batching=True)
        assert [len(u.items) if isinstance(u, coalesce.Merged) else 1 for u in units] == [1, 1, 1]
        mixed = [pending("reserve", "m:{0}"), pending("commit_reservation", "m:{0}")]
        mixed += [pending("reserve", "m:{1}"), pending("reserve", "m:{0}")]
        units = coalesce.merge(mixed, batching=True)
        assert isinstance(units[0], coalesce.Merged) and units[0].items == [mixed[0], mixed[3]]
        assert units[1:] == [mixed[1], mixed[2]]
        assert coalesce.merge(mixed, batching=False) == mixed
    finally:
        loop.close()


CART = st.dictionaries(st.sampled_from(["P", "Q", "R"]), st.integers(1, 4), min_size=1, max_size=3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stock=st.fixed_dictionaries({sku: st.integers(0, 8) for sku in ["P", "Q", "R"]}),
    carts=st.lists(CART, min_size=2, max_size=24),
    repeat=st.sets(st.integers(0, 23), max_size=4),
)
def test_a_batch_answers_as_the_carts_one_after_the_other_would(
    stock: dict[str, int], carts: list[dict[str, int]], repeat: set[int]
) -> None:
    """Against a plain model: concurrent carts on one partition (one batch, in call order)
    are each all or nothing, in order, as if sent one after the other; a cart that
    reuses an earlier cart's key replays it (same id, nothing held twice)."""
    keys = [f"k{i}" for i in range(len(carts))]
    for i in sorted(repeat):
        if 0 < i < len(carts):
            keys[i], carts[i] = keys[i - 1], carts[i - 1]  # the same request again

    async def scenario() -> tuple[list[Any], dict[str, int], int]:
        engine = AsyncEngine.embedded(EngineConfig(prefix=fresh_prefix()))
        async with engine:
            for sku, units in stock.items():
                if units:
                    await engine.receive(sku, units)
            seen: list[coalesce.Merged] = []
            merge = coalesce.merge

            def spy(pending: list[coalesce.Pending], *, batching: bool) -> list[coalesce.Unit]:
                units = merge(pending, batching=batching)
                seen.extend(u for u in units if isinstance(u, coalesce.Merged))
                return units

            coalesce.merge = spy  # type: ignore[assignment]
            try:
                results = await settle(
                    *(
                        engine.reserve(list(cart.items()), idempotency_key=key)
                        for cart, key in zip(carts, keys, strict=True)
                    )
                )
            finally:
                coalesce.merge = merge  # type: ignore[assignment]
            reserved = {sku: (await alevel_of(engine, sku)).reserved for sku in stock if stock[sku]}
            return results, reserved, max((len(u.items) for u in seen), default=1)

    results, reserved, biggest = asyncio.run(scenario())
    assert biggest == len(carts)  # one call carried every cart
    free, held_by_key = dict(stock), {}
    for cart, key, result in zip(carts, keys, results, strict=True):
        if key in held_by_key:  # a replay of an earlier success
            assert not isinstance(result, Exception) and result.id == held_by_key[key]
            assert result.replayed
            continue
        fits = all(free[sku] >= qty for sku, qty in cart.items())
        if fits:
            assert not isinstance(result, Exception), result
            held_by_key[key] = result.id
            for sku, qty in cart.items():
                free[sku] -= qty
        else:
            assert isinstance(result, InsufficientStock | SkuNotFound), result
    assert reserved == {sku: stock[sku] - free[sku] for sku in stock if stock[sku]}
