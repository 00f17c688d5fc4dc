"""``earmark seats``: every --help, and a round trip against a real redis-server."""

from __future__ import annotations

import pytest

from earmark import console as cli
from earmark.keys import Keys
from tests.cli.test_cli_lifecycle import Cli, env  # noqa: F401  (the fixture)

ACTIONS = ["set-cap", "assign", "free", "invite", "accept", "heartbeat", "show"]


@pytest.mark.parametrize("action", ACTIONS)
def test_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["seats", action, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: earmark seats {action}")
    if action != "show":
        assert "--actor" in out and "--idempotency-key" in out


@pytest.mark.redis_server
def test_seats_round_trip(env: Keys, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    run = Cli(capsys)
    pool = run.json("seats", "set-cap", "acme", "2", "--overage", "1.5x")
    assert (pool["limit"], pool["over_cap"]) == (3, False)
    assert run.json("seats", "assign", "acme", "ann")["created"] is True
    assert run.json("seats", "assign", "acme", "ann")["created"] is False
    assert run.json("seats", "invite", "acme", "bob", "--ttl-seconds", "600")["created"] is True
    assert run.json("seats", "accept", "acme", "bob")["created"] is True
    assert run.json("seats", "assign", "acme", "cat")["created"] is True
    err = run("seats", "assign", "acme", "dan", code=1)
    assert "seat_limit_reached" in err
    assert run.json("seats", "free", "acme", "cat")["freed"] is True
    shown = run.json("seats", "show", "acme")
    assert (shown["assigned"], shown["high_water_mark"]) == (2, 3)
    page = run.json("seats", "show", "acme", "--users")
    assert [u["user"] for u in page["users"]] == ["ann", "bob"]
    assert "cap must be between" in run("seats", "set-cap", "acme", "-1", code=2)  # bad input
    err = run("seats", "show", "nobody", code=1)
    assert "tenant_not_found" in err
