"""``earmark webhooks ...`` on a SQLite record (no Redis needed), with a real receiver."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import standardwebhooks

from earmark import console as cli
from earmark.settings import get_settings
from earmark.store.ledger import open_ledger
from tests.support.receivers import Receiver, always, failing_first
from tests.support.webhooks import Writer


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/record.db"
    for name in [n for n in os.environ if n.startswith("EARMARK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EARMARK_DATABASE_URL", url)
    monkeypatch.setenv("EARMARK_WEBHOOKS_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("EARMARK_WEBHOOKS_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("EARMARK_WEBHOOKS_LEASE_SECONDS", "5")
    monkeypatch.setenv("EARMARK_WEBHOOKS_SCHEDULE_SECONDS", "0,0")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def earmark(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def record_receipts(url: str, n: int) -> None:
    async def write() -> None:
        ledger = open_ledger(url)
        try:
            await ledger.migrate()
            await Writer(ledger).receipts(n)
        finally:
            await ledger.close()

    asyncio.run(write())


def test_create_deliver_and_read_the_attempts(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Receiver(failing_first(1)) as receiver:
        code, out, err = earmark(
            capsys, "webhooks", "create", receiver.url, "--event", "adjustment.*",
            "--description", "erp",
        )  # fmt: skip
        assert code == 0, err
        secret = out.strip()
        assert secret.startswith("whsec_") and "shown once" in err
        endpoint_id = err.split()[3]
        record_receipts(database, 2)
        code, out, err = earmark(capsys, "webhooks", "deliver", "--once")
        assert code == 0, err
        assert "4 attempts, 2 delivered" in out  # each failed once, retried at once
        got = receiver.received()
        assert len(got) == 4 and len({r.id for r in got}) == 2
        for request in got:
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    code, out, _ = earmark(capsys, "webhooks", "deliveries", endpoint_id)
    assert code == 0 and out.count("delivered") == 2 and out.count("failed") == 2
    code, out, _ = earmark(capsys, "webhooks", "deliveries", endpoint_id, "--json", "--limit", "3")
    assert len(out.splitlines()) == 3
    assert orjson.loads(out.splitlines()[0])["outcome"] == "delivered"
    code, out, _ = earmark(capsys, "webhooks", "list")
    assert endpoint_id in out and "adjustment.*" in out and "enabled" in out


def test_update_rotate_replay_and_delete(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Receiver(always(200)) as receiver:
        code, out, err = earmark(capsys, "webhooks", "create", receiver.url, "--json")
        assert code == 0, err
        created = orjson.loads(out)
        endpoint_id = created["id"]
        code, out, _ = earmark(
            capsys, "webhooks", "update", endpoint_id, "--event", "stock.changed", "--disable",
            "--json",
        )  # fmt: skip
        updated = orjson.loads(out)
        assert (updated["events"], updated["disabled"], updated["disabled_reason"]) == (
            ["stock.changed"], True, "operator"
        )  # fmt: skip
        code, out, err = earmark(capsys, "webhooks", "rotate-secret", endpoint_id)
        assert code == 0 and out.strip().startswith("whsec_") and out.strip() != created["secret"]
        assert "signs too until" in err
        earmark(capsys, "webhooks", "update", endpoint_id, "--enable")
        record_receipts(database, 1)
        code, out, _ = earmark(capsys, "webhooks", "replay", endpoint_id, "--after-seq", "0")
        assert code == 0 and "queued" in out
        code, out, _ = earmark(capsys, "webhooks", "deliver", "--once")
        assert "1 delivered" in out
        assert orjson.loads(receiver.received()[0].body)["type"] == "stock.changed"
        code, out, _ = earmark(capsys, "webhooks", "replay", endpoint_id, "--since", "2020-01-01")
        assert code == 0 and "events since 2020-01-01" in out
    code, out, _ = earmark(capsys, "webhooks", "delete", endpoint_id)
    assert code == 0
    code, _, err = earmark(capsys, "webhooks", "show", endpoint_id)
    assert code == 1 and "no webhook endpoint" in err


def test_bad_input_exits_2_and_writes_nothing(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = earmark(capsys, "webhooks", "create", "ftp://example.com/x")
    assert code == 2 and "http:// or https://" in err
    code, _, err = earmark(capsys, "webhooks", "create", "https://93.184.215.14/", "--event", "x.y")
    assert code == 2 and "no event type" in err
    monkeypatch.setenv("EARMARK_WEBHOOKS_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    code, _, err = earmark(capsys, "webhooks", "create", "http://127.0.0.1:9/hook")
    assert code == 2 and "EARMARK_WEBHOOKS_ALLOW_PRIVATE" in err
    code, out, _ = earmark(capsys, "webhooks", "list")
    assert code == 0 and "no webhook endpoints" in out
