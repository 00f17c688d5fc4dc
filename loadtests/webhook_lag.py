"""Webhook delivery lag during a launch drill: from ledger row to receiver.

    python -m loadtests.webhook_lag [--embedded] [drill options: --users --run-time ...]
                                    [--receiver-delay-ms MS] [--json PATH]

Runs the drill of ``loadtests.drill.run_local`` (throwaway redis-server and PostgreSQL,
or ``--embedded``: the in-process store and SQLite) with ``earmark serve`` running the
flusher and the webhook worker in-process, and one receiver on a loopback port
subscribed to every event (``*``). When the drill ends it waits for every webhook to be
delivered, then joins what the receiver got (by ``webhook-id``) with the record:

- **record -> receiver**: the ledger row's ``flushed_at`` (the flusher's transaction, the
  moment the change becomes part of the durable record and so eligible for a webhook) to
  the moment the receiver had read the request body; the first delivery of each message.
- **change -> receiver**: the event's ``occurred_at`` (Redis time of the change) to the
  same moment, which adds the flusher's own lag.
- the first split in two: ledger row -> message (the dispatcher) and message -> receiver
  (the worker).

Every request is verified with ``earmark.webhooks.verify``. Prints p50 / p90 / p99 / max
per measure and per type group; exits with the drill's code (0 PASS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.support.receivers import Receiver, Reply

from earmark.store.ledger import open_ledger
from earmark.store.webhooks import MessageRow, webhook_store
from earmark.webhooks import verify
from loadtests.drill import run_local
from loadtests.drill.client import HttpApi, seed

DRAIN_SECONDS_MAX = 300.0


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--receiver-delay-ms", type=float, default=0.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    own, rest = parser.parse_known_args(argv)
    return own, run_local.parse_args(rest)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else []

    def at(p: int) -> float:
        return ordered[0] if not cuts else cuts[p - 1]

    return {
        "n": len(ordered),
        "p50_ms": round(at(50), 1),
        "p90_ms": round(at(90), 1),
        "p99_ms": round(at(99), 1),
        "max_ms": round(ordered[-1], 1),
    }


def subscribe(url: str, receiver: Receiver) -> dict[str, Any]:
    body = json.dumps({"url": receiver.url, "events": ["*"], "description": "lag"}).encode()
    request = urllib.request.Request(
        f"{url}/v1/webhooks/endpoints",
        body,
        {"Content-Type": "application/json", "Idempotency-Key": f"lag-{uuid.uuid4().hex}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created: dict[str, Any] = json.loads(response.read())
    return created


async def drained(database_url: str, endpoint_id: str) -> list[MessageRow]:
    """Waits until nothing is pending or undispatched; returns the endpoint's messages."""
    ledger = open_ledger(database_url)
    try:
        store = webhook_store(ledger)
        deadline = time.monotonic() + DRAIN_SECONDS_MAX
        while True:
            backlog = await store.backlog()
            if backlog.messages == 0 and backlog.dispatch_behind == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"webhooks still pending after {DRAIN_SECONDS_MAX:g}s")
            await asyncio.sleep(0.5)
        return await store.messages(endpoint_id)
    finally:
        await ledger.close()


async def occurred(database_url: str) -> dict[str, int]:
    """event id -> occurred_at (ms), from the ledger."""
    ledger = open_ledger(database_url)
    try:
        found: dict[str, int] = {}
        after = None
        while page := await ledger.events(after, 5_000):
            found |= {e.event_id: e.occurred_at_ms for e in page}
            after = page[-1].key
        return found
    finally:
        await ledger.close()


def measure(
    receiver: Receiver, secret: str, messages: list[MessageRow], occurred_at: dict[str, int]
) -> dict[str, Any]:
    by_id = {m.id: m for m in messages}
    first: dict[str, float] = {}
    types: Counter[str] = Counter()
    for request in receiver.received():
        verify(secret, request.headers, request.body)
        first.setdefault(request.id, request.at)
    record_ms, change_ms, dispatch_ms, send_ms = [], [], [], []
    groups: dict[str, list[float]] = defaultdict(list)
    for message_id, at in first.items():
        message = by_id[message_id]
        lag = at * 1000 - message.recorded_at_ms
        record_ms.append(lag)
        dispatch_ms.append(message.created_at_ms - message.recorded_at_ms)
        send_ms.append(at * 1000 - message.created_at_ms)
        groups[message.type.partition(".")[0]].append(lag)
        types[message.type] += 1
        if message.event_id in occurred_at:
            change_ms.append(at * 1000 - occurred_at[message.event_id])
    statuses = Counter(m.status for m in messages)
    return {
        "messages": dict(statuses),
        "received": len(receiver.received()),
        "distinct": len(first),
        "types": dict(types.most_common()),
        "record_to_receiver": percentiles(record_ms),
        "change_to_receiver": percentiles(change_ms),
        "record_to_message": percentiles(dispatch_ms),
        "message_to_receiver": percentiles(send_ms),
        "record_to_receiver_by_group": {g: percentiles(v) for g, v in sorted(groups.items())},
    }


def report(figures: dict[str, Any]) -> None:
    def line(name: str, p: dict[str, float]) -> str:
        if not p.get("n"):
            return f"  {name:<26} (none)"
        return (
            f"  {name:<26} n={p['n']:<6} p50 {p['p50_ms']:>7.1f} ms   p90 {p['p90_ms']:>7.1f} ms"
            f"   p99 {p['p99_ms']:>7.1f} ms   max {p['max_ms']:>7.1f} ms"
        )

    print("\n== webhook delivery lag ==")
    print(f"  backend: {figures['backend']}")
    print(f"  messages by status: {figures['messages']}  (coalesced: replaced by a newer state)")
    print(f"  requests received: {figures['received']} ({figures['distinct']} distinct ids)")
    print(line("ledger row -> receiver", figures["record_to_receiver"]))
    print(line("change -> receiver", figures["change_to_receiver"]))
    print(line("  ledger row -> message", figures["record_to_message"]))
    print(line("  message -> receiver", figures["message_to_receiver"]))
    for group, p in figures["record_to_receiver_by_group"].items():
        print(line(f"  {group}.*", p))


def main(argv: list[str] | None = None) -> int:
    own, args = parse_args(argv)
    scenario = run_local.scenario_of(args)
    out = run_local.report_dir(args.out)
    delay = own.receiver_delay_ms / 1000
    with ExitStack() as stack:
        receiver = stack.enter_context(Receiver(lambda _: Reply(200, delay_seconds=delay)))
        backend = run_local.start_backend(stack, args.embedded, out)
        extra = {"EARMARK_WEBHOOKS_ALLOW_PRIVATE": "true"}
        url = run_local.start_server(stack, backend, args, out, extra)
        endpoint = subscribe(url, receiver)
        seed(HttpApi(url), scenario.sku_names, scenario.stock, scenario.location)
        print(f"webhook_lag: serve at {url} on {backend.description}; receiver {receiver.url}")
        run_seconds = run_local.timespan_seconds(args.run_time)
        command = run_local.locust_command(args, scenario, url, backend, out)
        code = run_local.run_locust(
            stack, command, run_local.locust_bound_seconds(args, run_seconds)
        )
        messages = asyncio.run(drained(backend.database_url, endpoint["id"]))
        occurred_at = asyncio.run(occurred(backend.database_url))
        figures = {
            "backend": "embedded + SQLite" if args.embedded else "redis-server + PostgreSQL",
            "users": args.users,
            "run_time": args.run_time,
            "receiver_delay_ms": own.receiver_delay_ms,
            **measure(receiver, endpoint["secret"], messages, occurred_at),
        }
    report(figures)
    if own.json is not None:
        own.json.write_text(json.dumps(figures, indent=2))
    print(f"webhook_lag: the drill exited {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
