"""What a shopper of the flash drop does, as plain data and choices (no Locust here).

A shopper holds a cart of 1..``lines_max`` SKUs, 1..``qty_max`` units each, thinks, then
commits with probability ``commit_probability``, releases with ``release_probability``,
or abandons the cart (the hold is left to expire after ``ttl_seconds``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["commit", "release", "abandon"]

SKUS_MAX = 1_000  # one GET /v1/availability reads them all (limits.SKUS_PER_READ_MAX)
LINES_MAX = 50  # limits.LINES_MAX
QTY_MAX = 1_000_000  # limits.QTY_MAX: also the largest single receipt
TTL_SECONDS_MIN = 1.0  # limits.TTL_MS_MIN
TTL_SECONDS_MAX = 24 * 60 * 60.0  # limits.TTL_MS_MAX
THINK_SECONDS_MAX = 600.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # limits.NAME_PATTERN
TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


class ScenarioError(ValueError):
    """A knob out of its bounds; the message names it."""


@dataclass(frozen=True, slots=True)
class Scenario:
    skus: int = 3
    stock: int = 100
    sku_prefix: str = "DROP"
    location: str = "default"
    qty_max: int = 2
    lines_max: int = 1
    commit_probability: float = 0.6
    release_probability: float = 0.2
    ttl_seconds: float = 10.0
    think_seconds_min: float = 0.5
    think_seconds_max: float = 2.0
    channel: str = "drill"

    def __post_init__(self) -> None:
        self._check_counts()
        self._check_times()
        for name in (self.sku_prefix, self.location):
            if not NAME_PATTERN.match(name) or len(name) > 48:
                raise ScenarioError(f"{name!r}: letters, digits, '.', '_', '-'; at most 48")

    def _check_counts(self) -> None:
        if not 1 <= self.skus <= SKUS_MAX:
            raise ScenarioError(f"skus must be between 1 and {SKUS_MAX}")
        if not 0 <= self.stock <= 1_000_000_000:
            raise ScenarioError("stock must be between 0 and 1,000,000,000 units per SKU")
        if not 1 <= self.qty_max <= QTY_MAX:
            raise ScenarioError(f"qty_max must be between 1 and {QTY_MAX}")
        if not 1 <= self.lines_max <= min(LINES_MAX, self.skus):
            raise ScenarioError("lines_max must be between 1 and min(50, skus)")
        p, r = self.commit_probability, self.release_probability
        if not (0 <= p <= 1 and 0 <= r <= 1 and p + r <= 1):
            raise ScenarioError("commit and release probabilities must be >= 0, sum <= 1")

    def _check_times(self) -> None:
        if not TTL_SECONDS_MIN <= self.ttl_seconds <= TTL_SECONDS_MAX:
            raise ScenarioError(f"ttl must be between {TTL_SECONDS_MIN:g} and 86400 seconds")
        low, high = self.think_seconds_min, self.think_seconds_max
        if not 0 <= low <= high <= THINK_SECONDS_MAX:
            raise ScenarioError(f"need 0 <= think-min <= think-max <= {THINK_SECONDS_MAX:g}")

    @property
    def sku_names(self) -> tuple[str, ...]:
        return sku_names(self.sku_prefix, self.skus)

    @property
    def abandon_probability(self) -> float:
        return max(0.0, 1.0 - self.commit_probability - self.release_probability)

    def cart(self, rng: random.Random) -> list[tuple[str, int]]:
        """Distinct SKUs, each with 1..qty_max units."""
        count = rng.randint(1, self.lines_max)
        return [(sku, rng.randint(1, self.qty_max)) for sku in rng.sample(self.sku_names, count)]

    def outcome(self, rng: random.Random) -> Outcome:
        roll = rng.random()
        if roll < self.commit_probability:
            return "commit"
        if roll < self.commit_probability + self.release_probability:
            return "release"
        return "abandon"

    def think_seconds(self, rng: random.Random) -> float:
        return rng.uniform(self.think_seconds_min, self.think_seconds_max)


def sku_names(prefix: str, count: int) -> tuple[str, ...]:
    """``DROP-1`` .. ``DROP-n``."""
    return tuple(f"{prefix}-{i}" for i in range(1, count + 1))


def timespan_seconds(text: str) -> int:
    """Locust's ``--run-time`` syntax (``30``, ``30s``, ``2m``, ``1h30m``) in seconds.

    Written here rather than imported: importing locust monkey-patches the process."""
    match = TIMESPAN.match(text.strip())
    if not text.strip() or match is None:
        raise ScenarioError(f"{text!r} is not a time span like 30s, 2m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds
