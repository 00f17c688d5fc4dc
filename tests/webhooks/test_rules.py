"""The pure rules: what a ledger row becomes, coalescing, filters, the schedule, URLs."""

from __future__ import annotations

import email.utils
import random

import orjson
import pytest

from earmark.errors import InvalidRequest, InvalidWebhookUrl
from earmark.store.events import Event
from earmark.store.webhooks import (
    EndpointRow,
    NewMessage,
    PendingKeyed,
    RecordedEvent,
    StockState,
    coalesce,
)
from earmark.webhooks.planning import PAYLOAD_BYTES_MAX, message_id, payload, plan
from earmark.webhooks.schedule import (
    RETRY_AFTER_MS_MAX,
    SVIX_SCHEDULE_SECONDS,
    RetryPolicy,
    parse_retry_after,
    parse_schedule,
)
from earmark.webhooks.types import matches, type_of_event, validate_filters
from earmark.webhooks.urls import check_destination, parse_url


def endpoint(events: tuple[str, ...] = ("*",), start_seq: int = 0, id: str = "ep_1") -> EndpointRow:
    return EndpointRow(
        id=id, url="http://x", events=events, description="", secret="whsec_x",
        previous_secret=None, previous_secret_expires_at_ms=None, disabled=False,
        disabled_reason=None, disabled_at_ms=None, start_seq=start_seq, failing_since_ms=None,
        paused_until_ms=0, throttle_ms=0, created_at_ms=0, updated_at_ms=0,
    )  # fmt: skip


def recorded(seq: int, type: str, deltas: dict[str, int], **kw: object) -> RecordedEvent:
    event = Event(
        partition=0, stream_ms=1_000 + seq, stream_seq=0, type=type, sku="A",
        location="default", qty=1, deltas=deltas, occurred_at_ms=1_000 + seq,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return RecordedEvent(event, seq, 5_000 + seq)


def bodies(messages: list[NewMessage], webhook_type: str) -> list[dict[str, object]]:
    return [orjson.loads(m.payload)["data"] for m in messages if m.type == webhook_type]


def test_stock_changed_carries_the_level_after_each_event_and_its_version_as_seq() -> None:
    states = {("A", "default"): StockState({**StockState().buckets, "on_hand": 2}, 5)}
    events = [
        recorded(1, "reserved", {"reserved": 1}, reservation_id="rsv_1"),
        recorded(2, "committed", {"reserved": -1, "committed": 1}, reservation_id="rsv_1"),
        recorded(3, "extended", {}, reservation_id="rsv_1"),
    ]
    messages = plan(events, states, [endpoint()])
    changed = bodies(messages, "stock.changed")
    assert [(c["seq"], c["on_hand"], c["reserved"], c["committed"], c["available"])
            for c in changed] == [(6, 2, 1, 0, 1), (7, 2, 0, 1, 1)]  # fmt: skip
    assert states[("A", "default")].version == 7  # advanced for the next batch
    assert [m.type for m in messages] == [
        "stock.changed", "reservation.held", "stock.changed", "reservation.committed",
        "reservation.extended",
    ]  # fmt: skip
    held = bodies(messages, "reservation.held")[0]
    assert (held["reservation_id"], held["event_type"], held["record_seq"]) == (
        "rsv_1",
        "reserved",
        1,
    )
    whole = orjson.loads(messages[0].payload)
    assert set(whole) == {"type", "timestamp", "data"}
    assert whole["timestamp"] == "1970-01-01T00:00:01.001Z"


def test_stock_out_and_back_fire_once_per_crossing_of_zero() -> None:
    states: dict[tuple[str, str], StockState] = {}
    moves = [{"on_hand": 2}, {"reserved": 1}, {"reserved": 1}, {"on_hand": 0}, {"reserved": -1},
             {"reserved": -1}, {"on_hand": -2}, {"on_hand": 1}]  # fmt: skip
    events = [recorded(i + 1, "adjusted", d) for i, d in enumerate(moves)]
    messages = plan(events, states, [endpoint()])
    crossings = [(m.type, m.record_seq) for m in messages if m.type in ("stock.out", "stock.back")]
    # available: 2 1 0 0 1 2 0 1
    assert crossings == [("stock.back", 1), ("stock.out", 3), ("stock.back", 5),
                         ("stock.out", 7), ("stock.back", 8)]  # fmt: skip


def test_filters_start_seq_and_replay() -> None:
    events = [recorded(i, "received", {"on_hand": 1}) for i in (1, 2, 3)]
    stock_only = endpoint(("stock.changed",), start_seq=2, id="ep_s")
    every = endpoint(("adjustment.*", "endpoint.disabled"), id="ep_a")
    messages = plan(events, {}, [stock_only, every])
    assert sorted((m.endpoint_id, m.type, m.record_seq) for m in messages) == [
        ("ep_a", "adjustment.received", 1), ("ep_a", "adjustment.received", 2),
        ("ep_a", "adjustment.received", 3), ("ep_s", "stock.changed", 3),
    ]  # fmt: skip
    again = plan(events, {}, [stock_only], replay=True, since_ms=1_002)
    assert [(m.type, m.record_seq) for m in again] == [("stock.changed", 2), ("stock.changed", 3)]
    first = next(m for m in messages if m.endpoint_id == "ep_s")
    replayed = next(m for m in again if m.record_seq == 3)
    assert (first.id, first.payload) == (replayed.id, replayed.payload)  # same message


def test_a_type_not_named_yet_is_still_announced() -> None:
    messages = plan([recorded(1, "drop_opened", {})], {}, [endpoint()])
    assert [m.type for m in messages] == ["ledger.drop_opened"]
    assert type_of_event("transfer_out") == "transfer.sent"


def test_message_ids_are_stable_and_distinct() -> None:
    one = message_id("ep_1", "0/1-0", "stock.changed")
    assert one == message_id("ep_1", "0/1-0", "stock.changed")
    assert one.startswith("msg_") and len(one) == 30
    assert len({one, message_id("ep_2", "0/1-0", "stock.changed"),
                message_id("ep_1", "0/1-0", "stock.out")}) == 3  # fmt: skip


def test_payloads_stay_under_20_kb() -> None:
    data = {"attributes": {"note": "x" * 30_000}, "sku": "A"}
    body = payload("adjustment.adjusted", 0, data)
    assert len(body.encode()) < PAYLOAD_BYTES_MAX
    assert orjson.loads(body)["data"]["attributes_omitted"] is True


def keyed(id: str, seq: int, record_seq: int = 0, endpoint_id: str = "ep_1") -> NewMessage:
    return NewMessage(
        id=id, endpoint_id=endpoint_id, type="stock.changed", record_seq=record_seq,
        event_id=None, payload="{}", recorded_at_ms=0, coalesce_key="A default", stock_seq=seq,
    )  # fmt: skip


def test_coalescing_keeps_the_newest_state_and_its_place_in_the_schedule() -> None:
    batch = [keyed("m3", 3), keyed("m5", 5), keyed("o1", 9, endpoint_id="ep_2")]
    waiting = [PendingKeyed("m2", "ep_1", "A default", 2, attempts=3, next_attempt_at_ms=9_000)]
    result = coalesce(batch, waiting, 1_000, enabled=True)
    assert [(m.id, attempts, due) for m, attempts, due in result.insert] == [
        ("m5", 3, 9_000),
        ("o1", 0, 1_000),
    ]
    assert result.superseded == [("m2", "m5")]
    assert result.dropped == 1  # m3
    # a replayed older state does not replace a newer one still waiting
    older = coalesce([keyed("m1", 1)], waiting, 1_000, enabled=True)
    assert (older.insert, older.dropped) == ([], 1)
    off = coalesce(batch, waiting, 1_000, enabled=False)
    assert len(off.insert) == 3 and not off.superseded


def test_filters_are_validated() -> None:
    assert validate_filters(["stock.changed", "reservation.*", "stock.changed"]) == (
        "stock.changed", "reservation.*"
    )  # fmt: skip
    for bad in ([], ["stock"], ["reservation.typo"], ["nope.*"], ["x" * 65]):
        with pytest.raises(InvalidRequest):
            validate_filters(bad)
    assert matches(("reservation.*",), "reservation.held")
    assert matches(("*",), "endpoint.disabled")
    assert not matches(("stock.changed",), "stock.out")


def test_the_schedule_is_svixs_with_jitter() -> None:
    policy = RetryPolicy(rng=random.Random(1))
    now = 0
    delays = []
    for done in range(1, 9):
        at = policy.next_attempt_at(done, now)
        delays.append(None if at is None else at - now)
    for delay, nominal in zip(delays[:7], SVIX_SCHEDULE_SECONDS[1:], strict=True):
        assert delay is not None and 0.8 * nominal * 1000 <= delay <= 1.2 * nominal * 1000
    assert delays[7] is None  # eight attempts, then it gives up
    assert policy.next_attempt_at(1, now, retry_after_ms=60_000) == 60_000  # Retry-After wins
    assert policy.throttle_step(0) == 1_000 and policy.throttle_step(1_000) == 2_000
    assert policy.throttle_step(10**9) == 300_000
    assert parse_schedule("0, 1,2.5") == (0.0, 1.0, 2.5)
    with pytest.raises(ValueError, match="schedule"):
        parse_schedule("0,-1")


def test_retry_after_as_seconds_or_a_date_capped() -> None:
    now = 1_700_000_000_000
    assert parse_retry_after("7", now) == 7_000
    date = email.utils.formatdate((now + 90_000) / 1000, usegmt=True)
    assert parse_retry_after(date, now) == 90_000
    assert parse_retry_after("999999999", now) == RETRY_AFTER_MS_MAX
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "http://", "http://user:pw@example.com/", "http://example.com/#f",
     "http://example.com:99999/", "file:///etc/passwd", "http://ex ample.com/"],
)  # fmt: skip
def test_urls_must_be_plain_http_or_https(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/", "http://localhost/", "http://10.1.2.3/", "http://192.168.0.1/",
     "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/", "http://0.0.0.0/",
     "http://[::1]/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/",
     "http://app.localhost/"],
)  # fmt: skip
async def test_private_loopback_and_link_local_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=r"loopback|refused"):
        await check_destination(url, allow_private=False, require_resolved=False)
    await check_destination(url, allow_private=True, require_resolved=False)


async def test_public_addresses_pass_and_unresolvable_names_only_at_creation() -> None:
    await check_destination(
        "https://93.184.215.14/hook", allow_private=False, require_resolved=True
    )
    name = "https://no-such-host.invalid/hook"
    await check_destination(name, allow_private=False, require_resolved=False)
    with pytest.raises(InvalidWebhookUrl, match="does not resolve"):
        await check_destination(name, allow_private=False, require_resolved=True)
