"""Delivery against real receivers (HTTP servers on loopback ports), on both stores, with
the schedule on a fake clock: no test sleeps through a retry delay.

Every receiver checks the signature of what it got with the ``standardwebhooks``
reference library."""

from __future__ import annotations

from typing import Any

import standardwebhooks

from earmark.store.ledger import Ledger
from earmark.store.webhooks import AttemptRow, EndpointRow
from earmark.webhooks import endpoints
from earmark.webhooks.schedule import SVIX_SCHEDULE_SECONDS
from earmark.webhooks.service import WebhookService
from tests.support.receivers import Received, Receiver, Reply, always, failing_first
from tests.support.webhooks import FakeClock, Writer


async def subscribe(svc: WebhookService, clock: FakeClock, url: str, *events: str) -> EndpointRow:
    return await endpoints.create(svc.store, svc.config, url, events or ("*",), clock=clock)


def verified(secret: str, request: Received) -> Any:
    """The event, as the reference library verifies it."""
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


async def attempts_of(svc: WebhookService, endpoint_id: str) -> list[AttemptRow]:
    return list(reversed(await svc.store.attempts(endpoint_id, None, 1_000)))


async def status_of(svc: WebhookService, message_id: str) -> str:
    return next(m.status for m in await svc.store.messages() if m.id == message_id)


async def test_a_receiver_failing_the_first_attempts_gets_the_message_on_the_schedule(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(failing_first(3))
    svc = services()
    ep = await subscribe(svc, clock, receiver.url, "adjustment.received")
    await Writer(record).receipts(1)
    first = await svc.run_once()
    assert [a.outcome for a in first.attempts] == ["failed"]
    while await status_of(svc, first.attempts[0].message_id) == "pending":
        due = min(m.next_attempt_at_ms for m in await svc.store.messages())
        clock.now_ms = due - 1
        assert await svc.worker.deliver_due() == []  # not a millisecond early
        clock.now_ms = due
        await svc.worker.deliver_due()
    attempts = await attempts_of(svc, ep.id)
    assert [(a.attempt, a.status_code, a.outcome) for a in attempts] == [
        (1, 500, "failed"), (2, 500, "failed"), (3, 500, "failed"), (4, 200, "delivered")
    ]  # fmt: skip
    for a, nominal in zip(attempts[:3], SVIX_SCHEDULE_SECONDS[1:4], strict=True):
        assert a.next_attempt_at_ms is not None
        spacing = a.next_attempt_at_ms - a.attempted_at_ms
        assert 0.8 * nominal * 1000 <= spacing <= 1.2 * nominal * 1000, (a, nominal)
    got = receiver.received()
    assert len(got) == 4 and len({r.id for r in got}) == 1  # one webhook-id throughout
    assert {r.body for r in got} == {got[0].body}
    assert verified(ep.secret, got[-1])["type"] == "adjustment.received"
    endpoint = await svc.store.endpoint(ep.id)
    assert endpoint is not None and endpoint.failing_since_ms is None  # the success cleared it


async def test_a_receiver_that_times_out_is_retried_then_delivered(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(lambda _: Reply(hang=True))
    svc = services(timeout_seconds=0.3)
    ep = await subscribe(svc, clock, receiver.url, "adjustment.*")
    await Writer(record).receipts(1)
    (attempt,) = (await svc.run_once()).attempts
    assert (attempt.outcome, attempt.status_code) == ("timeout", None)
    assert 280 <= attempt.latency_ms < 2_000
    failing = await svc.store.endpoint(ep.id)
    assert failing is not None and failing.failing_since_ms == clock()
    receiver.behaviour = always(200)
    clock.advance(SVIX_SCHEDULE_SECONDS[1] * 1.21)
    (retry,) = await svc.worker.deliver_due()
    assert (retry.outcome, retry.attempt) == ("delivered", 2)
    assert receiver.ids() == [attempt.message_id, attempt.message_id]


async def test_429_with_retry_after_pauses_the_endpoint_as_asked(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(always(429, retry_after="120"))
    svc = services()
    ep = await subscribe(svc, clock, receiver.url, "adjustment.*")
    writer = Writer(record)
    await writer.receipts(1)
    (throttled,) = (await svc.run_once()).attempts
    assert (throttled.outcome, throttled.status_code) == ("throttled", 429)
    assert throttled.next_attempt_at_ms is not None
    assert throttled.next_attempt_at_ms - clock() >= 120_000
    paused = await svc.store.endpoint(ep.id)
    assert paused is not None and paused.paused_until_ms == clock() + 120_000
    receiver.behaviour = always(200)
    await writer.receipts(1)  # a new message for the paused endpoint waits too
    clock.advance(60)
    assert (await svc.run_once()).attempts == []
    clock.advance(61)
    later = (await svc.run_once()).attempts
    assert sorted(a.outcome for a in later) == ["delivered", "delivered"]
    assert len(receiver.received()) == 3


async def test_502_and_504_slow_the_endpoint_down_step_by_step(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    answers = iter([502, 504, 502, 200, 200, 200])
    receiver: Receiver = receiver_factory(lambda _: Reply(next(answers)))
    svc = services(schedule_seconds=(0, 0, 0, 0))
    ep = await subscribe(svc, clock, receiver.url, "adjustment.*")
    await Writer(record).receipts(1)
    pauses = []
    for _ in range(3):
        (attempt,) = (await svc.run_once()).attempts
        assert attempt.outcome == "throttled"
        endpoint = await svc.store.endpoint(ep.id)
        assert endpoint is not None
        pauses.append(endpoint.paused_until_ms - clock())
        clock.now_ms = endpoint.paused_until_ms
    assert pauses == [1_000, 2_000, 4_000]  # no Retry-After: the step doubles
    (delivered,) = (await svc.run_once()).attempts
    assert delivered.outcome == "delivered"
    endpoint = await svc.store.endpoint(ep.id)
    assert endpoint is not None and endpoint.throttle_ms == 0  # reset by the success


async def test_410_disables_the_endpoint_and_endpoint_disabled_is_sent(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    gone: Receiver = receiver_factory(always(410))
    watcher: Receiver = receiver_factory(always(200))
    svc = services()
    ep = await subscribe(svc, clock, gone.url, "adjustment.*")
    watch = await subscribe(svc, clock, watcher.url, "endpoint.*")
    writer = Writer(record)
    await writer.receipts(1)
    report = await svc.run_once()
    assert [(a.endpoint_id, a.outcome) for a in report.attempts] == [
        (ep.id, "gone"), (watch.id, "delivered")
    ]  # fmt: skip
    disabled = await svc.store.endpoint(ep.id)
    assert disabled is not None and (disabled.disabled, disabled.disabled_reason) == (True, "gone")
    (notice,) = watcher.received()
    event = verified(watch.secret, notice)
    assert event["type"] == "endpoint.disabled"
    assert event["data"] == {
        "endpoint_id": ep.id, "url": gone.url, "reason": "gone",
        "failing_since": event["data"]["failing_since"],
    }  # fmt: skip
    assert await status_of(svc, report.attempts[0].message_id) == "failed"
    await writer.receipts(3)
    clock.advance(3_600)
    assert (await svc.run_once()).attempts == []  # nothing more goes to it
    assert len(gone.received()) == 1


async def test_an_endpoint_failing_for_five_days_is_disabled(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    broken: Receiver = receiver_factory(always(500))
    watcher: Receiver = receiver_factory(always(200))
    svc = services()
    ep = await subscribe(svc, clock, broken.url, "adjustment.*")
    watch = await subscribe(svc, clock, watcher.url, "endpoint.disabled")
    writer = Writer(record)
    started = clock()
    for day in range(6):  # a new event every day, each attempted at once and failing
        await writer.receipts(1)
        await svc.run_once()
        endpoint = await svc.store.endpoint(ep.id)
        assert endpoint is not None and endpoint.failing_since_ms == started
        assert endpoint.disabled == (day == 5), day
        clock.advance(24 * 3600)
    notice = verified(watch.secret, watcher.received()[-1])
    assert notice["data"]["reason"] == "failing"
    assert notice["data"]["failing_since"].startswith("2025-06-15")


async def test_a_message_whose_schedule_runs_out_fails(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(always(500))
    svc = services(schedule_seconds=(0, 1, 1))
    await subscribe(svc, clock, receiver.url, "adjustment.*")
    await Writer(record).receipts(1)
    made = []
    for _ in range(4):
        made += (await svc.run_once()).attempts
        clock.advance(2)
    assert [a.attempt for a in made] == [1, 2, 3]
    assert made[-1].next_attempt_at_ms is None
    assert await status_of(svc, made[0].message_id) == "failed"


async def test_redirects_are_not_followed(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    elsewhere: Receiver = receiver_factory(always(200))
    redirecting: Receiver = receiver_factory(always(302, location=elsewhere.url))
    svc = services()
    await subscribe(svc, clock, redirecting.url, "adjustment.*")
    await Writer(record).receipts(1)
    (attempt,) = (await svc.run_once()).attempts
    assert attempt.outcome == "failed" and "redirect" in (attempt.error or "")
    assert elsewhere.received() == []


async def test_a_response_body_is_read_only_up_to_the_limit(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    """The receiver announces 8 MB and sends 8 kB: reading it all would time out."""
    clock = fake_clock
    receiver: Receiver = receiver_factory(lambda _: Reply(200, body=b"x" * 8_192, endless=True))
    svc = services(timeout_seconds=1.0)
    await subscribe(svc, clock, receiver.url, "adjustment.*")
    await Writer(record).receipts(1)
    (attempt,) = (await svc.run_once()).attempts
    assert attempt.outcome == "delivered" and attempt.latency_ms < 900


async def test_a_private_address_is_refused_at_delivery_unless_allowed(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(always(200))
    allowed = services()
    await subscribe(allowed, clock, receiver.url, "adjustment.*")
    strict = services(allow_private=False)
    await Writer(record).receipts(1)
    await strict.dispatcher.catch_up()
    (attempt,) = await strict.worker.deliver_due()
    assert attempt.outcome == "refused" and "127.0.0.1" in (attempt.error or "")
    assert receiver.received() == []


async def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(always(200))
    svc = services()
    ep = await subscribe(svc, clock, receiver.url, "adjustment.*")
    rotated = await endpoints.rotate_secret(svc.store, svc.config, ep.id, 60, clock=clock)
    writer = Writer(record)
    await writer.receipts(1)
    await svc.run_once()
    during = receiver.received()[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (ep.secret, rotated.secret):
        assert verified(secret, during)["type"] == "adjustment.received"
    clock.advance(61)
    await writer.receipts(1)
    await svc.run_once()
    after = receiver.received()[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verified(rotated.secret, after)["type"] == "adjustment.received"
    try:
        verified(ep.secret, after)
    except standardwebhooks.WebhookVerificationError:
        pass
    else:
        raise AssertionError("the old secret still verified after the grace period")


async def test_replay_by_seq_re_sends_the_same_messages_however_old(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(always(200))
    svc = services(coalesce=False)  # every stock.changed goes: the replay is exact
    writer = Writer(record)
    await writer.receipts(2, sku="OLD")  # recorded before the endpoint existed
    ep = await subscribe(svc, clock, receiver.url, "stock.changed", "adjustment.received")
    await writer.receipts(3)
    await svc.run_once()
    first = {r.id: r.body for r in receiver.received()}
    assert len(first) == 6
    replay = await endpoints.replay(svc.store, ep.id, after_seq=3, clock=clock)
    assert (replay.after_seq, replay.until_seq) == (3, 5)
    await svc.run_once()
    again = receiver.received()[6:]
    assert len(again) == 4  # record_seq 4 and 5, two types each
    assert all(first[r.id] == r.body for r in again)  # same ids, same bodies
    done = await svc.store.replay(replay.id)
    assert done is not None and done.finished_at_ms is not None and done.messages == 4
    # the events from before the endpoint, with the levels they left
    await endpoints.replay(svc.store, ep.id, after_seq=0, clock=clock)
    await svc.run_once()
    old = [verified(ep.secret, r)["data"] for r in receiver.received()[10:]]
    levels = sorted((d["record_seq"], d["sku"], d["seq"], d["on_hand"]) for d in old if "seq" in d)
    assert levels == [(1, "OLD", 1, 1), (2, "OLD", 2, 2), (3, "A", 1, 1), (4, "A", 2, 2),
                      (5, "A", 3, 3)]  # fmt: skip


async def test_replay_since_a_time(
    record: Ledger, fake_clock: FakeClock, receiver_factory: Any, services: Any
) -> None:
    clock = fake_clock
    receiver: Receiver = receiver_factory(always(200))
    svc = services()
    ep = await subscribe(svc, clock, receiver.url, "adjustment.received")
    writer = Writer(record)
    for at in (1_000, 2_000, 3_000):
        await writer.write(writer.event("received", at_ms=at))
    await svc.run_once()
    await endpoints.replay(svc.store, ep.id, since_ms=2_000, clock=clock)
    await svc.run_once()
    replayed = [verified(ep.secret, r)["timestamp"] for r in receiver.received()[3:]]
    assert replayed == ["1970-01-01T00:00:02.000Z", "1970-01-01T00:00:03.000Z"]
