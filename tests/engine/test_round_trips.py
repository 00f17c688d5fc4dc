"""One round trip per transition: commit, release, extend and ship of a one-partition
reservation the engine knows (it reserved or read it) send only their script; a miss
reads the part first, and a part gone since is refused with nothing bound."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from earmark import Engine
from earmark.engine.steps import Call
from earmark.errors import ReservationNotFound
from tests.support.backends import Backend


def counting(engine: Engine) -> list[str]:
    """The script (or command) names of every step the engine runs from now on."""
    steps: list[str] = []
    run = engine.run

    def checked(op: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        try:
            step = next(op)
            while True:
                steps.append(step.script if isinstance(step, Call) else type(step).__name__)
                step = op.send((yield step))
        except StopIteration as stop:
            return stop.value

    engine.run = lambda op: run(checked(op))  # type: ignore[method-assign]
    return steps


@pytest.mark.parametrize("backend", ["fake", "redis"], indirect=True)
def test_transitions_of_a_known_reservation_take_one_round_trip(backend: Backend) -> None:
    engine = backend.engine()
    engine.receive("A", 10)
    held = engine.reserve([("A", 2)], idempotency_key="r")
    steps = counting(engine)
    engine.extend(held.id, 120, idempotency_key="e")
    engine.commit(held.id, idempotency_key="c")
    engine.ship(held.id, idempotency_key="s")
    assert steps == ["extend_reservation", "commit_reservation", "ship_reservation"]
    other = engine.reserve([("A", 1)], idempotency_key="o")
    steps.clear()
    engine.release(other.id)
    assert steps == ["release_reservation"]


@pytest.mark.parametrize("backend", ["fake", "redis"], indirect=True)
def test_an_engine_that_does_not_know_it_reads_first_then_remembers(backend: Backend) -> None:
    first = backend.engine()
    first.receive("B", 5)
    held = first.reserve([("B", 1)], idempotency_key="r")
    second = backend.engine(prefix=first.config.prefix)
    steps = counting(second)
    second.extend(held.id, 60)
    second.commit(held.id)
    assert steps == ["read_reservation", "extend_reservation", "commit_reservation"]
    assert second.get_reservation(held.id).status == "committed"


def test_a_known_reservation_gone_since_is_not_found_and_binds_nothing(
    fake_engine: Engine,
) -> None:
    engine = fake_engine
    engine.receive("C", 5)
    held = engine.reserve([("C", 1)], idempotency_key="r")
    engine.client.delete(engine.keys.reservation(engine.partition_of("C"), held.id))
    with pytest.raises(ReservationNotFound):
        engine.commit(held.id, idempotency_key="k")
    # The key binds nothing: another request may use it.
    again = engine.reserve([("C", 1)], idempotency_key="k")
    assert again.status == "held"
