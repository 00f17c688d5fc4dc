"""Locust's statistics for calls made with ``earmark.client``.

Locust times the requests of its own HTTP clients; a shopper that calls the sidecar
through ``earmark.client.Client`` (the client a checkout service uses) reports each call
itself, as one request event: its name, its response time and, for a failure, the
exception. Expected refusals (a sold-out cart, a hold that expired while the shopper
thought) are successes for Locust, as they were when the shopper read raw responses:
the drill counts them in its tally, and the stats CSV counts every call once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from earmark.errors import EarmarkError

T = TypeVar("T")
Fire = Callable[..., None]  # Locust's ``environment.events.request.fire``


class UnexpectedAnswer(Exception):
    """The call answered, but not what the scenario expects (e.g. a hold not ``held``)."""


def outcome_of(error: EarmarkError) -> str:
    """``'<HTTP status> <code>'`` of a problem, as the tally records unexpected answers;
    for no answer at all, the client's ``unexpected_response`` with what it knows."""
    status = error.details.get("status") or error.http_status
    return f"{status} {error.code}"


class Timed:
    """Runs a client call and reports it to Locust once, whatever it answers."""

    def __init__(self, fire: Fire, clock: Callable[[], float] = time.perf_counter) -> None:
        self.fire = fire
        self.clock = clock

    def call(
        self,
        request_type: str,
        name: str,
        send: Callable[[], T],
        *,
        expected: tuple[type[EarmarkError], ...] = (),
        check: Callable[[T], str | None] = lambda _: None,
    ) -> T:
        """``send()``'s answer, or its exception raised again after it was reported.
        ``expected`` exceptions are reported as successes; ``check`` names what is wrong
        with an answer (reported as a failure, then raised as ``UnexpectedAnswer``)."""
        started = self.clock()
        failure: Exception | None = None
        try:
            answer = send()
        except expected:
            self.report(request_type, name, started, None)
            raise
        except EarmarkError as error:
            self.report(request_type, name, started, error)
            raise
        problem = check(answer)
        if problem is not None:
            failure = UnexpectedAnswer(problem)
        self.report(request_type, name, started, failure)
        if failure is not None:
            raise failure
        return answer

    def report(
        self, request_type: str, name: str, started: float, exception: Exception | None
    ) -> None:
        elapsed_ms = (self.clock() - started) * 1000
        context: dict[str, Any] = {}
        self.fire(
            request_type=request_type,
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=exception,
            context=context,
        )
