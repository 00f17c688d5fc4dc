"""The durable record behind one small interface, so one flusher serves every store.

The flusher turns stream entries into ``Event`` values (``store.events``) and hands a
batch to ``Ledger.persist``; everything that decides *what* a batch changes (bucket sums,
reservation states) lives in ``store.folding`` as plain functions, so the PostgreSQL
(``earmark.store.postgres``) and SQLite (``earmark.store.sqlite``) stores only decide
*how* to write it. ``open_ledger(url)`` picks the store from the URL: ``postgresql://...``
or ``sqlite:///path/to/file.db``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal, Protocol

from earmark.apikeys import ApiKey
from earmark.errors import LedgerError
from earmark.models import LedgerEntry, StockLevel
from earmark.store.events import (
    BUCKETS,
    COLUMN_FIELDS,
    Event,
    EventKey,
    ledger_entry,
    level_of,
    split_stream_id,
)
from earmark.store.folding import (
    ReservationRecord,
    Snapshot,
    StockChange,
    fold_reservations,
    fold_stock,
    reservation_ids,
)
from earmark.store.pages import (
    CURSOR_LENGTH_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    PAGE_TYPES_MAX,
    Page,
    PageQuery,
    decode_cursor,
    encode_cursor,
    ms_since,
    page_filter,
    page_of,
    time_of_ms,
)

Dialect = Literal["postgres", "sqlite"]


class Ledger(Protocol):
    """A durable record store. Every method may raise ``LedgerUnavailable`` (retry later)."""

    dialect: Dialect

    async def migrate(self) -> list[int]:
        """Applies the schema migrations not yet applied; returns their versions."""
        ...

    async def bind_store(self, prefix: str, partitions: int) -> None:
        """Records which store this is; ``LedgerMismatch`` if it already records another."""
        ...

    async def store_meta(self) -> dict[str, str]: ...

    async def set_meta(self, values: Mapping[str, str]) -> None: ...

    async def persist(self, events: Sequence[Event]) -> int:
        """In one transaction: inserts the events not yet recorded, applies the deltas of
        those (and only those) to stock_levels and folds them into reservations.
        Returns how many were new."""
        ...

    async def has_stock(self) -> bool:
        """True once any stock level is recorded: a Redis without markers must then be
        rebuilt, never initialised empty."""
        ...

    async def stock_levels(self) -> list[StockLevel]: ...

    async def events(self, after: EventKey | None, limit: int) -> list[Event]:
        """Ledger rows in key order, after ``after`` (None: from the start)."""
        ...

    async def page(self, query: PageQuery) -> Page:
        """One page of the rows that pass the query's filters, in key order (keyset
        pagination: ``Page.next_after`` goes into the next query's ``after``)."""
        ...

    async def reservation(self, reservation_id: str) -> ReservationRecord | None: ...

    async def snapshot(self, partitions: int) -> Snapshot:
        """Stock, committed reservations and the newest stream id of each of the
        ``partitions`` in one consistent view, after every flush in progress committed."""
        ...

    async def newest_event_ids(self, partitions: int) -> dict[int, tuple[int, int]]:
        """The newest recorded event id (stream ms, seq) per partition; a partition with
        none recorded is absent. A Redis whose stream never generated the newest id of its
        partition lacks writes the record holds (``durable.fence``)."""
        ...

    async def create_api_key(self, key: ApiKey) -> bool:
        """Stores a new key; False when one of that name exists already."""
        ...

    async def api_keys(self) -> list[ApiKey]:
        """Every key, by name."""
        ...

    async def revoke_api_key(self, name: str) -> bool:
        """Removes the key; False when there was none of that name."""
        ...

    async def mark_holds_lost(self, at_ms: int) -> int:
        """Parts still held become expired (Redis lost them); returns reservations changed."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    """The numbered SQL files shipped in ``earmark/store/migrations/<dialect>``, in order."""
    root = resources.files("earmark.store") / "migrations" / dialect
    found = []
    for entry in root.iterdir():
        if entry.name.endswith(".sql"):
            number, _, _ = entry.name.partition("_")
            found.append(Migration(int(number), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise LedgerError(f"{dialect} migrations are not numbered 1..n: {[m.name for m in found]}")
    return found


def open_ledger(url: str) -> Ledger:
    """A ledger for ``url`` (nothing is connected until first use).

    ``postgresql://user@host/db`` (or ``postgres://``): asyncpg; ``sqlite:///path.db``
    (``sqlite:///:memory:`` for a throwaway one): the stdlib sqlite3 module.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from earmark.store.postgres import PostgresLedger

        return PostgresLedger(url)
    if url.startswith("sqlite://"):
        from earmark.store.sqlite import SqliteLedger

        return SqliteLedger.from_url(url)
    raise ValueError(f"unsupported ledger URL {url!r}: use postgresql://... or sqlite:///path")


async def every_event(ledger: Ledger, query: PageQuery) -> AsyncIterator[Event]:
    """Every event ``query`` matches, in event-id order, read a page (``query.limit``
    rows) at a time from ``query.after`` on."""
    after = query.after
    while True:
        page = await ledger.page(replace(query, after=after))
        for event in page.events:
            yield event
        if page.next_after is None:
            return
        after = page.next_after


async def migrate(url: str) -> list[int]:
    """Brings the schema at ``url`` up to date (safe at every start-up, and concurrently);
    returns the versions applied now. ``earmark migrate`` calls this."""
    ledger = open_ledger(url)
    try:
        return await ledger.migrate()
    finally:
        await ledger.close()


__all__ = [
    "BUCKETS",
    "COLUMN_FIELDS",
    "CURSOR_LENGTH_MAX",
    "PAGE_LIMIT_DEFAULT",
    "PAGE_LIMIT_MAX",
    "PAGE_TYPES_MAX",
    "Dialect",
    "Event",
    "EventKey",
    "Ledger",
    "LedgerEntry",
    "Migration",
    "Page",
    "PageQuery",
    "ReservationRecord",
    "Snapshot",
    "StockChange",
    "decode_cursor",
    "encode_cursor",
    "every_event",
    "fold_reservations",
    "fold_stock",
    "ledger_entry",
    "level_of",
    "migrate",
    "migrations",
    "ms_since",
    "open_ledger",
    "page_filter",
    "page_of",
    "reservation_ids",
    "split_stream_id",
    "time_of_ms",
]
