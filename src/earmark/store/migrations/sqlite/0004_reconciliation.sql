-- Reconciliation against external counts and discrepancy cases (docs/reconciliation.md).
-- Times are integer milliseconds since the epoch (columns ending _ms), as in SQLite, so
-- both stores run the same statements.

CREATE TABLE reconciliations (
    id                text             PRIMARY KEY,
    source            text             NOT NULL,
    counted_at_ms     bigint           NOT NULL,
    threshold_units   bigint,
    threshold_percent double precision,
    status            text             NOT NULL DEFAULT 'running',  -- running, complete, failed
    lines             bigint           NOT NULL DEFAULT 0,
    matched           bigint           NOT NULL DEFAULT 0,
    discrepancies     bigint           NOT NULL DEFAULT 0,
    not_counted       bigint           NOT NULL DEFAULT 0,
    created_by        text             NOT NULL,
    created_at_ms     bigint           NOT NULL,
    completed_at_ms   bigint,
    idempotency_key   text,            -- the POST's Idempotency-Key (per created_by)
    fingerprint       text             -- of the request body: a replay must match it
);
CREATE UNIQUE INDEX reconciliations_idempotency ON reconciliations (created_by, idempotency_key);

-- One row per counted (sku, location): the expected on_hand as of counted_at, from the
-- ledger, against the external count.
CREATE TABLE reconciliation_lines (
    reconciliation_id text    NOT NULL REFERENCES reconciliations (id) ON DELETE CASCADE,
    sku               text    NOT NULL,
    location          text    NOT NULL,
    expected          bigint  NOT NULL,
    counted           bigint  NOT NULL,
    difference        bigint  NOT NULL,   -- counted - expected
    exceeded          integer NOT NULL,   -- 1: over a threshold, a case was opened
    PRIMARY KEY (reconciliation_id, sku, location)
);

CREATE TABLE discrepancy_cases (
    id                text    PRIMARY KEY,
    reconciliation_id text    NOT NULL REFERENCES reconciliations (id),
    source            text    NOT NULL,
    sku               text    NOT NULL,
    location          text    NOT NULL,
    expected          bigint  NOT NULL,
    counted           bigint  NOT NULL,
    difference        bigint  NOT NULL,
    counted_at_ms     bigint  NOT NULL,
    status            text    NOT NULL DEFAULT 'open',  -- open, investigating, resolved
    assignee          text,
    root_cause        text,
    notes             text,
    resolution        text,                              -- adjust, write_off, dismiss
    reason            text,
    resolved_by       text,
    opened_at_ms      bigint  NOT NULL,
    due_at_ms         bigint  NOT NULL,
    resolved_at_ms    bigint,
    opened_notified   integer NOT NULL DEFAULT 0,
    overdue_notified  integer NOT NULL DEFAULT 0,
    resolved_notified integer NOT NULL DEFAULT 0
);
CREATE INDEX discrepancy_cases_status ON discrepancy_cases (status, due_at_ms);
CREATE INDEX discrepancy_cases_source ON discrepancy_cases (source, id);
