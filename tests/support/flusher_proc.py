"""A flusher in its own process, for the tests that kill one with SIGKILL.

    python -m tests.support.flusher_proc REDIS_URL PREFIX PARTITIONS LEDGER_URL CONSUMER \\
        [--batch N] [--delay-ms MS]

``--delay-ms`` slows the ledger down on both sides of each transaction, so that a kill
lands either before a batch is recorded or after it is recorded but not yet
acknowledged: the two windows a crash can hit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from earmark.durable.flusher import Flusher
from earmark.keys import Keys
from earmark.store.ledger import Event, Ledger, open_ledger


class SlowLedger:
    """Delegates to a real ledger, sleeping before and after every persist."""

    def __init__(self, inner: Ledger, delay_ms: int) -> None:
        self.inner, self.delay_seconds = inner, delay_ms / 1000
        self.dialect = inner.dialect

    async def persist(self, events: Sequence[Event]) -> int:
        await asyncio.sleep(self.delay_seconds)
        inserted = await self.inner.persist(events)
        await asyncio.sleep(self.delay_seconds)
        return inserted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def main(args: argparse.Namespace) -> None:
    client = redis.asyncio.Redis.from_url(args.redis_url, decode_responses=True)
    ledger = open_ledger(args.ledger_url)
    slow: Any = SlowLedger(ledger, args.delay_ms)
    flusher = Flusher(
        client,
        Keys(args.prefix),
        args.partitions,
        slow,
        consumer=args.consumer,
        batch_size_max=args.batch,
        block_ms=10,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("flushing", flush=True)
    try:
        await flusher.run(stop)
    finally:
        await flusher.close()
        await ledger.close()
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("partitions", type=int)
    parser.add_argument("ledger_url")
    parser.add_argument("consumer")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--delay-ms", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
