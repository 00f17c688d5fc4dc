"""The serving process: ``earmark serve`` tunes the garbage collector once its app is
built (earmark.api.server.tune_gc), with one worker and in each of several workers."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from earmark.api import server
from earmark.settings import Settings
from tests.support.servers import RedisServer, free_port

START_SECONDS_MAX = 60.0


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to the collector of this process is undone afterwards."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_serve_tunes_the_collector_after_building_the_app(
    monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    seen: dict[str, Any] = {}

    def built(settings: Settings) -> object:
        seen["threshold_while_building"] = gc.get_threshold()
        return object()

    def run(app: object, **options: Any) -> None:
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()
        seen["options"] = options

    gc.set_threshold(700, 10, 10)
    monkeypatch.setattr(server, "check_serve", lambda settings: None)
    monkeypatch.setattr(server, "create_app", built)
    monkeypatch.setattr(server.uvicorn, "run", run)
    server.serve(Settings(workers=1))
    assert seen["threshold_while_building"] == (700, 10, 10)
    assert seen["threshold"] == server.GC_THRESHOLDS
    assert seen["frozen"] > 0  # start-up's objects are out of every collection
    assert seen["options"]["http"] is not None and seen["options"]["loop"] == "uvloop"


def test_each_worker_app_comes_from_the_tuned_factory(
    monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    app = object()
    gc.set_threshold(700, 10, 10)
    monkeypatch.setattr(server, "create_app_from_env", lambda: app)
    assert server.served_app_from_env() is app
    assert gc.get_threshold() == server.GC_THRESHOLDS


def test_several_workers_serve_reservations(redis_server: RedisServer, tmp_path: Path) -> None:
    """``earmark serve --workers 2``: uvicorn imports the tuned factory by its path in each
    worker, and both serve."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    env |= {
        "EARMARK_REDIS_URL": redis_server.url,
        "EARMARK_PREFIX": f"w{uuid.uuid4().hex[:8]}",
        "EARMARK_DATABASE_URL": f"sqlite:///{tmp_path}/earmark.db",
    }
    command = [sys.executable, "-m", "earmark", "serve", "--workers", "2", "--no-auth",
               "--port", str(port)]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS_MAX
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve --workers 2 did not become ready"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as client:
            received = client.post(
                "/v1/skus/W/receipts", json={"qty": 20}, headers={"Idempotency-Key": "r"}
            )
            assert received.status_code in (200, 201), received.text
            held = [
                client.post(
                    "/v1/reservations",
                    json={"lines": [{"sku": "W", "qty": 1}]},
                    headers={"Idempotency-Key": f"k{i}"},
                )
                for i in range(8)
            ]
            assert [r.status_code for r in held] == [201] * 8, [r.text for r in held]
            stock = client.get("/v1/skus/W").json()
            assert stock["reserved"] == 8 and stock["available"] == 12
    finally:
        proc.terminate()
        proc.wait(timeout=30)
