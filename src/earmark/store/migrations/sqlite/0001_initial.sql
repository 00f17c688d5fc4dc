-- earmark's durable record (SQLite, the embedded default). Same tables as the PostgreSQL
-- schema; JSON is stored as text and times as integer milliseconds since the epoch
-- (columns ending in _ms). Applied once by earmark.ledger.migrate.

CREATE TABLE ledger (
    partition       INTEGER NOT NULL,
    stream_ms       INTEGER NOT NULL,
    stream_seq      INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    sku             TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    qty             INTEGER NOT NULL,
    reservation_id  TEXT,
    channel         TEXT    NOT NULL DEFAULT '',
    actor           TEXT    NOT NULL DEFAULT '',
    reason          TEXT,
    idempotency_key TEXT,
    deltas          TEXT    NOT NULL,
    flags           TEXT    NOT NULL DEFAULT '{}',
    occurred_at_ms  INTEGER NOT NULL,
    flushed_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (partition, stream_ms, stream_seq)
) WITHOUT ROWID;
CREATE INDEX ledger_sku_location ON ledger (sku, location);
CREATE INDEX ledger_reservation ON ledger (reservation_id) WHERE reservation_id IS NOT NULL;

CREATE TABLE stock_levels (
    sku           TEXT    NOT NULL,
    location      TEXT    NOT NULL,
    on_hand       INTEGER NOT NULL DEFAULT 0,
    reserved      INTEGER NOT NULL DEFAULT 0,
    committed     INTEGER NOT NULL DEFAULT 0,
    in_transit    INTEGER NOT NULL DEFAULT 0,
    returned      INTEGER NOT NULL DEFAULT 0,
    damaged       INTEGER NOT NULL DEFAULT 0,
    written_off   INTEGER NOT NULL DEFAULT 0,
    inbound       INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL DEFAULT 0,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;

CREATE TABLE reservations (
    id              TEXT    PRIMARY KEY,
    status          TEXT    NOT NULL DEFAULT 'held',
    lines           TEXT    NOT NULL DEFAULT '[]',
    parts           TEXT    NOT NULL DEFAULT '{}',
    open_parts      INTEGER NOT NULL DEFAULT 0,
    channel         TEXT    NOT NULL DEFAULT '',
    created_at_ms   INTEGER,
    expires_at_ms   INTEGER,
    committed_at_ms INTEGER,
    released_at_ms  INTEGER,
    expired_at_ms   INTEGER,
    shipped_at_ms   INTEGER,
    updated_at_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX reservations_status ON reservations (status);
CREATE INDEX reservations_open ON reservations (id) WHERE open_parts > 0;

CREATE TABLE store_meta (
    key           TEXT    PRIMARY KEY,
    value         TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
