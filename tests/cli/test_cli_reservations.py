"""``earmark reservations list | show | release``: every --help, and finding and freeing
a stuck hold against a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from earmark import Engine, EngineConfig
from earmark import console as cli
from earmark.keys import Keys
from tests.cli.test_cli_lifecycle import Cli, env, stream_events  # noqa: F401  (the fixture)
from tests.support.servers import RedisServer

ACTIONS = ["list", "show", "release"]


@pytest.mark.parametrize("action", ACTIONS)
def test_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["reservations", action, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: earmark reservations {action}")
    assert ("--actor" in out and "--idempotency-key" in out) == (action == "release")
    if action == "list":
        assert all(f in out for f in ("--sku", "--location", "--customer", "--limit", "--cursor"))


@pytest.mark.redis_server
def test_find_and_free_a_stuck_hold(
    env: Keys,  # noqa: F811
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = Cli(capsys)
    with Engine.from_url(redis_server.url, EngineConfig(prefix=env.prefix)) as engine:
        engine.receive("TEE", 10)
        engine.receive("CAP", 10, location="berlin")
        seconds, _ = engine.client.time()
        opened = datetime.fromtimestamp(int(seconds), tz=UTC) - timedelta(minutes=1)
        # The drop's hold TTL is the stuck hold's (a drop's SKU takes the drop's TTL): it
        # expires before the other hold, which the listing's order shows.
        engine.create_drop("launch", ["TEE"], opens_at=opened, hold_ttl_seconds=60)
        stuck = engine.reserve([("TEE", 3)], customer="Ann", idempotency_key="a", ttl_seconds=60)
        other = engine.reserve([("CAP", 1, "berlin")], idempotency_key="b", ttl_seconds=900)
        sold = engine.reserve([("CAP", 1, "berlin")], idempotency_key="c")
        engine.commit(sold.id)

    out = run("reservations", "list")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [stuck.id, other.id]
    assert "TEE:3@default" in out
    first = run("reservations", "list", "--limit", "1")
    assert first.splitlines()[1].split()[0] == stuck.id
    cursor = first.splitlines()[-1].split("--cursor ")[1]
    rest = run.json("reservations", "list", "--limit", "1", "--cursor", cursor)
    assert [r["id"] for r in rest["items"]] == [other.id]
    page = run.json("reservations", "list", "--customer", " ANN ")
    assert [r["id"] for r in page["items"]] == [stuck.id]
    page = run.json("reservations", "list", "--sku", "CAP", "--location", "berlin")
    assert [r["id"] for r in page["items"]] == [other.id]

    out = run("reservations", "show", sold.id)
    assert out.startswith(f"reservation {sold.id}: committed")
    assert "not_found" in run("reservations", "show", "rsv_" + "0" * 24 + "_0", code=1)

    out = run("reservations", "release", stuck.id, "--actor", "ops-ann",
              "--idempotency-key", "free-1")  # fmt: skip
    assert out.startswith(f"released {stuck.id}: 3 units of 1 lines available again")
    again = run("reservations", "release", stuck.id, "--actor", "ops-ann",
                "--idempotency-key", "free-1")  # fmt: skip
    assert "already done (same idempotency key)" in again
    assert "was already released: nothing changed" in run(
        "reservations", "release", stuck.id, "--idempotency-key", "free-2"
    )
    assert "invalid_transition" in run("reservations", "release", sold.id, code=1)
    assert [r["id"] for r in run.json("reservations", "list")["items"]] == [other.id]
    with Engine.from_url(redis_server.url, EngineConfig(prefix=env.prefix)) as engine:
        assert engine.stock("TEE", "default").locations[0].available == 10
        assert engine.get_reservation(stuck.id).status == "released"

    released = [e for e in stream_events(redis_server.url, env) if e["type"] == "released"]
    assert [e["actor"] for e in released] == ["ops-ann"]
    assert "limit must be between 1 and 100" in run("reservations", "list", "--limit", "0", code=2)
