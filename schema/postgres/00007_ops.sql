-- The operators' audit trail: every action taken with `levqor …` or the
-- admin API (replaying, purging, backfilling, reading dead letters), who
-- took it, with which filters, and what came of it.

-- +goose Up
CREATE TABLE operator_audit (
    id      BIGSERIAL   PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT        NOT NULL,
    action  TEXT        NOT NULL,
    params  JSONB       NOT NULL DEFAULT '{}',
    counts  JSONB       NOT NULL DEFAULT '{}',
    outcome TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX operator_audit_at_idx ON operator_audit (at);
CREATE INDEX operator_audit_action_at_idx ON operator_audit (action, at);

-- +goose Down
DROP TABLE operator_audit;
