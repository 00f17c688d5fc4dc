"""The ``earmark`` command: every --help, and the API keys round trip."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from earmark import console as cli
from earmark.api.command import add_serve
from earmark.apikeys import token_sha256
from earmark.cli.main import COMMANDS as GROUPS
from earmark.cli.main import build_parser
from earmark.durable import service as durable
from earmark.keys import Keys
from earmark.settings import get_settings
from tests.support.backends import fresh_prefix
from tests.support.durable import MIGRATIONS_APPLIED
from tests.support.servers import RedisServer

WEBHOOKS = ("create", "list", "show", "update", "delete", "rotate-secret", "replay",
            "deliveries", "deliver")  # fmt: skip
COMMANDS = [[], ["serve"], ["sweep"], ["status"], ["keys"], ["keys", "create"], ["keys", "list"],
            ["keys", "revoke"], ["migrate"], ["flush"], ["rebuild"], ["verify"], ["webhooks"],
            *(["webhooks", action] for action in WEBHOOKS)]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "earmark" for c in COMMANDS])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: earmark")
    parser = subcommand_parser(command)
    assert parser.description or parser.format_usage() in out  # it says what it does
    if parser.description:
        assert " ".join(parser.description.split()[:6]) in " ".join(out.split())
    for action in parser._actions:  # every option and argument is documented
        if action.help == argparse.SUPPRESS:
            continue
        names = action.option_strings or [action.metavar or action.dest]
        assert any(str(name) in out for name in names), (command, names)
        if action.help and action.dest != "help":
            assert " ".join(str(action.help).split()[:4]) in " ".join(out.split()), names


def subcommand_parser(command: list[str]) -> argparse.ArgumentParser:
    """The parser ``earmark <command>`` uses, found by walking the subparsers."""
    parser = build_parser([add_serve, *GROUPS])
    for word in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def test_help_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "earmark", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    commands = ("serve", "sweep", "status", "keys", "migrate", "flush", "rebuild", "verify")
    assert all(name in result.stdout for name in commands)


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Keys]:
    prefix = fresh_prefix()
    monkeypatch.setenv("EARMARK_REDIS_URL", redis_server.url)
    monkeypatch.setenv("EARMARK_PREFIX", prefix)
    monkeypatch.setenv("EARMARK_DATABASE_URL", f"sqlite:///{tmp_path}/earmark.db")
    get_settings.cache_clear()
    yield Keys(prefix)
    get_settings.cache_clear()


@pytest.mark.redis_server
def test_keys_round_trip(
    env: Keys, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "list"]) == 0
    assert "no API keys" in capsys.readouterr().out
    assert cli.main(["keys", "create", "shop", "--scopes", "read,reserve"]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert token.startswith("em_") and len(token) > 40
    assert "shown once" in captured.err
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        stored = asyncio.run(durable.api_keys_at(get_settings().database_url))
        assert [k.name for k in stored] == ["shop"]  # in the durable record, not in Redis
        assert stored[0].sha256 == token_sha256(token)
        assert not client.exists(env.api_keys())
        assert cli.main(["keys", "create", "shop", "--scopes", "read"]) == 2
        assert "already exists" in capsys.readouterr().err
        assert cli.main(["keys", "create", "bad", "--scopes", "read,admin"]) == 2
        assert "scopes" in capsys.readouterr().err
        assert cli.main(["keys", "list"]) == 0
        listing = capsys.readouterr().out
        assert "shop" in listing and "read,reserve" in listing and token not in listing
        assert cli.main(["keys", "revoke", "shop"]) == 0
        assert cli.main(["keys", "revoke", "shop"]) == 1
        assert asyncio.run(durable.api_keys_at(get_settings().database_url)) == []
    finally:
        client.close()


@pytest.mark.redis_server
def test_status_and_sweep(env: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    from earmark import Engine, EngineConfig

    settings = get_settings()
    assert settings.redis_url is not None
    with Engine.from_url(settings.redis_url, EngineConfig(prefix=settings.prefix)) as engine:
        engine.receive("TEE-M", 10, location="berlin")
        engine.reserve([("TEE-M", 3, "berlin")], idempotency_key="k")
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "== Stock ==" in out and "== Holds ==" in out
    row = next(line for line in out.splitlines() if line.startswith("TEE-M"))
    assert row.split() == ["TEE-M", "berlin", "10", "3", "0", "7"]
    assert "live holds:  1" in out
    assert "== Durable record ==" in out
    assert "flusher lag: 2 events waiting" in out  # no flusher ran
    assert cli.main(["sweep"]) == 0
    assert "expired 0 holds" in capsys.readouterr().out


NEED_REDIS = [["status"], ["sweep"], ["flush", "--once"], ["rebuild"], ["verify"]]


def test_commands_that_need_redis_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("EARMARK_REDIS_URL", raising=False)
    monkeypatch.setenv("EARMARK_DATABASE_URL", f"sqlite:///{tmp_path}/earmark.db")
    get_settings.cache_clear()
    try:
        for command in NEED_REDIS:
            assert cli.main(command) == 2
            assert "EARMARK_REDIS_URL" in capsys.readouterr().err
        # These need only the database.
        assert cli.main(["migrate"]) == 0
        assert f"applied migrations {MIGRATIONS_APPLIED} to SQLite file" in capsys.readouterr().out
        assert cli.main(["migrate"]) == 0
        assert "is up to date" in capsys.readouterr().out
        assert cli.main(["verify", "--replay"]) == 0
        assert "replayed 0 events" in capsys.readouterr().out
        # API keys live in the durable record: an embedded server's keys too.
        assert cli.main(["keys", "create", "shop", "--scopes", "read"]) == 0
        assert cli.main(["keys", "list"]) == 0
        assert "shop" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
