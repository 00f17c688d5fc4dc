"""Start-up: embedded by default, auth off only on loopback, the durable record wired in."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest

from earmark import AsyncEngine, EngineConfig
from earmark.api.app import create_app
from earmark.durable.service import DurableService
from earmark.errors import StartupRefused
from earmark.settings import Settings, is_loopback
from earmark.store.ledger import open_ledger
from tests.support.api import BASE_URL, KEYED_HOOKS, make_settings, problem_of
from tests.support.servers import free_port


async def test_with_no_configuration_it_runs_embedded_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(make_settings(prefix="embedded-test"))
    with caplog.at_level(logging.WARNING, logger="earmark"):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, event_hooks=KEYED_HOOKS
            ) as client:
                response = await client.post("/v1/skus/A/receipts", json={"qty": 2})
                assert response.status_code == 200
    text = caplog.text
    assert "EMBEDDED mode" in text and "EARMARK_REDIS_URL" in text
    assert "EARMARK_DATABASE_URL" in text
    assert "AUTH IS OFF" in text


async def test_without_keys_it_refuses_a_non_loopback_address() -> None:
    app = create_app(make_settings(host="0.0.0.0"))
    with pytest.raises(StartupRefused, match="without API keys"):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False),
     ("example.org", False)],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def prepare(self, engine: AsyncEngine) -> bool:
        assert engine.state is None  # before the engine starts
        self.calls.append("prepare")
        return True

    async def start(self, engine: AsyncEngine) -> None:
        assert engine.state is not None
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    def lag_source(self) -> None:
        return None

    async def ledger_for_reads(self) -> None:
        return None

    async def api_keys(self) -> list[Any]:
        return []

    async def database_check(self) -> None:
        return None


async def test_durable_record_hooks_run_in_order() -> None:
    durable = Recorder()
    app = create_app(make_settings(prefix="hooks-test"), durable=durable)
    async with app.router.lifespan_context(app):
        assert durable.calls == ["prepare", "start"]
    assert durable.calls == ["prepare", "start", "stop"]


# -- the durable record, as serve wires it --------------------------------------------


@asynccontextmanager
async def serving(
    settings: Settings, engine: AsyncEngine | None = None, durable: DurableService | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine, durable=durable)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, event_hooks=KEYED_HOOKS
        ) as client:
            yield client


async def ledger_levels(url: str) -> dict[str, tuple[int, int, int]]:
    ledger = open_ledger(url)
    try:
        levels = await ledger.stock_levels()
    finally:
        await ledger.close()
    return {x.sku: (x.on_hand, x.reserved, x.committed) for x in levels}


async def test_serve_flushes_in_process_and_reports_the_lag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/earmark.db"
    async with serving(make_settings(database_url=url)) as client:
        assert (await client.post("/v1/skus/A/receipts", json={"qty": 5})).status_code == 200
        deadline = time.monotonic() + 10
        while await ledger_levels(url) != {"A": (5, 0, 0)}:
            assert time.monotonic() < deadline, "the in-process flusher recorded nothing"
            await asyncio.sleep(0.02)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["flusher_lag"]["ok"] is True


async def test_shutdown_flushes_the_events_still_waiting(tmp_path: Path) -> None:
    """The flusher idles for 10 s between polls, so only the shutdown drain can have
    recorded the receipt."""
    url = f"sqlite:///{tmp_path}/earmark.db"
    durable = DurableService(url, block_ms=10_000)
    async with serving(make_settings(database_url=url), durable=durable) as client:
        flusher = durable.flusher
        assert flusher is not None
        deadline = time.monotonic() + 10
        while not await flusher.client.exists(flusher.keys.events(0)) or not (
            await flusher.client.xinfo_consumers(flusher.keys.events(0), flusher.group)
        ):
            assert time.monotonic() < deadline, "the flusher never read its stream"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # its first round found nothing: it idles for 10 s
        assert (await client.post("/v1/skus/A/receipts", json={"qty": 5})).status_code == 200
        assert await ledger_levels(url) == {}
    assert await ledger_levels(url) == {"A": (5, 0, 0)}


async def test_a_redis_that_lost_its_data_stays_fenced_while_the_record_holds_stock(
    tmp_path: Path,
) -> None:
    """Without rebuild_on_start (a real Redis), a store whose record holds stock is not
    stamped afresh: readiness fails and every write is refused until `earmark rebuild`."""
    url = f"sqlite:///{tmp_path}/earmark.db"
    settings = make_settings(database_url=url, prefix="fenced")
    config = EngineConfig(prefix="fenced")
    first = AsyncEngine.embedded(config, server=fakeredis.FakeServer())
    async with serving(settings, first, DurableService(url)) as client:
        assert (await client.post("/v1/skus/A/receipts", json={"qty": 5})).status_code == 200
    lost = AsyncEngine.embedded(config, server=fakeredis.FakeServer())  # empty: data lost
    async with serving(settings, lost, DurableService(url)) as client:
        body = problem_of(await client.get("/readyz"), 503, "not_ready")
        assert body["checks"]["generations"]["ok"] is False
        refused = await client.post("/v1/skus/A/receipts", json={"qty": 1})
        problem_of(refused, 503, "store_not_ready")
    assert await ledger_levels(url) == {"A": (5, 0, 0)}


async def test_a_healthy_redis_sells_on_while_the_record_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing is stamped without the record, but markers already in place stay valid:
    selling goes on, and the flusher keeps retrying the migration in the background."""
    server, config = fakeredis.FakeServer(), EngineConfig(prefix="record-down")
    async with AsyncEngine.embedded(config, server=server) as setup:  # markers stamped
        assert setup.state is not None and setup.state.ready
    down = DurableService(f"postgresql://earmark@127.0.0.1:{free_port()}/none")
    engine = AsyncEngine.embedded(config, server=server)
    with caplog.at_level(logging.WARNING, logger="earmark"):
        async with serving(make_settings(), engine, down) as client:
            assert (await client.post("/v1/skus/A/receipts", json={"qty": 5})).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
    assert "durable record unreachable" in caplog.text


@pytest.mark.parametrize(
    ("url", "said"),
    [
        pytest.param("redis://127.0.0.1:{port}/0", "cannot reach Redis", id="unreachable"),
        pytest.param("localhost:6379", "not a Redis URL", id="malformed"),
        pytest.param("redis://user:secret@127.0.0.1:{port}/0", "cannot reach Redis", id="creds"),
    ],
)
def test_serve_with_a_bad_redis_url_says_so_in_one_line(
    tmp_path: Path, url: str, said: str
) -> None:
    """A typo in EARMARK_REDIS_URL is one line on stderr and exit 2, not a traceback from
    inside uvicorn's start-up; credentials are not printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    env["EARMARK_REDIS_URL"] = url.format(port=free_port())
    env["EARMARK_DATABASE_URL"] = f"sqlite:///{tmp_path}/earmark.db"
    done = subprocess.run(
        [sys.executable, "-m", "earmark", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("earmark serve: "), done.stderr
    assert said in lines[0] and "Traceback" not in done.stderr
    assert "secret" not in done.stderr
