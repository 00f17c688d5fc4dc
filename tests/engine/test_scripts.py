"""The Lua sources: complete, documented, loadable, shipped in the wheel, cluster-safe."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from earmark import (
    AsyncEngine,
    CommitInProgress,
    Engine,
    EngineConfig,
    InsufficientStock,
    StoreFull,
    StoreNotReady,
)
from earmark.engine.bootstrap import bootstrap
from earmark.engine.scripts import FREES_HELD, INCLUDE, PLAIN, load_scripts, lua_dir, script_names
from earmark.engine.steps import Call, Op
from tests.support.backends import Backend, fresh_prefix
from tests.support.servers import RedisCluster, RedisServer, ServerUnavailable, unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_NAMES = script_names(lua_dir())
# The stock lifecycle scripts (docs/design/lifecycle.md), slot-checked by tests/test_lifecycle.py.
LIFECYCLE_SCRIPT_NAMES = (
    "close_purchase_order",
    "count_stock",
    "create_purchase_order",
    "damage_stock",
    "dispose_returned",
    "receive_purchase_order",
    "receive_return",
    "receive_transfer",
    "transfer_stock",
    "write_off_stock",
)
# The seat scripts (docs/seats.md), slot-checked by tests/engine/test_seats.py.
SEAT_SCRIPT_NAMES = (
    "accept_invite",
    "assign_seat",
    "free_seat",
    "invite_seat",
    "read_seats",
    "renew_seat",
    "restore_seats",
    "set_seat_cap",
)
HEADER_PARTS = ("KEYS", "ARGV", "Returns", "Invariants")


def test_every_lua_file_is_a_known_script() -> None:
    files = {path.stem for path in (ROOT / "lua").glob("*.lua")}
    assert files == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_opens_with_its_header(name: str) -> None:
    source = (ROOT / "lua" / f"{name}.lua").read_text()
    header = source.split("]]", 1)[0]
    assert source.startswith("--[[")
    for part in HEADER_PARTS:
        assert part in header, f"{name}.lua: header lacks {part}"


def test_includes_are_inlined() -> None:
    for script in load_scripts().values():
        assert not INCLUDE.search(script.source)
        assert not INCLUDE.search(script.library)
        forms = [script.source, script.library] if script.library else [script.source]
        for form in forms:
            assert "local function begin_call()" in form
            assert form.count("\nbegin_call()\n") == 1  # each call starts with it
        if not script.library:
            assert script.name in PLAIN
            continue
        assert script.library.startswith(f"#!lua name={script.function}\n")


def test_no_stream_is_trimmed_on_write() -> None:
    for script in load_scripts().values():
        if script.name == "restore_stock":
            continue  # runs on a stream Redis lost: it only moves the stream's last id on
        assert not re.search(r"MAXLEN|MINID|XTRIM", script.source)


def test_time_in_lua_comes_only_from_redis_time() -> None:
    """The one place a script reads a clock is now_ms() (Redis TIME); no script reads
    TIME itself or takes a time argument (ARGV documented as a time, not a duration)."""
    common = (ROOT / "lua" / "includes" / "common.lua").read_text()
    assert "rcall('TIME')" in common
    for path in (ROOT / "lua").rglob("*.lua"):
        source = path.read_text()
        if path.name != "common.lua":
            assert "'TIME'" not in source, path.name
        header = source.split("]]", 1)[0] if source.startswith("--[[") else ""
        for argv in re.findall(r"\[\d+\][^\n]*", header):
            assert not re.search(r"\b(now|timestamp|clock)\b", argv), (path.name, argv)


@pytest.mark.redis_server
def test_a_client_clock_far_off_changes_no_recorded_time(redis_server: RedisServer) -> None:
    """With Python's clock moved 25 years back, every time the engine records (hold
    expiry, creation, commit, the events' 'at') is still the Redis server's time: no
    client clock reaches a script."""
    import time_machine

    with Engine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix())) as engine:
        server_ms = int(engine.client.time()[0]) * 1000
        with time_machine.travel(datetime(2001, 1, 1, tzinfo=UTC), tick=True):
            engine.receive("A", 5)
            held = engine.reserve([("A", 2)], idempotency_key="k", ttl_seconds=60)
            engine.extend(held.id, 120)
            done = engine.commit(held.id)
        assert held.created_at is not None and held.expires_at is not None
        assert abs(held.created_at.timestamp() * 1000 - server_ms) < 60_000
        assert abs((held.expires_at - held.created_at).total_seconds() - 60) < 1
        assert done.committed_at is not None
        assert abs(done.committed_at.timestamp() * 1000 - server_ms) < 60_000
        events = engine.client.xrange(engine.keys.events(0))
        assert events and all(abs(int(f["at"]) - server_ms) < 60_000 for _, f in events)


@pytest.mark.redis_server
def test_every_script_compiles_on_a_real_redis(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        for script in load_scripts().values():
            sha = client.script_load(script.source)
            assert client.script_exists(sha) == [True]
    finally:
        client.close()


def test_every_call_keeps_its_keys_in_one_slot(request: pytest.FixtureRequest) -> None:
    """Wraps each registered script to check its KEYS share a cluster slot, then runs
    every operation across 4 partitions (carts across partitions included). No server is
    needed for that: redis-py's key_slot is the cluster's own hash."""
    engine = Backend("fake", request).engine(partitions=4, pin_ms=1000)
    seen: set[str] = set()

    def check(call: Call) -> None:
        assert len({key_slot(key.encode()) for key in call.keys}) == 1, call
        assert all(key.startswith(engine.keys.prefix) for key in call.keys)
        seen.add(call.script)

    def checked(op: Op[Any]) -> Op[Any]:
        """Passes every step through, checking the keys of each script call on the way."""
        step = next(op)
        while True:
            calls = [step] if isinstance(step, Call) else getattr(step, "calls", [])
            for call in calls:
                check(call)
            try:
                step = op.send((yield step))
            except StopIteration as stop:
                return stop.value

    run = engine.run
    engine.run = lambda op: run(checked(op))  # type: ignore[method-assign]
    skus = [f"S{i}" for i in range(12)]
    for sku in skus:
        engine.receive(sku, 5, idempotency_key=f"r{sku}")
        engine.adjust(sku, -1, "count", idempotency_key=f"a{sku}")
    cart = [(sku, 1) for sku in skus[:6]]
    held = engine.reserve(cart, idempotency_key="cart")
    assert len(held.id.rsplit("_", 1)[1].split("-")) > 1
    # A refused cart across partitions forgets its claim (release_idempotency).
    with pytest.raises(InsufficientStock):
        engine.reserve([*cart[:5], (skus[5], 99)], idempotency_key="refused")
    engine.extend(held.id, 60, idempotency_key="ext")
    engine.commit(held.id, idempotency_key="commit")
    engine.ship(held.id)
    other = engine.reserve([(skus[7], 1), (skus[8], 1)], idempotency_key="other")
    engine.release(other.id)
    engine.get_reservation(held.id)
    engine.availability(skus)
    engine.set_reorder(skus[11], 1, 3)  # set_reorder (issue 15)
    engine.note("discrepancy_opened", skus[11], {"case_id": "c"}, idempotency_key="n")
    engine.sweep()
    engine.run(bootstrap(engine.keys, engine.config, initialize=True))
    # A commit that finds another attempt's pin undoes its own pins (unpin_reservation).
    third = engine.reserve([(skus[9], 1), (skus[10], 1)], idempotency_key="third")
    assert len(third.id.rsplit("_", 1)[1].split("-")) == 2

    def pin_last_part() -> Generator[Any, Any, None]:
        parts = yield from engine._read_parts(third.id)
        yield engine._part_call("pin_reservation", third.id, parts[-1], "other", 60_000)

    engine.run(pin_last_part())
    with pytest.raises(CommitInProgress):
        engine.commit(third.id)
    # restore_stock is exercised (and slot-checked) by the rebuild tests, the lifecycle
    # scripts by tests/test_lifecycle.py::test_every_lifecycle_call_keeps_its_keys_in_one_slot.
    engine.vouch()
    # A drop (write_drop) and a reserve that brings the drop's keys and a customer's
    # pending entries, across partitions with a plain SKU.
    opens = datetime.now(UTC) - timedelta(hours=1)
    engine.create_drop("drop", [skus[11]], opens_at=opens, per_customer_limit=3, waitlist=True)
    engine.join_waitlist("drop", "bob", skus[11])
    engine.decline_waitlist("drop", "bob", skus[11])
    engine.reserve([(skus[11], 1), (skus[0], 1)], idempotency_key="d1", customer="ann")
    d2 = engine.reserve([(skus[11], 1)], idempotency_key="d2", customer="ann")
    # Offers: the sweeper's offer pass (offer_waitlist) serves bob from the free units,
    # bob's offer is committed, and a release hands its units to cy with their keys.
    engine.join_waitlist("drop", "bob", skus[11])
    assert engine.sweep().offered == 1
    offer = engine.get_waitlist_entry("drop", "bob", skus[11]).offer
    assert offer is not None
    engine.commit(offer.reservation_id)
    engine.reserve([(skus[11], 1)], idempotency_key="d3", customer="dee")
    engine.join_waitlist("drop", "cy", skus[11])
    engine.release(d2.id)
    assert engine.get_waitlist_entry("drop", "cy", skus[11]).status == "offered"
    # Channels: a default in every partition, an override, an allocation, and a reserve
    # with a channel across partitions (it brings each partition's settings key).
    engine.set_channel("market", buffer_units=1, idempotency_key="ch")
    engine.set_channel_sku("market", skus[1], buffer_percent=10)
    engine.allocate("market", skus[2], qty=1, idempotency_key="al")
    engine.reserve(
        [(skus[1], 1), (skus[2], 1), (skus[3], 1)], idempotency_key="ch1", channel="market"
    )
    expected = set(SCRIPT_NAMES) - {"restore_stock"} - set(LIFECYCLE_SCRIPT_NAMES)
    # reserve_batch is only sent by the asyncio coalescer: tests/engine/test_batching.py
    # checks its keys (and runs it on the cluster).
    assert seen == expected - set(SEAT_SCRIPT_NAMES) - {"reserve_batch"}


def test_a_missing_marker_fences_every_write_and_read(fake_engine: Engine) -> None:
    """Without its marker Redis cannot be trusted: writes and reads (stock, locations,
    reservations) are refused, never answered 'not found' from an emptied store."""
    from earmark import StoreNotReady

    engine = fake_engine
    engine.receive("A", 5)
    held = engine.reserve([("A", 1)], idempotency_key="k")
    engine.client.delete(engine.keys.meta(0))
    for write in (
        lambda: engine.receive("A", 1),
        lambda: engine.adjust("A", -1, "x"),
        lambda: engine.reserve([("A", 1)], idempotency_key="k2"),
        lambda: engine.commit(held.id),
        lambda: engine.release(held.id),
        lambda: engine.stock("A"),
        lambda: engine.availability(["A"]),
        lambda: engine.get_reservation(held.id),
    ):
        with pytest.raises(StoreNotReady):
            write()


def test_an_empty_redis_stays_fenced_unless_initialized() -> None:
    import fakeredis

    from earmark import StoreNotReady

    server = fakeredis.FakeServer()
    config = EngineConfig(prefix=fresh_prefix())
    fenced = Engine.embedded(config, server=server).start(initialize=False)
    assert fenced.state is not None and not fenced.state.ready
    with pytest.raises(StoreNotReady):
        fenced.receive("A", 1)
    fresh = Engine.embedded(config, server=server).start()
    assert fresh.state is not None and fresh.state.ready
    assert fresh.receive("A", 1).on_hand == 1


def test_the_partition_count_is_fixed_once_set() -> None:
    import fakeredis

    server = fakeredis.FakeServer()
    Engine.embedded(EngineConfig(prefix="p", partitions=4), server=server).start()
    assert Engine.embedded(EngineConfig(prefix="p"), server=server).start().partitions == 4
    with pytest.raises(ValueError, match="set up with 4 partitions"):
        Engine.embedded(EngineConfig(prefix="p", partitions=2), server=server).start()


def test_the_wheel_carries_the_scripts(tmp_path: Path) -> None:
    """A non-editable install finds the scripts inside the package."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("earmark-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    assert {f"earmark/lua/{n}.lua" for n in SCRIPT_NAMES} <= names
    assert "earmark/lua/includes/common.lua" in names
    assert "earmark/py.typed" in names
    # the operator console loads from the sidecar, never a CDN: its files ship too
    console = {"index.html", "console.js", "console.css"}
    assert {f"earmark/api/console/{n}" for n in console} <= names
    probe = (
        "from earmark.engine.scripts import load_scripts, lua_dir; "
        "print(lua_dir()); print(len(load_scripts()))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == [str(site / "earmark" / "lua"), str(len(SCRIPT_NAMES))]
    assert lua_dir() != site / "earmark" / "lua"


@pytest.mark.redis_server
def test_scripts_reload_after_the_server_forgets_them(redis_server: RedisServer) -> None:
    """FCALL, loading the library again on 'Function not found': a FUNCTION FLUSH (or a
    restarted Redis) costs nothing."""
    engine = Engine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix())).start()
    try:
        engine.receive("A", 2)
        engine.client.function_flush()
        assert engine.reserve([("A", 1)], idempotency_key="after-flush").status == "held"
        engine.client.function_flush()
        assert engine.availability(["A"])[0].reserved == 1  # the pipelined path too
    finally:
        engine.close()


@pytest.mark.redis_server
async def test_batched_and_coalesced_calls_reload_after_the_server_forgets_them(
    redis_server: RedisServer,
) -> None:
    engine = AsyncEngine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    async with engine:
        await engine.receive("A", 10)
        await engine.client.function_flush()
        held = await asyncio.gather(
            *(engine.reserve([("A", 1)], idempotency_key=f"c{i}") for i in range(5))
        )
        assert [h.status for h in held] == ["held"] * 5
        assert (await engine.stock("A")).reserved == 5


@pytest.mark.redis_server
def test_a_library_forgets_the_clock_of_the_call_before(redis_server: RedisServer) -> None:
    """A function library's locals outlive a call: each call starts with begin_call(),
    so the clock (and the meta) a call read is never an earlier call's."""
    engine = Engine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix())).start()
    try:
        engine.receive("A", 2)
        first = engine.reserve([("A", 1)], idempotency_key="first", ttl_seconds=60)
        time.sleep(0.02)
        second = engine.reserve([("A", 1)], idempotency_key="second", ttl_seconds=60)
        assert second.created_at - first.created_at >= timedelta(milliseconds=15)
        engine.fence("drill")  # the meta changed between two calls
        with pytest.raises(StoreNotReady):
            engine.reserve([("A", 1)], idempotency_key="third")
    finally:
        engine.close()


@pytest.mark.redis_server
def test_a_full_redis_still_finishes_holds_and_refuses_new_ones() -> None:
    """Write functions are refused up front while Redis is at its maxmemory, before they
    write anything, except those that finish or free what is held (FREES_HELD,
    allow-oom): a full Redis never strands a hold it cannot commit or release."""
    try:
        server = RedisServer(extra_args=["--maxmemory-policy", "noeviction"]).start()
    except ServerUnavailable as error:
        unavailable(f"redis-server: {error}")
    filler = redis.Redis.from_url(server.url)
    engine = Engine.from_url(server.url, EngineConfig(prefix=fresh_prefix()))
    try:
        engine.start()
        engine.receive("A", 5, idempotency_key="stock")
        kept = engine.reserve([("A", 1)], idempotency_key="kept")
        freed = engine.reserve([("A", 1)], idempotency_key="freed")
        for i in range(300):
            filler.set(f"filler:{i}", "x" * 10_000)
        filler.config_set("maxmemory", "1mb")
        with pytest.raises(StoreFull):
            engine.reserve([("A", 1)], idempotency_key="new")
        with pytest.raises(StoreFull):
            engine.receive("A", 1, idempotency_key="more")
        assert engine.stock("A").reserved == 2  # reads answer
        assert engine.commit(kept.id, idempotency_key="c").status == "committed"
        assert engine.release(freed.id, idempotency_key="r").status == "released"
        level = engine.stock("A")
        assert (level.on_hand, level.reserved, level.committed) == (5, 0, 1)
    finally:
        filler.close()
        engine.close()
        server.close()


def test_each_write_script_has_its_memory_rule() -> None:
    """Reads are no-writes functions; FREES_HELD names only scripts that exist and write."""
    scripts = load_scripts()
    assert scripts.keys() >= FREES_HELD
    for name, script in scripts.items():
        if name in PLAIN:
            continue
        flags = script.library.split("flags = ", 1)[1].split(",", 1)[0]
        if name.startswith("read_"):
            assert flags == "{'no-writes'}"
        else:
            assert flags == ("{'allow-oom'}" if name in FREES_HELD else "{}"), name


@pytest.mark.redis_server
def test_every_library_loads_on_a_real_redis(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for script in load_scripts().values():
            if script.name in PLAIN:
                continue
            assert client.function_load(script.library, replace=True) == script.function
    finally:
        client.close()


@pytest.mark.cluster
async def test_a_cluster_routes_fcall_by_its_key_alone(redis_cluster: RedisCluster) -> None:
    """FCALL goes to its slot's master without asking COMMAND GETKEYS first."""
    nodes = [redis.Redis(host="127.0.0.1", port=port) for port in redis_cluster.ports]
    engine = AsyncEngine.from_url(
        redis_cluster.url, EngineConfig(prefix=fresh_prefix()), cluster=True
    )
    try:
        async with engine:
            await engine.receive("A", 5)
            for node in nodes:
                node.config_resetstat()
            await engine.reserve([("A", 1)], idempotency_key="one")
            await engine.stock("A")
        stats = [node.info("commandstats") for node in nodes]
        assert sum(s.get("cmdstat_fcall", {}).get("calls", 0) for s in stats) >= 2
        assert not any("cmdstat_command|getkeys" in s for s in stats)
    finally:
        for node in nodes:
            node.close()


def test_a_broken_script_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    import redis.exceptions

    from earmark.engine import sync_engine as engine_module
    from earmark.engine.scripts import build

    broken = {"reserve": build("reserve", '--- @include "common"\nreturn {', lua_dir())}
    monkeypatch.setattr(engine_module, "load_scripts", lambda: broken)
    engine = Engine.from_url(redis_server.url, EngineConfig(prefix=fresh_prefix()))
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="Error compiling function"):
            engine.start()
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("reserve", ["f" * 32, "a", "k", 1000, "rsv_x_0", 1000, "", 1, 1000, 1, "A", "d", 1]),
        ("commit_reservation", ["", "a", "", 1000, "rsv_x_0", 1, "A", "d", "direct", ""]),
        ("receive_stock", ["", "a", "", 1000, "A", "d", 1, 5, ""]),
        ("read_stock", [10]),
        ("reserve", ["f" * 32, "a", "k", 1000, "rsv_x_0", 1000, "", 1, 1000, 51]),
    ],
    ids=["reserve", "commit", "receive", "read", "reserve-51-lines"],
)
def test_a_call_with_the_wrong_keys_or_counts_fails_before_writing(
    backend: Backend, script: str, args: list[Any]
) -> None:
    """Scripts check #KEYS and bound every count they loop over, in Lua too: a broken
    caller gets an error, not a half-applied write."""
    import redis

    engine = backend.engine()
    before = engine.client.xlen(engine.keys.events(0))
    keys = [engine.keys.meta(0), engine.keys.events(0)]  # far too few for any layout
    with pytest.raises(redis.exceptions.ResponseError, match="earmark: "):
        engine._call(Call(script, keys, list(args)))
    assert engine.client.xlen(engine.keys.events(0)) == before
