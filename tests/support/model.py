"""The plain Python model the stateful tests hold the engine against (one for both
machines: tests/engine/test_stateful.py and test_lifecycle_stateful.py), and the clock
they move.

On fakeredis, Redis TIME is Python's clock, so ``FrozenClock`` moves it with
time-machine and holds expire on cue. A real redis-server's TIME cannot be moved:
``ServerClock`` keeps every TTL an hour longer than asked, so no hold expires during a
run and the same machine checks every other path on a real server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import time_machine

BUCKETS = ("on_hand", "committed", "in_transit", "returned", "damaged", "written_off", "inbound")
START = datetime(2026, 1, 1, tzinfo=UTC)
Where = tuple[str, str]


@dataclass
class Hold:
    lines: dict[Where, int]
    expires_at_ms: int
    status: str = "held"
    returned: dict[Where, int] = field(default_factory=dict)


@dataclass
class Order:
    lines: dict[Where, list[int]]  # where -> [expected, received]
    status: str = "open"


@dataclass
class StockModel:
    """Each unit's state, as a spreadsheet would keep it: the buckets of every (sku,
    location), and holds that stop counting at their expiry."""

    now_ms: int
    places: list[Where]
    stock: dict[Where, dict[str, int]] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    shipped: dict[str, int] = field(default_factory=dict)
    came_in: dict[str, int] = field(default_factory=dict)
    transfers: dict[str, tuple[str, str, str, int, int | None]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    exposed: bool = False  # a forced decrease may leave available below zero
    stocked: set[str] = field(default_factory=set)  # SKUs with a stock record somewhere

    def __post_init__(self) -> None:
        for where in self.places:
            self.stock.setdefault(where, dict.fromkeys(BUCKETS, 0))
            self.shipped.setdefault(where[0], 0)
            self.came_in.setdefault(where[0], 0)

    def status(self, rid: str) -> str:
        hold = self.holds[rid]
        if hold.status == "held" and self.now_ms >= hold.expires_at_ms:
            return "expired"
        return hold.status

    def reserved(self, where: Where) -> int:
        return sum(
            h.lines.get(where, 0) for rid, h in self.holds.items() if self.status(rid) == "held"
        )

    def never_stocked(self, places: set[Where]) -> set[Where]:
        """The places whose SKU has no stock record anywhere (reserve: SkuNotFound)."""
        return {where for where in places if where[0] not in self.stocked}

    def available(self, where: Where) -> int:
        s = self.stock[where]
        return s["on_hand"] - self.reserved(where) - s["committed"]

    def move(self, where: Where, **deltas: int) -> None:
        """A change the engine accepted (it indexes the place: the SKU is known)."""
        self.stocked.add(where[0])
        for bucket, units in deltas.items():
            self.stock[where][bucket] += units

    def take_on_hand(self, where: Where, qty: int, to: str) -> None:
        """A damage or write-off from on_hand the engine accepted."""
        self.exposed |= self.available(where) - qty < 0
        self.move(where, on_hand=-qty, **{to: qty})


class FrozenClock:
    """fakeredis: Redis TIME is Python's clock, frozen at START and moved by ``shift``."""

    moves = True
    ttl_extra_seconds = 0

    def __init__(self) -> None:
        self.travel = time_machine.travel(START, tick=False)
        self.traveller = self.travel.start()
        self.now_ms = int(START.timestamp() * 1000)

    def shift(self, ms: int) -> None:
        self.traveller.shift(ms / 1000)
        self.now_ms += ms

    def stop(self) -> None:
        self.travel.stop()


class ServerClock:
    """A real redis-server: time flows on its own; TTLs are an hour longer than asked, so
    no hold expires while a run lasts (expiry on a real server has its own tests)."""

    moves = False
    ttl_extra_seconds = 3600

    def __init__(self, client: Any) -> None:
        seconds, micros = client.time()
        self.now_ms = int(seconds) * 1000 + int(micros) // 1000

    def shift(self, ms: int) -> None:
        raise AssertionError("a real server's clock cannot be moved")

    def stop(self) -> None:
        return None


def machine_engine(prefix: str, redis_url: str | None) -> tuple[Any, FrozenClock | ServerClock]:
    """A started engine with 2 partitions (carts span them) and the clock that goes with
    it: fakeredis and a frozen clock, or the redis-server at ``redis_url``."""
    import fakeredis

    from earmark import Engine, EngineConfig
    from tests.support.backends import fresh_prefix

    clock: FrozenClock | ServerClock
    if redis_url is None:
        clock = FrozenClock()
        engine = Engine.embedded(EngineConfig(prefix=prefix, partitions=2), fakeredis.FakeServer())
        return engine.start(), clock
    config = EngineConfig(prefix=f"{prefix}{fresh_prefix()}", partitions=2)
    engine = Engine.from_url(redis_url, config).start()
    return engine, ServerClock(engine.client)
