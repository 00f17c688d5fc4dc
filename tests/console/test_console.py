"""The operator console: its files come from the sidecar with a policy that forbids every
other origin, and in a real browser (Debian's Chromium, driven by Playwright) it shows a
SKU's figures and follows a reservation made through the API. Screenshots of each page go
to ``artifacts/console/`` (the README links them)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from earmark import Engine, EngineConfig, apikeys
from earmark.client import Client
from earmark.durable import service as durable
from tests.support.api import Api
from tests.support.backends import fresh_prefix
from tests.support.serve import Serve
from tests.support.servers import RedisServer, unavailable

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "console"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
WAIT_MS = 15_000


async def test_the_page_and_its_assets_come_from_the_sidecar_alone(api: Api) -> None:
    page = await api.anon.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http" not in page.text.replace("http-equiv", "")  # no absolute URL at all
    for name, kind in [("console.js", "text/javascript"), ("console.css", "text/css")]:
        asset = await api.anon.get(f"/console/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert "://" not in asset.text.replace("http://www.w3.org/2000/svg", "")
    missing = await api.anon.get("/console/assets/secrets.txt")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def chromium() -> str:
    for path in CHROMIUM_PATHS:
        if os.path.exists(path):
            return path
    found = shutil.which("chromium")
    if found is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def served(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serve, str]]:
    prefix = fresh_prefix()
    tmp = tmp_path_factory.mktemp("console")
    database_url = f"sqlite:///{tmp / 'earmark.db'}"
    scopes = frozenset(apikeys.SCOPES)
    token, _ = asyncio.run(durable.create_api_key(database_url, "console-operator", scopes))
    with Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)) as engine:
        engine.receive("SNEAKER", 10, idempotency_key="console-receive")
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": prefix,
        "EARMARK_DATABASE_URL": database_url,
        "EARMARK_API_KEY_CACHE_SECONDS": "0",
    }
    server = Serve(Path(tmp), env)
    try:
        server.wait_ready()
        yield server, token
    finally:
        assert server.stopped_cleanly(), server.output()


def test_the_console_follows_a_reservation_in_a_real_browser(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, token = served
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{server.url}/console")
            # auth is on: the page asks for a key once, keeps it for the session
            expect(page.locator("#key-form")).to_be_visible(timeout=WAIT_MS)
            page.fill("#key-input", token)
            page.click("#key-form button[type=submit]")
            expect(page.locator("#holds-live")).to_have_text("0", timeout=WAIT_MS)
            page.fill("#watch-sku", "SNEAKER")
            page.keyboard.press("Enter")
            row = page.locator('#watched-table tr[data-sku="SNEAKER"]')
            expect(row.locator('[data-bucket="available"]')).to_have_text("10", timeout=WAIT_MS)

            with Client(server.url, api_key=token) as client:
                held = client.reserve([("SNEAKER", 3)], ttl_seconds=300)
            expect(row.locator('[data-bucket="available"]')).to_have_text("7", timeout=WAIT_MS)
            expect(row.locator('[data-bucket="reserved"]')).to_have_text("3", timeout=WAIT_MS)
            expect(page.locator("#holds-live")).to_have_text("1", timeout=WAIT_MS)
            expect(page.locator("svg.chart")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)

            page.click("#watched-table a")  # keyboard-reachable link to the SKU page
            expect(page.locator("#sku-locations")).to_contain_text("default", timeout=WAIT_MS)
            expect(page.locator("#sku-locations tbody td").nth(2)).to_have_text("3")
            page.screenshot(path=str(SCREENSHOTS / "sku.png"), full_page=True)

            page.goto(f"{server.url}/console#/ledger")
            page.fill("#ledger-sku", "SNEAKER")
            page.click("#ledger-filter button")
            ledger = page.locator("#ledger-results")
            expect(ledger).to_contain_text("received", timeout=WAIT_MS)
            expect(ledger).to_contain_text("reserved", timeout=WAIT_MS)
            page.screenshot(path=str(SCREENSHOTS / "ledger.png"), full_page=True)
        finally:
            browser.close()
    assert held.status == "held"
    assert requested, "the page made no request"
    assert all(url.startswith(server.url + "/") for url in requested), sorted(set(requested))
