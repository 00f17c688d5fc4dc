-- Outbound webhooks (docs/webhooks.md). Self-contained: the ledger's insertion order and
-- every table the dispatcher and the delivery worker keep.

-- record_seq: the order in which the record learned each event. Unlike the event id, it
-- follows commit order: every persist takes a transaction-level advisory lock before it
-- inserts (PostgresLedger.persist), so a transaction that commits later always draws
-- larger numbers, and a reader that sees number n sees every committed number below n.
-- The dispatcher reads the ledger after a cursor on it and so never skips an event.
-- Gaps are harmless (a replayed event that hit the primary key still drew a number).
CREATE SEQUENCE ledger_record_seq;
ALTER TABLE ledger ADD COLUMN record_seq bigint;
UPDATE ledger SET record_seq = numbered.n
FROM (SELECT partition, stream_ms, stream_seq,
             row_number() OVER (ORDER BY partition, stream_ms, stream_seq) AS n
      FROM ledger) AS numbered
WHERE (ledger.partition, ledger.stream_ms, ledger.stream_seq)
    = (numbered.partition, numbered.stream_ms, numbered.stream_seq);
SELECT setval('ledger_record_seq', coalesce((SELECT max(record_seq) FROM ledger), 0) + 1, false);
ALTER TABLE ledger ALTER COLUMN record_seq SET DEFAULT nextval('ledger_record_seq');
ALTER TABLE ledger ALTER COLUMN record_seq SET NOT NULL;
ALTER SEQUENCE ledger_record_seq OWNED BY ledger.record_seq;
CREATE UNIQUE INDEX ledger_by_record_seq ON ledger (record_seq);

-- One row per receiver. Times are milliseconds since the epoch (the worker's clock).
CREATE TABLE webhook_endpoints (
    id                            text    PRIMARY KEY,            -- ep_<24 hex>
    url                           text    NOT NULL,
    events                        jsonb   NOT NULL,               -- type filters: "stock.changed", "reservation.*", "*"
    description                   text    NOT NULL DEFAULT '',
    secret                        text    NOT NULL,               -- whsec_<base64>: the worker signs with it
    previous_secret               text,                           -- still signs until previous_secret_expires_at_ms
    previous_secret_expires_at_ms bigint,
    disabled                      boolean NOT NULL DEFAULT false,
    disabled_reason               text,                           -- gone (410), failing (5 days), operator
    disabled_at_ms                bigint,
    disabled_notified             boolean NOT NULL DEFAULT true,  -- endpoint.disabled emitted
    start_seq                     bigint  NOT NULL,               -- receives events with record_seq above this
    failing_since_ms              bigint,                         -- first failure since the last success
    paused_until_ms               bigint  NOT NULL DEFAULT 0,     -- slowed down (429, 502, 504, Retry-After)
    throttle_ms                   bigint  NOT NULL DEFAULT 0,     -- the current slow-down step
    created_at_ms                 bigint  NOT NULL,
    updated_at_ms                 bigint  NOT NULL
);

-- One row per (event, webhook type, endpoint): the message. Its id is the webhook-id
-- header, derived from the three, so it never changes across retries, crashes or replays.
CREATE TABLE webhook_messages (
    id                 text    PRIMARY KEY,                        -- msg_<26 base32>
    endpoint_id        text    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    type               text    NOT NULL,
    record_seq         bigint  NOT NULL DEFAULT 0,                 -- 0: not from a ledger row (endpoint.disabled)
    event_id           text,
    coalesce_key       text,                                       -- stock.changed: sku and location
    stock_seq          bigint,                                     -- stock.changed: the level's version
    payload            text    NOT NULL,
    status             text    NOT NULL DEFAULT 'pending',         -- pending, delivered, failed, coalesced
    attempts           integer NOT NULL DEFAULT 0,                 -- attempts of the current schedule
    next_attempt_at_ms bigint  NOT NULL,
    lease_owner        text,
    lease_until_ms     bigint,
    superseded_by      text,
    recorded_at_ms     bigint  NOT NULL,                           -- when the record learned the event
    created_at_ms      bigint  NOT NULL,
    finished_at_ms     bigint,
    last_error         text
);
CREATE INDEX webhook_messages_due ON webhook_messages (endpoint_id, next_attempt_at_ms, record_seq)
    WHERE status = 'pending';
CREATE INDEX webhook_messages_pending_by_key ON webhook_messages (endpoint_id, coalesce_key)
    WHERE status = 'pending' AND coalesce_key IS NOT NULL;
CREATE INDEX webhook_messages_by_endpoint ON webhook_messages (endpoint_id, record_seq);
CREATE INDEX webhook_messages_finished ON webhook_messages (finished_at_ms)
    WHERE status <> 'pending';

-- Every delivery attempt, kept (GET /v1/webhooks/endpoints/{id}/deliveries).
CREATE TABLE webhook_attempts (
    id                 bigserial PRIMARY KEY,
    message_id         text    NOT NULL,
    endpoint_id        text    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    type               text    NOT NULL,
    record_seq         bigint  NOT NULL,
    attempt            integer NOT NULL,
    attempted_at_ms    bigint  NOT NULL,
    status_code        integer,                                    -- null: no response
    latency_ms         integer NOT NULL,
    outcome            text    NOT NULL,                           -- delivered, failed, throttled, gone, ...
    error              text,
    next_attempt_at_ms bigint                                      -- the retry it scheduled, if any
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (attempted_at_ms);

-- The dispatcher's cursor on ledger.record_seq. It starts at the record's newest event:
-- webhooks announce what is recorded from now on (older events: replay).
CREATE TABLE webhook_dispatch (
    id            integer PRIMARY KEY CHECK (id = 1),
    cursor_seq    bigint  NOT NULL,
    updated_at_ms bigint  NOT NULL
);
INSERT INTO webhook_dispatch VALUES (1, (SELECT coalesce(max(record_seq), 0) FROM ledger), 0);

-- Every (sku, location) as of the dispatcher's cursor, so stock.changed carries the level
-- right after its event, and stock.out / stock.back fire once per crossing of zero.
CREATE TABLE webhook_stock (
    sku         text   NOT NULL,
    location    text   NOT NULL,
    on_hand     bigint NOT NULL DEFAULT 0,
    reserved    bigint NOT NULL DEFAULT 0,
    committed   bigint NOT NULL DEFAULT 0,
    in_transit  bigint NOT NULL DEFAULT 0,
    returned    bigint NOT NULL DEFAULT 0,
    damaged     bigint NOT NULL DEFAULT 0,
    written_off bigint NOT NULL DEFAULT 0,
    inbound     bigint NOT NULL DEFAULT 0,
    version     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (sku, location)
);
INSERT INTO webhook_stock
SELECT sku, location, on_hand, reserved, committed, in_transit, returned, damaged,
       written_off, inbound, version
FROM stock_levels;

-- Replays: re-send what the record holds in (after_seq, until_seq], for one endpoint.
CREATE TABLE webhook_replays (
    id             text   PRIMARY KEY,                             -- rpl_<24 hex>
    endpoint_id    text   NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    after_seq      bigint NOT NULL,
    until_seq      bigint NOT NULL,
    since_ms       bigint,                                         -- only events that occurred at or after
    cursor_seq     bigint NOT NULL,
    messages       bigint NOT NULL DEFAULT 0,
    created_at_ms  bigint NOT NULL,
    finished_at_ms bigint
);
CREATE INDEX webhook_replays_open ON webhook_replays (created_at_ms) WHERE finished_at_ms IS NULL;

-- Idempotency-Key of the webhook POSTs: the first response, replayed for the same request.
CREATE TABLE webhook_requests (
    key           text    PRIMARY KEY,                             -- route and Idempotency-Key
    fingerprint   text    NOT NULL,
    status        integer NOT NULL,
    body          text    NOT NULL,
    created_at_ms bigint  NOT NULL
);
CREATE INDEX webhook_requests_by_time ON webhook_requests (created_at_ms);
