"""``earmark.client`` for drops: the library's models and exceptions over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from earmark import CustomerLimitExceeded, CustomerRequired, Drop, DropAlreadyOpen
from earmark.client import AsyncClient
from tests.support.api import BASE_URL, Api


async def test_a_drop_through_the_client(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(BASE_URL, api_key=api.tokens["admin"], transport=transport) as client:
        await client.receive("TEE", 5)
        later = datetime.now(UTC) + timedelta(hours=1)
        drop = await client.create_drop("d", ["TEE"], opens_at=later, per_customer_limit=1)
        assert isinstance(drop, Drop) and (drop.per_customer_limit, drop.open) == (1, False)
        opened = await client.update_drop("d", opens_at=datetime.now(UTC) - timedelta(seconds=1))
        assert opened.open and opened.per_customer_limit == 1  # the rest kept
        assert await client.get_drop("d") == opened
        with pytest.raises(CustomerRequired):
            await client.reserve([("TEE", 1)])
        await client.reserve([("TEE", 1)], customer="Ann")
        with pytest.raises(CustomerLimitExceeded):
            await client.reserve([("TEE", 1)], customer=" ann ")
        with pytest.raises(DropAlreadyOpen):
            await client.update_drop("d", per_customer_limit=None)
