-- API keys live in the durable record (they survive a Redis loss, and the embedded store
-- can read them): a key's name, the SHA-256 of its token (the token itself is never
-- stored), its scopes and when it was created.
CREATE TABLE api_keys (
    name        text        PRIMARY KEY,
    sha256      text        NOT NULL UNIQUE,
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL
);
