"""How long an idle webhook worker waits before it looks for work again.

The dispatcher and the delivery worker look at the record every ``poll_seconds`` while
they find work. Each look is a few short transactions on a thread, which on a busy
sidecar also costs the event loop the GIL: at 50 ms, twenty looks a second kept an idle
``earmark serve`` at about 3 % of a core, and under load with nothing to deliver it
spent 10 % more CPU per reservation (``python -m loadtests.bench_webhook_idle``). So
while a look finds nothing, the next wait
doubles, up to ``poll_idle_seconds_max``; the first look that finds work returns to
``poll_seconds``. A wake (the in-process flusher recorded rows, the dispatcher made
messages) cuts any wait short, so an idle worker adds lag only where nothing wakes it:
a change recorded by another process waits at most ``poll_idle_seconds_max``.
"""

from __future__ import annotations


class IdlePoll:
    """The wait before the next look: ``base`` after work, doubling while idle to ``cap``."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = max(base, cap)
        self._next = base

    def busy(self) -> None:
        """The last look found work: look again after ``base``."""
        self._next = self.base

    def idle(self) -> float:
        """The last look found nothing: the seconds to wait now (the next idle look waits
        twice as long, up to ``cap``)."""
        wait = self._next
        self._next = min(self._next * 2, self.cap)
        return wait
