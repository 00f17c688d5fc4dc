-- API keys live in the durable record (see the PostgreSQL migration); scopes are a
-- comma-separated list, created_at milliseconds since the epoch.
CREATE TABLE api_keys (
    name        TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL UNIQUE,
    scopes      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
