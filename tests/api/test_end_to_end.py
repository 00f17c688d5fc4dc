"""``earmark serve`` as a process: the contention contract against a real redis-server and
a real PostgreSQL (the ledger agrees with the API), and the embedded mode's restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.api import KEYED_HOOKS, KEYED_SYNC_HOOKS
from tests.support.backends import fresh_prefix
from tests.support.serve import FLUSH_TIMEOUT_SECONDS, Serve
from tests.support.servers import RedisServer

UNITS = 100
ATTEMPTS = 300


@pytest.fixture
def served(redis_server: RedisServer, pg_url: str, tmp_path: Path) -> Iterator[Serve]:
    """Redis + PostgreSQL, the flusher in-process (the default)."""
    env = {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_DATABASE_URL": pg_url,
        "EARMARK_PREFIX": fresh_prefix(),
    }
    server = Serve(tmp_path, env, "--no-auth")  # no API key in this throwaway Redis
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stopped_cleanly(), server.output()


async def contend(base_url: str) -> tuple[list[httpx.Response], httpx.Response]:
    limits = httpx.Limits(max_connections=ATTEMPTS)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=60, limits=limits, event_hooks=KEYED_HOOKS
    ) as client:
        received = await client.post("/v1/skus/HOT/receipts", json={"qty": UNITS})
        assert received.status_code == 200
        body = {"lines": [{"sku": "HOT", "qty": 1}], "ttl_seconds": 600}
        attempts = [
            client.post("/v1/reservations", json=body, headers={"Idempotency-Key": f"a{i}"})
            for i in range(ATTEMPTS)
        ]
        responses = list(await asyncio.gather(*attempts))
        held = [r.json()["id"] for r in responses if r.status_code == 201]
        commits = await asyncio.gather(
            *(client.post(f"/v1/reservations/{rid}/commit") for rid in held)
        )
        assert [c.status_code for c in commits] == [200] * len(held)
        return responses, await client.get("/v1/skus/HOT")


async def recorded(pg_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """(events per type, the stock_levels row) of HOT, once the flusher recorded every
    commit (it runs inside serve, so poll)."""
    conn = await asyncpg.connect(pg_url)
    try:
        deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
        while True:
            rows = await conn.fetch(
                "SELECT type, count(*) AS n FROM ledger WHERE sku = 'HOT' GROUP BY type"
            )
            events = {row["type"]: int(row["n"]) for row in rows}
            if events.get("committed", 0) >= UNITS or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        level = await conn.fetchrow(
            "SELECT on_hand, reserved, committed FROM stock_levels WHERE sku = 'HOT'"
        )
        return events, dict(level or {})
    finally:
        await conn.close()


@pytest.mark.redis_server
@pytest.mark.postgres
def test_300_attempts_for_100_units_hold_exactly_100_and_the_ledger_agrees(
    served: Serve, pg_url: str
) -> None:
    responses, stock = asyncio.run(contend(served.url))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == UNITS
    assert statuses.count(409) == ATTEMPTS - UNITS
    refused = [r.json() for r in responses if r.status_code == 409]
    assert {p["code"] for p in refused} == {"insufficient_stock"}
    level = stock.json()
    assert (level["on_hand"], level["committed"], level["reserved"], level["available"]) == (
        UNITS,
        UNITS,
        0,
        0,
    )

    events, row = asyncio.run(recorded(pg_url))
    assert (events.get("reserved"), events.get("committed")) == (UNITS, UNITS), events
    assert row == {"on_hand": UNITS, "reserved": 0, "committed": UNITS}
    ready = httpx.get(f"{served.url}/readyz", timeout=5).json()
    assert ready["checks"]["flusher_lag"]["ok"] is True


@pytest.mark.redis_server
def test_serve_refuses_a_public_address_without_keys(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = Serve(tmp_path, {"EARMARK_REDIS_URL": redis_server.url}, "--host", "0.0.0.0")
    try:
        returncode = server.proc.wait(30)
    finally:
        server.stop()
    assert returncode != 0
    assert "refusing to serve on 0.0.0.0 without API keys" in server.output()


def test_embedded_serve_keeps_stock_across_a_restart_but_not_live_holds(tmp_path: Path) -> None:
    env = {"EARMARK_DATABASE_URL": f"sqlite:///{tmp_path}/earmark.db"}
    first = Serve(tmp_path, env)
    try:
        first.wait_ready()
        with httpx.Client(base_url=first.url, timeout=10, event_hooks=KEYED_SYNC_HOOKS) as client:
            assert client.post("/v1/skus/TEE/receipts", json={"qty": 10}).status_code == 200
            sold = client.post(
                "/v1/reservations",
                json={"lines": [{"sku": "TEE", "qty": 3}]},
                headers={"Idempotency-Key": "sold"},
            ).json()
            assert client.post(f"/v1/reservations/{sold['id']}/commit").status_code == 200
            held = client.post(
                "/v1/reservations",
                json={"lines": [{"sku": "TEE", "qty": 2}], "ttl_seconds": 600},
                headers={"Idempotency-Key": "held"},
            ).json()
            before = client.get("/v1/skus/TEE").json()
            assert (before["on_hand"], before["committed"], before["reserved"]) == (10, 3, 2)
    finally:
        clean = first.stopped_cleanly()  # SIGTERM right after the writes: they get flushed
    out = first.output()
    assert clean, out
    announced = " ".join(out.split())
    assert "EMBEDDED mode" in announced
    assert "for development and small single-process use" in announced
    assert "live holds (reservations not yet committed) do not" in announced
    assert "EARMARK_REDIS_URL=redis://" in announced
    assert "EARMARK_DATABASE_URL=postgresql://" in announced
    assert f"Durable record: SQLite file {tmp_path / 'earmark.db'}" in announced
    assert "left events" not in out

    second = Serve(tmp_path, env)
    try:
        second.wait_ready()
        with httpx.Client(base_url=second.url, timeout=10, event_hooks=KEYED_SYNC_HOOKS) as client:
            after = client.get("/v1/skus/TEE").json()
            assert (after["on_hand"], after["committed"], after["reserved"]) == (10, 3, 0)
            assert after["available"] == 7
            assert client.get(f"/v1/reservations/{held['id']}").status_code == 404
            # The committed reservation survived with its stock: it can still ship.
            assert client.post(f"/v1/reservations/{sold['id']}/ship").status_code == 200
            shipped = client.get("/v1/skus/TEE").json()
            assert (shipped["on_hand"], shipped["committed"]) == (7, 0)
    finally:
        assert second.stopped_cleanly(), second.output()
    assert "2 held units released" in second.output()
