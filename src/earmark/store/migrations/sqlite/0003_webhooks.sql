-- Outbound webhooks (docs/webhooks.md), as in the PostgreSQL schema. SQLite has one
-- writer at a time (BEGIN IMMEDIATE), so SqliteLedger.persist numbers record_seq from
-- the largest one recorded, and commit order is insertion order.

ALTER TABLE ledger ADD COLUMN record_seq INTEGER;
UPDATE ledger SET record_seq = numbered.n
FROM (SELECT partition AS p, stream_ms AS m, stream_seq AS s,
             row_number() OVER (ORDER BY partition, stream_ms, stream_seq) AS n
      FROM ledger) AS numbered
WHERE ledger.partition = numbered.p AND ledger.stream_ms = numbered.m
  AND ledger.stream_seq = numbered.s;
CREATE UNIQUE INDEX ledger_by_record_seq ON ledger (record_seq);

CREATE TABLE webhook_endpoints (
    id                            TEXT    PRIMARY KEY,
    url                           TEXT    NOT NULL,
    events                        TEXT    NOT NULL,
    description                   TEXT    NOT NULL DEFAULT '',
    secret                        TEXT    NOT NULL,
    previous_secret               TEXT,
    previous_secret_expires_at_ms INTEGER,
    disabled                      INTEGER NOT NULL DEFAULT 0,
    disabled_reason               TEXT,
    disabled_at_ms                INTEGER,
    disabled_notified             INTEGER NOT NULL DEFAULT 1,
    start_seq                     INTEGER NOT NULL,
    failing_since_ms              INTEGER,
    paused_until_ms               INTEGER NOT NULL DEFAULT 0,
    throttle_ms                   INTEGER NOT NULL DEFAULT 0,
    created_at_ms                 INTEGER NOT NULL,
    updated_at_ms                 INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE webhook_messages (
    id                 TEXT    PRIMARY KEY,
    endpoint_id        TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    type               TEXT    NOT NULL,
    record_seq         INTEGER NOT NULL DEFAULT 0,
    event_id           TEXT,
    coalesce_key       TEXT,
    stock_seq          INTEGER,
    payload            TEXT    NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'pending',
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_owner        TEXT,
    lease_until_ms     INTEGER,
    superseded_by      TEXT,
    recorded_at_ms     INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    finished_at_ms     INTEGER,
    last_error         TEXT
) WITHOUT ROWID;
CREATE INDEX webhook_messages_due ON webhook_messages (endpoint_id, next_attempt_at_ms, record_seq)
    WHERE status = 'pending';
CREATE INDEX webhook_messages_pending_by_key ON webhook_messages (endpoint_id, coalesce_key)
    WHERE status = 'pending' AND coalesce_key IS NOT NULL;
CREATE INDEX webhook_messages_by_endpoint ON webhook_messages (endpoint_id, record_seq);
CREATE INDEX webhook_messages_finished ON webhook_messages (finished_at_ms)
    WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id         TEXT    NOT NULL,
    endpoint_id        TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    type               TEXT    NOT NULL,
    record_seq         INTEGER NOT NULL,
    attempt            INTEGER NOT NULL,
    attempted_at_ms    INTEGER NOT NULL,
    status_code        INTEGER,
    latency_ms         INTEGER NOT NULL,
    outcome            TEXT    NOT NULL,
    error              TEXT,
    next_attempt_at_ms INTEGER
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (attempted_at_ms);

CREATE TABLE webhook_dispatch (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    cursor_seq    INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
INSERT INTO webhook_dispatch VALUES (1, (SELECT coalesce(max(record_seq), 0) FROM ledger), 0);

CREATE TABLE webhook_stock (
    sku         TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    on_hand     INTEGER NOT NULL DEFAULT 0,
    reserved    INTEGER NOT NULL DEFAULT 0,
    committed   INTEGER NOT NULL DEFAULT 0,
    in_transit  INTEGER NOT NULL DEFAULT 0,
    returned    INTEGER NOT NULL DEFAULT 0,
    damaged     INTEGER NOT NULL DEFAULT 0,
    written_off INTEGER NOT NULL DEFAULT 0,
    inbound     INTEGER NOT NULL DEFAULT 0,
    version     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
INSERT INTO webhook_stock
SELECT sku, location, on_hand, reserved, committed, in_transit, returned, damaged,
       written_off, inbound, version
FROM stock_levels;

CREATE TABLE webhook_replays (
    id             TEXT    PRIMARY KEY,
    endpoint_id    TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    after_seq      INTEGER NOT NULL,
    until_seq      INTEGER NOT NULL,
    since_ms       INTEGER,
    cursor_seq     INTEGER NOT NULL,
    messages       INTEGER NOT NULL DEFAULT 0,
    created_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX webhook_replays_open ON webhook_replays (created_at_ms) WHERE finished_at_ms IS NULL;

CREATE TABLE webhook_requests (
    key           TEXT    PRIMARY KEY,
    fingerprint   TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhook_requests_by_time ON webhook_requests (created_at_ms);
