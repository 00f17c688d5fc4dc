"""``earmark channel set | show | sku set | sku remove | allocate | deallocate | stock``
against a real redis-server."""

from __future__ import annotations

import pytest

from earmark import console as cli
from earmark.keys import Keys
from tests.cli.test_cli_lifecycle import Cli, env  # noqa: F401  (the fixture)
from tests.support.servers import RedisServer

ACTIONS = ["set", "show", "sku set", "sku remove", "allocate", "deallocate", "stock"]


@pytest.mark.parametrize("action", ACTIONS)
def test_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["channel", *action.split(), "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: earmark channel {action}")
    if action not in ("show", "stock"):
        assert "--actor" in out and "--idempotency-key" in out


@pytest.mark.redis_server
def test_channel_round_trip(
    env: Keys,  # noqa: F811
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    earmark = Cli(capsys)
    earmark("stock", "receive", "TEE", "20")
    settings = earmark.json("channel", "set", "marketplace", "--units", "2", "--percent", "25")
    assert settings["default"] == {"buffer_units": 2, "buffer_percent": 25, "floor": 0}
    seen = earmark.json("channel", "stock", "marketplace", "TEE")
    assert (seen["available"], seen["unbuffered_available"]) == (15, 20)
    override = earmark.json("channel", "sku", "set", "marketplace", "TEE", "--floor", "30")
    assert override["rule"]["floor"] == 30
    assert earmark.json("channel", "stock", "marketplace", "TEE")["available"] == 0
    shown = earmark.json("channel", "show", "marketplace")
    assert list(shown["skus"]) == ["TEE"]
    assert earmark.json("channel", "sku", "remove", "marketplace", "TEE")["removed"] is True
    moved = earmark.json("channel", "allocate", "marketplace", "TEE", "4", "--actor", "anna")
    assert (moved["allocated"], moved["levels"]["available"]) == (4, 16)
    back = earmark.json("channel", "allocate", "marketplace", "TEE", "-1")
    assert back["allocated"] == 3
    # 17 shared: the buffer is max(2, ceil(17 * 25%)) = 5, so 12 shared + 3 fenced
    assert earmark.json("channel", "stock", "marketplace", "TEE")["available"] == 15
    gone = earmark.json("channel", "deallocate", "marketplace", "TEE")
    assert (gone["allocated"], gone["moved"]) == (0, -3)
    err = earmark("channel", "set", "marketplace", "--percent", "101", code=2)
    assert "buffer_percent" in err
