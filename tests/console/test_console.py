"""The operator console: its files come from the sidecar with a policy that forbids every
other origin, and in a real browser (Debian's Chromium, driven by Playwright) it shows a
SKU's figures and follows a reservation made through the API. Screenshots of each page go
to ``artifacts/console/`` (the README links them)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from earmark import AsyncEngine, Engine, EngineConfig, apikeys
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
TOKENS: dict[str, str] = {}
SEEDED_SKUS = 10_000


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
    """The server, and the token of a key with every scope; the tokens of a read-only key
    and of a stock key named ``ops-alice`` are in ``TOKENS``."""
    prefix = fresh_prefix()
    tmp = tmp_path_factory.mktemp("console")
    database_url = f"sqlite:///{tmp / 'earmark.db'}"
    scopes = frozenset(apikeys.SCOPES)
    token, _ = asyncio.run(durable.create_api_key(database_url, "console-operator", scopes))
    for name, scope in [("console-reader", "read"), ("ops-alice", "stock")]:
        TOKENS[name], _ = asyncio.run(
            durable.create_api_key(database_url, name, frozenset({scope}))
        )
    TOKENS["prefix"], TOKENS["redis"] = prefix, redis_server.url
    with Engine.from_url(redis_server.url, EngineConfig(prefix=prefix)) as engine:
        engine.receive("SNEAKER", 10, idempotency_key="console-receive")
        engine.receive("COUNTED", 10, idempotency_key="console-receive-counted")
        engine.receive("DROP-A", 5, idempotency_key="console-receive-drop")
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


@contextmanager
def console(server: Serve, token: str) -> Iterator[Any]:
    """A page of the console in Chromium, the key entered; on the way out, every request
    the page made went to the sidecar (127.0.0.1) and nowhere else."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{server.url}/console")
            expect(page.locator("#key-form")).to_be_visible(timeout=WAIT_MS)
            page.fill("#key-input", token)
            page.click("#key-form button[type=submit]")
            page.requested = requested
            yield page
        finally:
            browser.close()
    assert requested, "the page made no request"
    assert all(url.startswith(server.url + "/") for url in requested), sorted(set(requested))


def test_a_discrepancy_is_resolved_through_the_page(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect

    server, admin = served
    counted_at = datetime.now(UTC).isoformat()
    with Client(server.url, api_key=admin) as client:
        counts = [{"sku": "COUNTED", "qty": 7}]
        report = client.reconcile(
            {"source": "3pl-east", "counted_at": counted_at, "counts": counts}
        )
    (case,) = report.cases
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/discrepancies")
        row = page.locator(f'#cases tr[data-case="{case.id}"]')
        expect(row).to_contain_text("COUNTED", timeout=WAIT_MS)
        page.screenshot(path=str(SCREENSHOTS / "discrepancies.png"), full_page=True)
        row.get_by_role("button").click()
        page.fill("#resolve-reason", "the 3PL count is right")
        page.select_option("#resolve-action", "adjust")
        page.click("#resolve-form button[type=submit]")
        # the read key lacks the stock scope: the page asks for a stock key, then resends
        expect(page.locator("#stock-key-form")).to_be_visible(timeout=WAIT_MS)
        page.fill("#stock-key-input", TOKENS["ops-alice"])
        page.keyboard.press("Enter")
        expect(page.locator("#case-result")).to_contain_text("resolved", timeout=WAIT_MS)
        assert page.evaluate("sessionStorage.getItem('earmark.console.stock-key')")

        page.goto(f"{server.url}/console#/ledger")
        page.fill("#ledger-sku", "COUNTED")
        page.fill("#ledger-type", "adjusted")
        ledger = page.locator("#ledger-results")
        for _ in range(30):  # the flusher records the adjustment within moments
            page.click("#ledger-filter button")
            page.wait_for_timeout(300)
            if "ops-alice" in ledger.inner_text():
                break
        expect(ledger).to_contain_text("ops-alice")
        expect(ledger).to_contain_text("on_hand -3")
    with Client(server.url, api_key=admin) as client:
        resolved = client.get_discrepancy(case.id)
        assert (resolved.status, resolved.resolved_by) == ("resolved", "ops-alice")
        assert client.stock("COUNTED").on_hand == 7


def test_the_sku_page_shows_reorder_points_and_alert_state(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect

    server, admin = served
    with Client(server.url, api_key=admin) as client:
        client.receive("REORDER", 10, idempotency_key="console-receive-reorder")
        client.receive("REORDER", 10, location="east", idempotency_key="console-reorder-east")
        client.set_reorder("REORDER", 4, 8, lead_time_days=14)
        client.set_reorder("REORDER", 2, 5, location="east")
        client.damage("REORDER", 7, "flood")  # default: available 3, at or below 4
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/sku/REORDER")
        default = page.locator('#sku-reorder tr[data-location="default"]')
        expect(default.locator('[data-field="reorder_point"]')).to_have_text("4", timeout=WAIT_MS)
        expect(default.locator('[data-field="rearm_above"]')).to_have_text("8")
        expect(default).to_contain_text("14 days")
        expect(default.locator('[data-field="alert"]')).to_contain_text("low since")
        east = page.locator('#sku-reorder tr[data-location="east"]')
        expect(east.locator('[data-field="alert"]')).to_have_text("armed")
        page.screenshot(path=str(SCREENSHOTS / "sku.png"), full_page=True)
        page.goto(f"{server.url}/console#/sku/SNEAKER")
        expect(page.locator("#sku-reorder")).to_have_text(
            "No reorder point is set at any location.", timeout=WAIT_MS
        )


def test_the_drops_page_shows_status_countdown_and_figures(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import Route, expect

    server, admin = served
    now = datetime.now(UTC)
    with Client(server.url, api_key=admin) as client:
        client.create_drop("launch-later", ["DROP-B"], opens_at=now + timedelta(hours=2))
        client.create_drop("launch-now", ["DROP-A"], opens_at=now - timedelta(minutes=1))
        client.reserve([("DROP-A", 2)], customer="ann", ttl_seconds=300)
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/drops")
        later = page.locator('#drops tr[data-drop="launch-later"]')
        expect(later.locator('[data-field="status"]')).to_have_text("scheduled", timeout=WAIT_MS)
        expect(later.locator('[data-field="countdown"]')).to_contain_text("in 1h 59m")
        live = page.locator('#drops tr[data-drop="launch-now"]')
        expect(live.locator('[data-field="status"]')).to_have_text("open")
        expect(live.locator('[data-field="held"]')).to_have_text("2")
        # drops carry their waitlist depth and their live offers
        expect(live.locator('[data-field="waiting"]')).to_have_text("0")
        expect(live.locator('[data-field="offered"]')).to_have_text("0")
        page.screenshot(path=str(SCREENSHOTS / "drops.png"), full_page=True)

        def with_waitlist(route: Route) -> None:  # a service whose drops carry both figures
            body = route.fetch().json()
            for drop in body["items"]:
                drop.update(waiting=4, offered=1)
            route.fulfill(json=body)

        page.route("**/v1/drops?*", with_waitlist)
        expect(live.locator('[data-field="waiting"]')).to_have_text("4", timeout=WAIT_MS)
        expect(live.locator('[data-field="offered"]')).to_have_text("1")


def test_the_drops_page_counts_the_customers_at_their_limit(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect

    server, admin = served
    now = datetime.now(UTC)
    with Client(server.url, api_key=admin) as client:
        client.receive("DROP-C", 10, idempotency_key="console-receive-drop-c")
        client.create_drop(
            "launch-limited", ["DROP-C"], opens_at=now - timedelta(minutes=1), per_customer_limit=2
        )
        client.reserve([("DROP-C", 2)], customer="ann", ttl_seconds=300)  # at the limit
        client.reserve([("DROP-C", 1)], customer="bob", ttl_seconds=300)  # below it
        cat = client.reserve([("DROP-C", 2)], customer="cat", ttl_seconds=300)
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/drops")
        limited = page.locator('#drops tr[data-drop="launch-limited"]')
        figure = limited.locator('[data-field="customers_at_limit"]')
        expect(figure).to_have_text("2", timeout=WAIT_MS)
        page.screenshot(path=str(SCREENSHOTS / "drops.png"), full_page=True)
        with Client(server.url, api_key=admin) as client:
            client.release(cat.id)
        expect(figure).to_have_text("1", timeout=WAIT_MS)  # the page polls: cat is below
        no_limit = page.locator('#drops tr[data-drop="launch-now"]')
        expect(no_limit.locator('[data-field="customers_at_limit"]')).to_have_text("")


def seed_skus(count: int) -> None:
    """``count`` SKUs straight through the engine, many calls at once (coalesced into
    pipelines), not one HTTP request each."""

    async def seed() -> None:
        config = EngineConfig(prefix=TOKENS["prefix"])
        async with AsyncEngine.from_url(TOKENS["redis"], config) as engine:
            for start in range(0, count, 500):
                await asyncio.gather(
                    *(
                        engine.receive(f"LOAD-{n:05d}", 5, idempotency_key=f"load-{n}")
                        for n in range(start, min(count, start + 500))
                    )
                )

    asyncio.run(seed())


def test_ten_thousand_skus_are_paged_never_rendered_whole(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect

    server, _ = served
    seed_skus(SEEDED_SKUS)
    with console(server, TOKENS["console-reader"]) as page:
        rows = page.locator("#overview-skus tbody tr")
        expect(rows.first).to_be_visible(timeout=WAIT_MS)
        assert 0 < rows.count() <= 20
        page.click("text=Every SKU, page by page, with search")
        listed = page.locator("#sku-list tbody tr")
        expect(listed.first).to_be_visible(timeout=WAIT_MS)
        assert 0 < listed.count() <= 50
        expect(page.locator("#sku-pages-next")).to_be_enabled()
        page.click("#sku-pages-next")
        expect(page.locator("#sku-pages-where")).to_contain_text("page 2", timeout=WAIT_MS)
        assert 0 < listed.count() <= 50
        page.screenshot(path=str(SCREENSHOTS / "skus.png"), full_page=True)
        page.fill("#sku-prefix", "LOAD-01234")
        page.keyboard.press("Enter")
        # the prefix's matches are read a bounded scan at a time; the exact SKU directly
        expect(page.locator("#sku-exact")).to_contain_text("5 available", timeout=WAIT_MS)
        assert listed.count() <= 50
        page.click("#sku-exact a")
        expect(page.locator("#sku-locations")).to_contain_text("default", timeout=WAIT_MS)
        listings = [u for u in page.requested if urlsplit(u).path == "/v1/skus"]
    assert listings
    for url in listings:  # every read of the stock index asked for one bounded page
        (limit,) = parse_qs(urlsplit(url).query)["limit"]
        assert 1 <= int(limit) <= 50, url


def recorded(client: Client, types: list[str], sku: str | None = None, count: int = 1) -> None:
    """Wait until the ledger holds ``count`` events of ``types`` (of ``sku``): the flusher
    records writes within moments, and the console reads the recorded ledger."""
    for _ in range(100):
        if len(client.ledger(types=types, sku=sku, limit=1000).items) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the ledger did not record {count} of {types} in time")


def test_the_sku_page_shows_each_channels_view(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect

    server, admin = served
    with Client(server.url, api_key=admin) as client:
        client.receive("CHANNELED", 100, idempotency_key="console-receive-channeled")
        client.set_channel("marketplace", buffer_units=10, idempotency_key="console-marketplace")
        client.set_channel_sku(
            "outlet", "CHANNELED", buffer_percent=50, idempotency_key="console-outlet"
        )
        client.allocate("wholesale", "CHANNELED", qty=6, idempotency_key="console-wholesale")
        recorded(client, ["channel_set"], count=2)
        recorded(client, ["allocated"], sku="CHANNELED")
        views = {c: client.channel_stock(c, "CHANNELED") for c in ("marketplace", "wholesale")}
    marketplace = views["marketplace"]
    assert marketplace.unbuffered_available is not None
    assert marketplace.available != marketplace.unbuffered_available  # the buffer shows
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/sku/CHANNELED")
        row = page.locator('#sku-channels tr[data-channel="marketplace"]')
        figure = row.locator('[data-field="available"]')
        expect(figure).to_have_text(str(marketplace.available), timeout=WAIT_MS)
        unbuffered = row.locator('[data-field="unbuffered_available"]')
        expect(unbuffered).to_have_text(str(marketplace.unbuffered_available))
        expect(row.locator('[data-field="kept_back"]')).to_have_text("10")
        fenced = page.locator('#sku-channels tr[data-channel="wholesale"]')
        expect(fenced.locator('[data-field="allocated"]')).to_have_text("6")
        expect(fenced.locator('[data-field="available"]')).to_have_text(
            str(views["wholesale"].available)
        )
        # an override of this SKU is a channel too: half of the 94 shared units kept back
        outlet = page.locator('#sku-channels tr[data-channel="outlet"]')
        expect(outlet.locator('[data-field="available"]')).to_have_text("47")
        expect(page.locator("#sku-channels-note")).to_contain_text("recorded ledger")
        # a screen reader reads the note as the table's description
        expect(page.get_by_role("table", name="Available summed")).to_have_accessible_description(
            re.compile("recorded ledger")
        )
        page.screenshot(path=str(SCREENSHOTS / "sku-channels.png"), full_page=True)


def test_the_drops_page_shows_the_hand_off_to_the_line(served: tuple[Serve, str]) -> None:
    from playwright.sync_api import expect

    server, admin = served
    now = datetime.now(UTC)
    with Client(server.url, api_key=admin) as client:
        client.receive("DROP-W", 1, idempotency_key="console-receive-drop-w")
        client.create_drop(
            "launch-line", ["DROP-W"], opens_at=now - timedelta(minutes=1), waitlist=True
        )
        ann = client.reserve([("DROP-W", 1)], customer="ann", ttl_seconds=300)  # sold out
        client.join_waitlist("launch-line", "bob", "DROP-W")
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/drops")
        line = page.locator('#drops tr[data-drop="launch-line"]')
        rate = line.locator('[data-field="handoff_rate"]')
        converted = line.locator('[data-field="handoff_converted"]')
        expect(rate).to_have_attribute("data-offered", "0", timeout=WAIT_MS)
        expect(rate).to_have_text("0.0 (0)")
        expect(converted).to_have_text("none ended")
        expect(page.locator("#handoff-note")).to_contain_text("last 5 minutes")
        expect(page.locator("#drops")).to_have_accessible_description(
            re.compile("waitlist_offered events .* over the last 5 minutes")
        )
        with Client(server.url, api_key=admin) as client:
            client.release(ann.id)  # the freed unit is offered to bob in the same script
            offer = client.get_waitlist_entry("launch-line", "bob").offer
            assert offer is not None
            recorded(client, ["waitlist_offered"], sku="DROP-W")
        # the page reads the ledger again within HANDOFF_REFRESH_MS (10 s)
        expect(rate).to_have_attribute("data-offered", "1", timeout=2 * WAIT_MS)
        expect(rate).to_have_text("0.2 (1)")
        page.screenshot(path=str(SCREENSHOTS / "drops-handoff.png"), full_page=True)
        with Client(server.url, api_key=admin) as client:
            client.commit(offer.reservation_id)
            recorded(client, ["waitlist_converted"], sku="DROP-W")
        expect(converted).to_have_text("100% of 1", timeout=2 * WAIT_MS)


def test_the_sku_page_caps_its_channels_with_a_note(served: tuple[Serve, str]) -> None:
    """More channels than the page shows (20): the first 20 by name, and a note says so.
    The names sort after the other tests' channels, so the order tests run in is no
    matter."""
    from playwright.sync_api import expect

    server, admin = served
    names = [f"zone{i:02d}" for i in range(21)]
    with Client(server.url, api_key=admin) as client:
        client.receive("MANY-CHANNELS", 10, idempotency_key="console-receive-many")
        for name in names:
            client.set_channel_sku(
                name, "MANY-CHANNELS", buffer_units=1, idempotency_key=f"console-{name}"
            )
        recorded(client, ["channel_set"], sku="MANY-CHANNELS", count=len(names))
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/sku/MANY-CHANNELS")
        rows = page.locator("#sku-channels tbody tr")
        first = page.locator('#sku-channels tr[data-channel="zone00"]')
        expect(first.locator('[data-field="available"]')).to_have_text("9", timeout=WAIT_MS)
        expect(rows).to_have_count(20)
        expect(page.locator('#sku-channels tr[data-channel="zone20"]')).to_have_count(0)
        expect(page.locator("#sku-channels-note")).to_contain_text(
            "Only the first 20 channels (by name) are shown."
        )


def test_both_pages_work_with_auth_off(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`earmark serve --no-auth`: the page asks for no key and reads the channels and the
    hand-off with none."""
    from playwright.sync_api import expect, sync_playwright

    tmp = tmp_path_factory.mktemp("console-open")
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": fresh_prefix(),
        "EARMARK_DATABASE_URL": f"sqlite:///{tmp / 'earmark.db'}",
    }
    server = Serve(Path(tmp), env, "--no-auth")
    try:
        server.wait_ready()
        with Client(server.url) as client:
            client.receive("OPEN-SKU", 20, idempotency_key="open-receive")
            client.set_channel("marketplace", buffer_units=5, idempotency_key="open-channel")
            client.create_drop(
                "open-line",
                ["OPEN-SKU"],
                opens_at=datetime.now(UTC) - timedelta(minutes=1),
                waitlist=True,
            )
            recorded(client, ["channel_set"])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
            try:
                page = browser.new_page()
                page.goto(f"{server.url}/console#/sku/OPEN-SKU")
                row = page.locator('#sku-channels tr[data-channel="marketplace"]')
                expect(row.locator('[data-field="available"]')).to_have_text("15", timeout=WAIT_MS)
                page.goto(f"{server.url}/console#/drops")
                line = page.locator('#drops tr[data-drop="open-line"]')
                rate = line.locator('[data-field="handoff_rate"]')
                expect(rate).to_have_text("0.0 (0)", timeout=WAIT_MS)
                expect(page.locator("#key-form")).to_be_hidden()
            finally:
                browser.close()
    finally:
        assert server.stopped_cleanly(), server.output()


def test_the_ledger_pages_forward_and_back(served: tuple[Serve, str]) -> None:
    """The Ledger page walks cursor pages with the shared pager: forward to the last page,
    back to the first, each showing its own rows (at most 50, the page's limit)."""
    from playwright.sync_api import expect

    server, admin = served
    with Client(server.url, api_key=admin) as client:
        for n in range(60):
            client.receive("PAGED", 1, idempotency_key=f"console-paged-{n}")
        recorded(client, ["received"], sku="PAGED", count=60)
    with console(server, TOKENS["console-reader"]) as page:
        page.goto(f"{server.url}/console#/ledger")
        page.fill("#ledger-sku", "PAGED")
        page.click("#ledger-filter button")
        rows = page.locator("#ledger-results tbody tr")
        expect(rows).to_have_count(50, timeout=WAIT_MS)
        expect(page.locator("#ledger-pages-where")).to_contain_text("page 1")
        expect(page.locator("#ledger-pages-previous")).to_be_disabled()
        page.click("#ledger-pages-next")
        expect(rows).to_have_count(10, timeout=WAIT_MS)
        expect(page.locator("#ledger-pages-where")).to_contain_text("page 2")
        expect(page.locator("#ledger-pages-next")).to_be_disabled()
        page.click("#ledger-pages-previous")
        expect(rows).to_have_count(50, timeout=WAIT_MS)
        expect(page.locator("#ledger-pages-where")).to_contain_text("page 1")
        expect(page.locator("#ledger-pages-previous")).to_be_disabled()
