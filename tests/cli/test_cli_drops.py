"""``earmark drop create | update | show | waitlist ...`` against a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from earmark import console as cli
from earmark.keys import Keys
from tests.cli.test_cli_lifecycle import Cli, env  # noqa: F401  (the fixture)
from tests.support.servers import RedisServer

ACTIONS = ["create", "update", "show", "waitlist join", "waitlist show", "waitlist decline"]


@pytest.mark.parametrize("action", ACTIONS)
def test_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["drop", *action.split(), "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: earmark drop {action}")
    if not action.endswith("show"):
        assert "--actor" in out and "--idempotency-key" in out


@pytest.mark.redis_server
def test_drop_round_trip(
    env: Keys,  # noqa: F811
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    earmark = Cli(capsys)
    opens = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = earmark.json(
        "drop", "create", "launch", "TEE", "--opens-at", opens, "--limit", "2", "--actor", "anna"
    )
    assert (created["id"], created["per_customer_limit"], created["actor"]) == ("launch", 2, "anna")
    closes = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    changed = earmark.json("drop", "update", "launch", "--limit", "none", "--closes-at", closes)
    assert changed["per_customer_limit"] is None and changed["closes_at"]
    kept = earmark.json("drop", "update", "launch", "--hold-ttl", "90")
    assert (kept["per_customer_limit"], kept["hold_ttl_seconds"]) == (None, 90)
    assert earmark.json("drop", "show", "launch")["open"] is False
    err = earmark("drop", "show", "nope", code=1)
    assert "drop_not_found" in err
    err = earmark("drop", "create", "other", "TEE", "--opens-at", opens, code=1)
    assert "sku_in_drop" in err


@pytest.mark.redis_server
def test_waitlist_round_trip(
    env: Keys,  # noqa: F811
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    earmark = Cli(capsys)
    opens = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = earmark.json("drop", "create", "launch", "TEE", "--opens-at", opens, "--waitlist")
    assert created["waitlist"] is True
    ann = earmark.json("drop", "waitlist", "join", "launch", "Ann", "TEE", "--actor", "anna")
    assert (ann["customer"], ann["position"], ann["status"]) == ("ann", 1, "waiting")
    bob = earmark.json("drop", "waitlist", "join", "launch", "bob", "TEE", "--qty", "2")
    # Both joined before the opening: their order is the fair opening's (the seed's), so
    # bob is first or second; ann and bob hold the two places.
    ann = earmark.json("drop", "waitlist", "show", "launch", "ann")
    assert {ann["position"], bob["position"]} == {1, 2} and bob["qty"] == 2
    declined = earmark.json("drop", "waitlist", "decline", "launch", "ann", "--sku", "TEE")
    assert declined["status"] == "declined"
    assert earmark.json("drop", "waitlist", "show", "launch", "bob")["position"] == 1
    assert earmark.json("drop", "show", "launch")["waiting"] == 1
    err = earmark("drop", "waitlist", "show", "launch", "cy", code=1)
    assert "waitlist_entry_not_found" in err
    off = earmark.json("drop", "update", "launch", "--no-waitlist")
    assert off["waitlist"] is False
    err = earmark("drop", "waitlist", "join", "launch", "cy", "TEE", code=1)
    assert "waitlist_disabled" in err
