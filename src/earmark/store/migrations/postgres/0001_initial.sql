-- earmark's durable record (PostgreSQL). Applied once by earmark.ledger.migrate, which
-- records version 1 in schema_version in the same transaction.

-- One row per engine event, written by the flusher from the partition streams. The key
-- (partition, stream_ms, stream_seq) is the Redis stream entry id: a replayed event hits
-- the primary key and is never inserted (or applied) twice.
CREATE TABLE ledger (
    partition       integer     NOT NULL,
    stream_ms       bigint      NOT NULL,
    stream_seq      bigint      NOT NULL,
    type            text        NOT NULL,
    sku             text        NOT NULL,
    location        text        NOT NULL,
    qty             bigint      NOT NULL,
    reservation_id  text,
    channel         text        NOT NULL DEFAULT '',
    actor           text        NOT NULL DEFAULT '',
    reason          text,
    idempotency_key text,
    deltas          jsonb       NOT NULL,            -- bucket -> signed units
    flags           jsonb       NOT NULL DEFAULT '{}', -- every other event field (forced, exposure, expires_at, ...)
    occurred_at     timestamptz NOT NULL,            -- Redis server time of the event
    flushed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, stream_ms, stream_seq)
);
CREATE INDEX ledger_sku_location ON ledger (sku, location);
CREATE INDEX ledger_reservation ON ledger (reservation_id) WHERE reservation_id IS NOT NULL;

-- Every bucket of one (sku, location): the sum of the deltas of its ledger rows.
CREATE TABLE stock_levels (
    sku         text        NOT NULL,
    location    text        NOT NULL,
    on_hand     bigint      NOT NULL DEFAULT 0,
    reserved    bigint      NOT NULL DEFAULT 0,
    committed   bigint      NOT NULL DEFAULT 0,
    in_transit  bigint      NOT NULL DEFAULT 0,
    returned    bigint      NOT NULL DEFAULT 0,
    damaged     bigint      NOT NULL DEFAULT 0,
    written_off bigint      NOT NULL DEFAULT 0,
    inbound     bigint      NOT NULL DEFAULT 0,
    version     bigint      NOT NULL DEFAULT 0,  -- events that changed a bucket
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location)
);

-- One row per reservation, folded from its events. parts holds each partition's own
-- status; status combines them with the engine's rules (earmark.results.combined_status).
CREATE TABLE reservations (
    id           text        PRIMARY KEY,
    status       text        NOT NULL DEFAULT 'held',
    lines        jsonb       NOT NULL DEFAULT '[]',
    parts        jsonb       NOT NULL DEFAULT '{}',
    open_parts   integer     NOT NULL DEFAULT 0,  -- parts still held (for rebuild)
    channel      text        NOT NULL DEFAULT '',
    created_at   timestamptz,
    expires_at   timestamptz,
    committed_at timestamptz,
    released_at  timestamptz,
    expired_at   timestamptz,
    shipped_at   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_status ON reservations (status);
CREATE INDEX reservations_open ON reservations (id) WHERE open_parts > 0;

-- Facts about the store this record belongs to (key prefix, partition count, last rebuild).
CREATE TABLE store_meta (
    key        text        PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
