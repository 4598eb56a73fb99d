-- Tables of the product API: accounts (the tenants), the API keys that
-- authenticate them and operators, and the bookkeeping of commands, which
-- records what each change request became (queued, running, succeeded or
-- failed) and lets a retry with the same Idempotency-Key find it again.
--
-- JSON columns are TEXT; time columns DATETIME (see 00001_pipeline.sql).

-- +goose Up
CREATE TABLE accounts (
    id                 TEXT     PRIMARY KEY NOT NULL,
    name               TEXT     NOT NULL,
    contact_email      TEXT     NOT NULL,
    stripe_customer_id TEXT     NOT NULL,
    -- NULL until billing sets it from a subscription.
    tier               TEXT,
    status             TEXT     NOT NULL DEFAULT 'active',
    entitlements       TEXT     NOT NULL DEFAULT '{}',
    created_at         DATETIME NOT NULL,
    updated_at         DATETIME NOT NULL
);
-- Listing pages through accounts newest first.
CREATE INDEX accounts_created_idx ON accounts (created_at DESC, id DESC);
CREATE INDEX accounts_stripe_customer_idx ON accounts (stripe_customer_id);

CREATE TABLE api_keys (
    id           TEXT     PRIMARY KEY NOT NULL,
    -- SHA-256 of the whole key, hex. The key itself is never stored.
    key_hash     TEXT     NOT NULL UNIQUE,
    -- The key's first characters, not secret, so people can tell keys apart.
    prefix       TEXT     NOT NULL,
    name         TEXT     NOT NULL DEFAULT '',
    operator     BOOLEAN  NOT NULL,
    account_id   TEXT     REFERENCES accounts (id),
    created_at   DATETIME NOT NULL,
    last_used_at DATETIME,
    revoked_at   DATETIME,
    CONSTRAINT api_keys_scope_check CHECK (
        (operator AND account_id IS NULL) OR (NOT operator AND account_id IS NOT NULL)
    )
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

CREATE TABLE commands (
    id              TEXT     PRIMARY KEY NOT NULL,
    -- Who asked, for Idempotency-Key lookups: "operator" or "account:<id>".
    scope           TEXT     NOT NULL,
    -- The tenant the command concerns; '' when there is none yet (creating
    -- an account).
    account_id      TEXT     NOT NULL DEFAULT '',
    domain          TEXT     NOT NULL,
    action          TEXT     NOT NULL,
    -- NULLs are distinct in a unique index: commands without a key never
    -- conflict.
    idempotency_key TEXT,
    request_hash    TEXT     NOT NULL,
    payload         BLOB     NOT NULL,
    status          TEXT     NOT NULL,
    http_status     INTEGER,
    result          TEXT,
    error           TEXT,
    error_code      TEXT,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    CONSTRAINT commands_status_check CHECK (status IN ('queued', 'running', 'succeeded', 'failed'))
);
CREATE UNIQUE INDEX commands_idempotency_idx ON commands (scope, idempotency_key);
CREATE INDEX commands_account_idx ON commands (account_id, created_at);

-- +goose Down
DROP TABLE commands;
DROP TABLE api_keys;
DROP TABLE accounts;
