-- Customer webhook endpoints: where an account asks Levqor to POST its
-- events, signed per the Standard Webhooks specification. No secret is
-- stored: an endpoint's signing secret is derived from the deployment's
-- LEVQOR_WEBHOOK_SECRET_KEY, the endpoint's id and its secret generation,
-- which rotating bumps; the previous generation keeps signing until
-- previous_expires_at, so receivers can switch without a gap.
-- failing_since is when the endpoint's current run of failed deliveries
-- began (NULL while it is healthy); an endpoint failing for too long is
-- disabled, with the reason kept.

-- +goose Up
CREATE TABLE webhook_endpoints (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL,
    url                  TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    event_types          TEXT NOT NULL DEFAULT '[]',
    enabled              BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason      TEXT NOT NULL DEFAULT '',
    secret_generation    INTEGER NOT NULL DEFAULT 1,
    previous_generation  INTEGER NOT NULL DEFAULT 0,
    previous_expires_at  TIMESTAMPTZ,
    failing_since        TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_endpoints_account_idx ON webhook_endpoints (account_id, created_at);

-- Every attempt to deliver a webhook notification: the endpoint's
-- delivery log, what its owner reads to see why a receiver refused.
CREATE TABLE webhook_attempts (
    id               BIGSERIAL PRIMARY KEY,
    endpoint_id      TEXT NOT NULL,
    notification_id  TEXT NOT NULL,
    event            TEXT NOT NULL,
    attempted_at     TIMESTAMPTZ NOT NULL,
    status_code      INTEGER NOT NULL DEFAULT 0,
    duration_ms      INTEGER NOT NULL DEFAULT 0,
    ok               BOOLEAN NOT NULL,
    error            TEXT NOT NULL DEFAULT '',
    response         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_endpoints;
