"""``earmark keys create | list | revoke``: named, scoped API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys

from earmark import apikeys
from earmark.cli.common import (
    Subparsers,
    table,
)
from earmark.durable import service as durable
from earmark.settings import Settings


def add_keys(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="create, list or revoke API keys",
        description="Manage the API keys the HTTP API accepts as 'Authorization: Bearer'. "
        "They are kept in the durable record (EARMARK_DATABASE_URL): they survive a Redis "
        "loss, and an embedded server reads them too. Only a SHA-256 hash of each token is "
        "stored.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a key and print its token once",
        description="Create an API key NAME (the actor recorded on the events it writes) "
        "and print its token. The token is shown only this once.",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--scopes",
        required=True,
        help=f"comma-separated subset of {','.join(apikeys.SCOPES)}: read (GET), reserve "
        "(reserve, commit, release, extend), stock (receipts, adjustments, ship)",
    )
    create.set_defaults(handler=run_keys_create)
    listing = actions.add_parser(
        "list", help="list keys", description="List every key: name, scopes, creation time."
    )
    listing.set_defaults(handler=run_keys_list)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a key",
        description="Revoke the key NAME: servers refuse it within EARMARK_API_KEY_CACHE_SECONDS.",
    )
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=run_keys_revoke)


def run_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    scopes = apikeys.parse_scopes(args.scopes)
    token, key = asyncio.run(durable.create_api_key(settings.database_url, args.name, scopes))
    print(token)
    print(
        f"created API key {key.name!r} with scopes {','.join(sorted(key.scopes))}. "
        "This token is shown once and only its hash is stored: keep it now.",
        file=sys.stderr,
    )
    return 0


def run_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = asyncio.run(durable.api_keys_at(settings.database_url))
    if not keys:
        print("no API keys: `earmark serve` runs with auth off, and only on a loopback address")
        return 0
    rows = [
        (k.name, ",".join(sorted(k.scopes)), k.created_at.isoformat(timespec="seconds"))
        for k in keys
    ]
    print("\n".join(table(("NAME", "SCOPES", "CREATED"), rows)))
    return 0


def run_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    removed = asyncio.run(durable.revoke_api_key(settings.database_url, args.name))
    if not removed:
        print(f"no API key named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked API key {args.name!r}")
    return 0
