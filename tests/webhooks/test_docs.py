"""The receiver of docs/webhooks.md works as printed: it takes what the worker signs,
keeps the highest seq whatever the order, and refuses a bad signature."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from earmark.webhooks import generate_secret, headers_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
MARKER = "<!-- receiver-example"


def example() -> str:
    text = DOC.read_text()
    after = text[text.index(MARKER) :]
    found = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert found is not None, "the receiver example is missing from docs/webhooks.md"
    return found.group(1)


def stock_changed(seq: int, on_hand: int) -> bytes:
    data = {"sku": "A", "location": "default", "on_hand": on_hand, "seq": seq}
    return orjson.dumps({"type": "stock.changed", "timestamp": "x", "data": data})


async def test_the_documented_fastapi_receiver() -> None:
    code = example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 17
    secret = generate_secret()
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("whsec_...", secret), str(DOC), "exec"), namespace)
    app = namespace["app"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://receiver"
    ) as client:
        for msg_id, seq, on_hand in (("msg_b", 2, 9), ("msg_a", 1, 10)):  # out of order
            body = stock_changed(seq, on_hand)
            headers = headers_for([secret], msg_id, int(time.time()), body)
            response = await client.post("/earmark", content=body, headers=headers)
            assert response.status_code == 200, response.text
        assert namespace["latest"][("A", "default")]["on_hand"] == 9  # seq 2 kept
        body = stock_changed(3, 8)
        forged = headers_for([generate_secret()], "msg_c", int(time.time()), body)
        response = await client.post("/earmark", content=body, headers=forged)
        assert response.status_code == 400
        assert namespace["latest"][("A", "default")]["seq"] == 2
