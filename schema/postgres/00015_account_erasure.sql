-- Erasure of an account's data: on its owner's request (after a
-- cooling-off period) or when offboarding finds it canceled long enough.
-- One open request (scheduled, or blocked by a legal hold) per account;
-- the report of what was deleted is kept in the row. erased_at marks an
-- account whose data is gone: the row stays, for invoices and the audit
-- trail, without its personal data.

-- +goose Up
CREATE TABLE account_erasures (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    origin         TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    requested_at   TIMESTAMPTZ NOT NULL,
    scheduled_for  TIMESTAMPTZ NOT NULL,
    status         TEXT NOT NULL,
    status_reason  TEXT NOT NULL DEFAULT '',
    report         TEXT NOT NULL DEFAULT '{}',
    completed_at   TIMESTAMPTZ,
    reminded_at    TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX account_erasures_open_idx ON account_erasures (account_id) WHERE status IN ('scheduled', 'blocked', 'erasing');
CREATE INDEX account_erasures_due_idx ON account_erasures (status, scheduled_for);
ALTER TABLE accounts ADD COLUMN erased_at TIMESTAMPTZ;
-- When billing last made the account canceled (NULL while it is not):
-- offboarding counts its grace from here.
ALTER TABLE accounts ADD COLUMN canceled_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE accounts DROP COLUMN canceled_at;
ALTER TABLE accounts DROP COLUMN erased_at;
DROP TABLE account_erasures;
