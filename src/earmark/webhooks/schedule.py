"""When to try again: the retry schedule, jitter, ``Retry-After`` and slowing down.

The default schedule is Svix's: an attempt at once, then after 5 s, 5 min, 30 min, 2 h,
5 h, 10 h and 10 h (eight attempts over about 27.6 hours), each delay jittered by
±``jitter``. 429, 502 and 504 say the receiver is overloaded: the endpoint as a whole
pauses (its other messages wait too) for its slow-down step, which doubles on each such
answer from ``THROTTLE_MS_MIN`` up to ``THROTTLE_MS_MAX`` and resets on a success, or
for as long as ``Retry-After`` asks, whichever is longer (``Retry-After`` is honoured up
to ``RETRY_AFTER_MS_MAX``).
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

SVIX_SCHEDULE_SECONDS = (0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000)
JITTER_DEFAULT = 0.2
THROTTLE_MS_MIN = 1_000
THROTTLE_MS_MAX = 5 * 60 * 1_000
# The longest pause a Retry-After header can impose (the schedule's longest step).
RETRY_AFTER_MS_MAX = 10 * 60 * 60 * 1_000
SLOW_DOWN_STATUSES = frozenset({429, 502, 504})
GONE_STATUS = 410
ATTEMPTS_MAX = 32


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"0,5,300"``: delays in seconds before each attempt, the first usually 0."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"a retry schedule is seconds separated by commas, not {text!r}") from None
    if not 1 <= len(delays) <= ATTEMPTS_MAX or any(d < 0 for d in delays):
        raise ValueError(f"a retry schedule has 1 to {ATTEMPTS_MAX} delays, none negative")
    return delays


def parse_retry_after(value: str | None, now_ms: int) -> int | None:
    """Milliseconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP
    date), capped at ``RETRY_AFTER_MS_MAX``; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        wait_ms = int(text) * 1000
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        wait_ms = round(when.timestamp() * 1000) - now_ms
    return max(0, min(wait_ms, RETRY_AFTER_MS_MAX))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``schedule_seconds[i]``: the delay before attempt i + 1 (the first is after the
    message is recorded, usually 0). Tests pass short schedules and a seeded ``rng``."""

    schedule_seconds: Sequence[float] = SVIX_SCHEDULE_SECONDS
    jitter: float = JITTER_DEFAULT
    throttle_ms_min: int = THROTTLE_MS_MIN
    throttle_ms_max: int = THROTTLE_MS_MAX
    rng: random.Random = field(default_factory=random.Random)

    @property
    def attempts_max(self) -> int:
        return len(self.schedule_seconds)

    def next_attempt_at(
        self, attempts_done: int, now_ms: int, retry_after_ms: int | None = None
    ) -> int | None:
        """When to try again after ``attempts_done`` attempts failed; None: give up."""
        if attempts_done >= self.attempts_max:
            return None
        delay_ms = self.schedule_seconds[attempts_done] * 1000
        if delay_ms:
            delay_ms *= 1 + self.rng.uniform(-self.jitter, self.jitter)
        return now_ms + max(round(delay_ms), retry_after_ms or 0)

    def throttle_step(self, current_ms: int) -> int:
        """The endpoint's next slow-down step after a 429, 502 or 504."""
        if current_ms <= 0:
            return self.throttle_ms_min
        return min(current_ms * 2, self.throttle_ms_max)
