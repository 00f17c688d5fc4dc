"""The drill's shoppers call the sidecar with ``earmark.client``; ``Timed`` reports each
call to Locust as one request event (name, response time, exception), so Locust's stats
and CSV still count every call once: expected refusals as successes, the rest as
failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loadtests.drill.timed import Timed, UnexpectedAnswer, outcome_of

from earmark import InsufficientStock, ReservationNotFound
from earmark.errors import UnexpectedResponse


class Events:
    def __init__(self) -> None:
        self.fired: list[dict[str, Any]] = []

    def fire(self, **event: Any) -> None:
        self.fired.append(event)


def ticks(*seconds: float) -> Any:
    it: Iterator[float] = iter(seconds)
    return lambda: next(it)


def test_an_answer_is_one_successful_request_with_its_time() -> None:
    events = Events()
    timed = Timed(events.fire, clock=ticks(10.0, 10.25))
    assert timed.call("POST", "/v1/reservations", lambda: "held") == "held"
    (event,) = events.fired
    assert (event["request_type"], event["name"], event["exception"]) == (
        "POST",
        "/v1/reservations",
        None,
    )
    assert event["response_time"] == pytest.approx(250.0)


def test_an_expected_refusal_is_a_success_and_is_raised_for_the_tally() -> None:
    events = Events()
    timed = Timed(events.fire, clock=ticks(1.0, 1.5))

    def sold_out() -> str:
        raise InsufficientStock("short", shortfalls=[])

    with pytest.raises(InsufficientStock):
        timed.call("POST", "/v1/reservations", sold_out, expected=(InsufficientStock,))
    (event,) = events.fired
    assert event["exception"] is None and event["response_time"] == pytest.approx(500.0)


def test_any_other_problem_is_a_failure_carrying_the_exception() -> None:
    events = Events()
    timed = Timed(events.fire, clock=ticks(0.0, 0.1))
    missing = ReservationNotFound("no such reservation")

    def send() -> str:
        raise missing

    with pytest.raises(ReservationNotFound):
        timed.call("POST", "/v1/reservations/{id}/commit", send, expected=(InsufficientStock,))
    (event,) = events.fired
    assert event["exception"] is missing and event["name"] == "/v1/reservations/{id}/commit"
    assert outcome_of(missing) == "404 reservation_not_found"
    assert outcome_of(UnexpectedResponse("x", status=502)) == "502 unexpected_response"


def test_an_answer_the_scenario_does_not_expect_is_a_failure() -> None:
    events = Events()
    timed = Timed(events.fire, clock=ticks(0.0, 0.0))
    with pytest.raises(UnexpectedAnswer, match="status released"):
        timed.call("POST", "c", lambda: "released", check=lambda s: f"status {s}")
    (event,) = events.fired
    assert isinstance(event["exception"], UnexpectedAnswer)
