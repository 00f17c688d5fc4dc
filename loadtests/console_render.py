"""How long the console's overview and SKU list take to render with many SKUs.

    python -m loadtests.console_render [--skus 10000] [--runs 5]

Starts a throwaway redis-server and ``earmark serve`` (SQLite record, one key with the
`read` scope), seeds ``--skus`` SKUs through the engine (many calls at once, coalesced
into pipelines), then opens the console in Debian's Chromium (Playwright) ``--runs``
times and prints, per page, the time from navigation to the first rows on screen: the
overview's stock table with its health cards, and the SKU list. The target (issue 17):
the overview within 1 s with 10,000 SKUs. Timing lives here, never in the unit tests
(tests/console/test_console.py checks the rows are bounded and the reads paged).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.console.test_console import chromium
from tests.support.serve import Serve
from tests.support.servers import RedisServer

from earmark import AsyncEngine, EngineConfig
from earmark.durable import service as durable

PREFIX = "render"


async def seed(url: str, count: int) -> None:
    async with AsyncEngine.from_url(url, EngineConfig(prefix=PREFIX)) as engine:
        for start in range(0, count, 500):
            await asyncio.gather(
                *(
                    engine.receive(f"LOAD-{n:05d}", 5, idempotency_key=f"load-{n}")
                    for n in range(start, min(count, start + 500))
                )
            )


def measure(url: str, token: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import expect, sync_playwright

    timings: dict[str, list[float]] = {"overview": [], "skus": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            for _ in range(runs):
                page = browser.new_page(viewport={"width": 1366, "height": 800})
                page.goto(f"{url}/console#/ledger")  # the key first, outside the timing
                page.fill("#key-input", token)
                page.click("#key-form button[type=submit]")
                started = time.perf_counter()
                page.goto(f"{url}/console#/overview")
                expect(page.locator("#overview-skus tbody tr").first).to_be_visible()
                expect(page.locator("#holds-live")).to_be_visible()
                timings["overview"].append(time.perf_counter() - started)
                started = time.perf_counter()
                page.goto(f"{url}/console#/skus")
                expect(page.locator("#sku-list tbody tr").first).to_be_visible()
                timings["skus"].append(time.perf_counter() - started)
                page.close()
        finally:
            browser.close()
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'earmark.db'}"
        scopes = frozenset({"read"})
        token, _ = asyncio.run(durable.create_api_key(database_url, "render", scopes))
        started = time.perf_counter()
        asyncio.run(seed(redis_server.url, args.skus))
        print(f"seeded {args.skus:,} SKUs in {time.perf_counter() - started:.1f} s")
        env = {
            "EARMARK_REDIS_URL": redis_server.url,
            "EARMARK_PREFIX": PREFIX,
            "EARMARK_DATABASE_URL": database_url,
        }
        server = Serve(Path(tmp), env)
        try:
            server.wait_ready()
            timings = measure(server.url, token, args.runs)
        finally:
            server.stop()
    worst = 0.0
    for name, seconds in timings.items():
        ms = [s * 1000 for s in seconds]
        worst = max(worst, max(ms)) if name == "overview" else worst
        median = statistics.median(ms)
        print(f"{name}: median {median:.0f} ms, max {max(ms):.0f} ms ({len(ms)} runs)")
    print("PASS" if worst <= 1000 else "FAIL", "(overview within 1 s)")
    return 0 if worst <= 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
