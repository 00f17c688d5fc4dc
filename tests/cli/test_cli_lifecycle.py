"""``earmark stock | po | ledger``: every --help, and the round trip against a real
redis-server and a SQLite durable record (flush, ledger, verify --replay)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from earmark import Engine, EngineConfig
from earmark import console as cli
from earmark.keys import Keys
from earmark.settings import get_settings
from tests.support.backends import fresh_prefix
from tests.support.servers import RedisServer

STOCK = ["show", "receive", "adjust", "damage", "write-off", "count", "transfer",
         "receive-transfer", "show-transfer", "receive-return", "dispose-returned"]  # fmt: skip
COMMANDS = [["stock"], *(["stock", a] for a in STOCK), ["po"],
            *(["po", a] for a in ("create", "receive", "close", "show")), ["ledger"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: earmark {' '.join(command)}")
    assert len(out.splitlines()) > 5
    if len(command) == 2 and command[1] not in ("show", "show-transfer"):  # the writes
        assert "--actor" in out and "--idempotency-key" in out


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Keys]:
    prefix = fresh_prefix()
    monkeypatch.setenv("EARMARK_REDIS_URL", redis_server.url)
    monkeypatch.setenv("EARMARK_PREFIX", prefix)
    monkeypatch.setenv("EARMARK_DATABASE_URL", f"sqlite:///{tmp_path}/earmark.db")
    get_settings.cache_clear()
    # A new store, set up as `earmark serve` does: the CLI never stamps generation markers.
    Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)).start().close()
    yield Keys(prefix)
    get_settings.cache_clear()


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, code: int = 0) -> str:
        """Runs ``earmark ARGV``, asserts its exit code, returns stdout (stderr on error)."""
        exited = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        assert exited == code, (argv, out, err)
        return out if code == 0 else err

    def json(self, *argv: str) -> Any:
        return json.loads(self(*argv, "--json"))


def row(out: str, first: str, second: str) -> list[str]:
    """The table row that starts with these two cells."""
    return next(line.split() for line in out.splitlines() if line.split()[:2] == [first, second])


def stream_events(url: str, keys: Keys) -> list[dict[str, str]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields for _, fields in client.xrange(keys.events(0))]
    finally:
        client.close()


@pytest.mark.redis_server
def test_stock_round_trip(
    env: Keys, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    earmark = Cli(capsys)
    out = earmark("stock", "receive", "A", "10", "--reference", "PO-1", "--actor", "anna")
    assert row(out, "A", "default")[2] == "10"
    out = earmark("stock", "transfer", "A", "4", "--from", "default", "--to", "b",
                  "--reason", "rebalance")  # fmt: skip
    assert out.startswith("transfer trf_") and "in transit" in out
    tid = out.split()[1].rstrip(":")
    out = earmark("stock", "receive-transfer", tid, "3", "--reason", "one missing")
    assert "received 3 (discrepancy -1)" in out
    assert earmark.json("stock", "show-transfer", tid)["qty_received"] == 3
    out = earmark("stock", "show", "A")
    assert row(out, "A", "(all)")[2:3] == ["9"]  # on_hand over both locations
    assert row(out, "A", "b")[2] == "3"
    earmark("stock", "damage", "A", "2", "--reason", "dropped", "--actor", "anna")
    earmark("stock", "write-off", "A", "1", "--reason", "crushed", "--source", "damaged")
    earmark("stock", "adjust", "A", "-1", "--reason", "found short")
    level = earmark.json("stock", "show", "A", "--location", "default")
    assert (level["on_hand"], level["damaged"], level["written_off"]) == (3, 1, 1)
    out = earmark("stock", "count", "A", "2", "--version", str(level["version"]),
                  "--reason", "aisle 4")  # fmt: skip
    assert out.startswith("counted 2, expected 3: on_hand -1")

    events = stream_events(redis_server.url, env)
    by_type = {e["type"]: e for e in events}
    assert (by_type["damaged"]["actor"], by_type["damaged"]["reason"]) == ("anna", "dropped")
    assert by_type["counted"]["reason"] == "aisle 4"
    assert by_type["transfer_discrepancy"]["reason"] == "one missing"

    # The durable record applies the new events' deltas like any others.
    assert earmark("flush", "--once").startswith(f"flushed {len(events)} events")
    recorded = earmark("ledger").splitlines()[1:]
    assert {line.split()[2] for line in recorded} == set(by_type)
    assert set(by_type) >= {"transfer_out", "transfer_in", "transfer_received", "damaged",
                            "written_off", "adjusted", "counted"}  # fmt: skip
    out = earmark("verify", "--replay")
    assert out.startswith(f"replayed {len(events)} events over 2 (sku, location)"), out
    assert "Redis agrees" in earmark("verify")


@pytest.mark.redis_server
def test_refusals_bad_input_and_idempotency(
    env: Keys, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    earmark = Cli(capsys)
    earmark("stock", "receive", "A", "5")
    before = len(stream_events(redis_server.url, env))
    err = earmark("stock", "damage", "A", "9", "--reason", "x", code=1)
    assert "earmark stock damage: insufficient_on_hand:" in err
    err = earmark("stock", "count", "A", "1", "--version", "99", code=1)
    assert "stale_count" in err
    err = earmark("stock", "show-transfer", f"trf_{'0' * 24}_0", code=1)
    assert "earmark stock show-transfer: transfer_not_found" in err
    # A malformed id names no transfer either (as HTTP's 404), not bad input.
    err = earmark("stock", "show-transfer", "trf_nope", code=1)
    assert err == "earmark stock show-transfer: transfer_not_found: no transfer trf_nope\n"
    err = earmark("stock", "damage", "A", "0", "--reason", "x", code=2)
    assert "qty must be between 1 and" in err
    assert "needs EARMARK_REDIS_URL" not in err
    err = earmark("stock", "transfer", "A", "1", "--from", "x", "--to", "x", code=2)
    assert "two different locations" in err
    assert len(stream_events(redis_server.url, env)) == before  # nothing written

    first = earmark("stock", "damage", "A", "1", "--reason", "x", "--idempotency-key", "k1")
    assert earmark("stock", "damage", "A", "1", "--reason", "x", "--idempotency-key", "k1") == first
    err = earmark("stock", "damage", "A", "2", "--reason", "x", "--idempotency-key", "k1", code=1)
    assert "idempotency_conflict" in err
    assert earmark.json("stock", "show", "A", "--location", "default")["damaged"] == 1

    with pytest.raises(SystemExit) as exited:  # argparse: usage and exit 2
        cli.main(["stock", "damage", "A", "1"])
    assert exited.value.code == 2
    assert "--reason" in capsys.readouterr().err


@pytest.mark.redis_server
def test_returns_purchase_orders_and_the_ledger(
    env: Keys, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    earmark = Cli(capsys)
    with Engine.from_url(redis_server.url, EngineConfig(prefix=env.prefix)) as engine:
        engine.receive("A", 10)
        sold = engine.reserve([("A", 3)], idempotency_key="sale")
        engine.commit(sold.id)
        engine.ship(sold.id)
    out = earmark("stock", "receive-return", sold.id, "A", "2", "--reason", "too small")
    assert "(2 of 3 shipped have come back)" in out
    assert "insufficient_units" in earmark("stock", "dispose-returned", "A", "3", "restock",
                                           code=1)  # fmt: skip
    out = earmark("stock", "dispose-returned", "A", "2", "restock")
    assert row(out, "A", "default")[2] == "9"

    out = earmark("po", "create", "--supplier", "ACME", "--expected-date", "2026-03-01",
                  "--line", "A:5", "--line", "B:4@berlin", "--reference", "PO-9",
                  "--idempotency-key", "po-9")  # fmt: skip
    po_id = out.split()[2].rstrip(":")
    assert out.startswith(f"purchase order {po_id}: open")
    out = earmark("po", "receive", po_id, "--line", "A:6", "--line", "B:1@berlin")
    assert row(out, "A", "default")[2:] == ["5", "6", "0"]
    assert row(earmark("po", "show", po_id), "B", "berlin")[2:] == ["4", "1", "3"]
    out = earmark("po", "close", po_id, "--cancel", "--reason", "x", "--idempotency-key", "c1")
    assert out.startswith(f"purchase order {po_id}: cancelled")
    assert earmark.json("po", "show", po_id)["status"] == "cancelled"
    err = earmark("po", "close", po_id, code=1)  # a cancelled order is not closed
    assert "purchase_order_closed" in err
    err = earmark("po", "receive", po_id, "--line", "A:1", code=1)
    assert "purchase_order_closed" in err
    err = earmark("po", "create", "--supplier", "S", "--expected-date", "2026-02-30",
                  "--line", "A:1", code=2)  # fmt: skip
    assert "expected_date" in err

    assert earmark("flush", "--once").startswith("flushed ")
    out = earmark("ledger", "--sku", "A")
    assert out.splitlines()[0].split()[:4] == ["ID", "OCCURRED_AT", "TYPE", "SKU"]
    types = [line.split()[2] for line in out.splitlines()[1:]]
    assert types[:4] == ["received", "reserved", "committed", "shipped"]
    assert {"returned", "return_restocked", "po_expected", "po_received",
            "supplier_discrepancy"} <= set(types)  # fmt: skip
    cancelled = earmark("ledger", "--type", "po_cancelled").splitlines()[1:]
    assert [line.split()[3:6] for line in cancelled] == [["B", "berlin", "3"]]
    lines = earmark("ledger", "--type", "returned", "--json").splitlines()
    (returned,) = [json.loads(line) for line in lines]
    assert (returned["reason"], returned["deltas"]) == ("too small", {"returned": 2})

    exited = cli.main(["ledger", "--limit", "3"])
    out, err = capsys.readouterr()
    assert exited == 0 and len(out.splitlines()) == 4  # header and 3 events
    cursor = err.split("--cursor ")[1].strip()
    rest = earmark("ledger", "--cursor", cursor, "--limit", "1000")

    def ids(text: str) -> list[str]:
        return [line.split()[0] for line in text.splitlines()[1:]]

    everything = ids(earmark("ledger", "--limit", "1000"))
    assert ids(out) + ids(rest) == everything
    assert len(set(everything)) == len(everything)

    out = earmark("verify", "--replay")
    assert out.startswith(f"replayed {len(everything)} events") and "agree" in out
    assert "Redis agrees" in earmark("verify")
    assert "not a cursor of this ledger" in earmark("ledger", "--cursor", "bm9wZQ", code=2)


def test_without_redis_stock_and_po_say_so_and_the_ledger_still_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("EARMARK_REDIS_URL", raising=False)
    monkeypatch.setenv("EARMARK_DATABASE_URL", f"sqlite:///{tmp_path}/earmark.db")
    get_settings.cache_clear()
    earmark = Cli(capsys)
    try:
        for command in (["stock", "show", "A"], ["stock", "damage", "A", "1", "--reason", "x"],
                        ["po", "show", f"po_{'0' * 24}_0"]):  # fmt: skip
            err = earmark(*command, code=2)
            assert "needs EARMARK_REDIS_URL" in err and "embedded" in err
        assert "no events recorded in SQLite file" in earmark("ledger")
        assert "limit must be between 1 and 1000" in earmark("ledger", "--limit", "0", code=2)
    finally:
        get_settings.cache_clear()


@pytest.mark.redis_server
def test_every_write_runs_with_an_idempotency_key_a_rerun_can_repeat(
    env: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receipt re-run after a timeout must not count twice: the key is derived from
    --reference when given (the same delivery note is one receipt), otherwise generated
    and printed on stderr so the re-run can pass --idempotency-key."""
    earmark = Cli(capsys)
    for _ in range(2):
        assert cli.main(["stock", "receive", "A", "5", "--reference", "PO-7"]) == 0
        _, err = capsys.readouterr()
        assert "idempotency key 'stock receive PO-7' (from --reference)" in err
    assert earmark.json("stock", "show", "A", "--location", "default")["on_hand"] == 5
    assert cli.main(["stock", "adjust", "A", "-1", "--reason", "broken"]) == 0
    _, err = capsys.readouterr()
    key = err.split("--idempotency-key ", 1)[1].strip()
    assert key.startswith("cli-")
    earmark("stock", "adjust", "A", "-1", "--reason", "broken", "--idempotency-key", key)
    assert earmark.json("stock", "show", "A", "--location", "default")["on_hand"] == 4
