-- The operators' audit trail: every action taken with `levqor …` or the
-- admin API (replaying, purging, backfilling, reading dead letters), who
-- took it, with which filters, and what came of it.
--
-- params and counts hold JSON text; see 00001 for how times are stored.

-- +goose Up
CREATE TABLE operator_audit (
    id      INTEGER  PRIMARY KEY AUTOINCREMENT,
    at      DATETIME NOT NULL,
    actor   TEXT     NOT NULL,
    action  TEXT     NOT NULL,
    params  TEXT     NOT NULL DEFAULT '{}',
    counts  TEXT     NOT NULL DEFAULT '{}',
    outcome TEXT     NOT NULL DEFAULT ''
);
CREATE INDEX operator_audit_at_idx ON operator_audit (at);
CREATE INDEX operator_audit_action_at_idx ON operator_audit (action, at);

-- +goose Down
DROP TABLE operator_audit;
