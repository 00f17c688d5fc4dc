"""``earmark ledger`` explains an empty answer (events waiting in Redis, and how to flush
them) and refuses an event type it does not know."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark import Engine, EngineConfig
from earmark import console as cli
from earmark.cli.ledger import EVENT_TYPES
from earmark.settings import get_settings
from tests.support.backends import fresh_prefix
from tests.support.servers import RedisServer


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path
) -> Iterator[str]:
    prefix = fresh_prefix()
    monkeypatch.setenv("EARMARK_REDIS_URL", redis_server.url)
    monkeypatch.setenv("EARMARK_PREFIX", prefix)
    monkeypatch.setenv("EARMARK_DATABASE_URL", f"sqlite:///{tmp_path}/earmark.db")
    get_settings.cache_clear()
    Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)).start().close()
    yield prefix
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.redis_server
def test_waiting_events_are_named_with_the_way_to_flush_them(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "migrate")[0] == 0
    code, out, _ = run(capsys, "ledger")
    assert code == 0 and "no events are waiting in Redis either" in out
    assert run(capsys, "stock", "receive", "A", "5", "--reference", "PO-1")[0] == 0
    assert run(capsys, "stock", "damage", "A", "1", "--reason", "dropped")[0] == 0

    code, out, _ = run(capsys, "ledger")
    assert code == 0
    assert "no events recorded in SQLite file" in out
    assert "2 events are still waiting in Redis" in out
    assert "earmark flush --once" in out

    assert run(capsys, "flush", "--once")[0] == 0
    code, out, _ = run(capsys, "ledger", "--type", "damaged")
    assert code == 0 and len(out.splitlines()) == 2  # the header and the event
    assert "waiting" not in out


def test_an_unknown_type_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("EARMARK_REDIS_URL", raising=False)
    monkeypatch.setenv("EARMARK_DATABASE_URL", f"sqlite:///{tmp_path}/earmark.db")
    get_settings.cache_clear()
    try:
        code, out, err = run(capsys, "ledger", "--type", "damaged", "--type", "damagd")
        assert (code, out) == (2, "")
        assert err.count("\n") == 1
        assert err.startswith("earmark ledger: unknown event type 'damagd'; the types are: ")
        assert all(t in err for t in EVENT_TYPES)
        code, out, _ = run(capsys, "ledger", "--type", "damaged")
        assert code == 0 and "embedded store of the `earmark serve` process" in out
    finally:
        get_settings.cache_clear()
