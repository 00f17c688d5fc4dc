"""``earmark.client`` for channels: the library's models and exceptions over HTTP."""

from __future__ import annotations

import httpx
import pytest

from earmark import (
    Allocation,
    AllocationShort,
    ChannelRule,
    ChannelSettings,
    InsufficientStock,
    SkuNotFound,
)
from earmark.client import AsyncClient
from tests.support.api import BASE_URL, Api


async def test_channels_through_the_client(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient(BASE_URL, api_key=api.tokens["admin"], transport=transport) as client:
        await client.receive("TEE", 10)
        settings = await client.set_channel("marketplace", buffer_units=2)
        assert isinstance(settings, ChannelSettings)
        assert settings.default == ChannelRule(buffer_units=2)
        override = await client.set_channel_sku("marketplace", "TEE", buffer_percent=50)
        assert override.rule == ChannelRule(buffer_percent=50)
        assert (await client.channel("marketplace")).skus == {"TEE": ChannelRule(buffer_percent=50)}
        seen = await client.channel_stock("marketplace", "TEE")
        assert (seen.available, seen.unbuffered_available) == (5, 10)
        plain = await client.stock("TEE")  # the same route without a channel
        assert (plain.available, plain.channel) == (10, None)
        with pytest.raises(InsufficientStock):
            await client.reserve([("TEE", 6)], channel="marketplace")
        assert (await client.remove_channel_sku("marketplace", "TEE")).removed
        moved = await client.allocate("marketplace", "TEE", qty=4)
        assert isinstance(moved, Allocation) and moved.allocated == 4
        with pytest.raises(AllocationShort):
            await client.allocate("marketplace", "TEE", qty=-5)
        with pytest.raises(SkuNotFound):
            await client.allocate("marketplace", "NOPE", qty=1)
        gone = await client.deallocate("marketplace", "TEE")
        assert (gone.allocated, gone.moved) == (0, -4)
