-- The account a failed message belongs to (its Levqor-Account header; ''
-- when it names none), so the housekeeping watch can tell when dead
-- letters pile up for one account and support can open a ticket for it.

-- +goose Up
ALTER TABLE message_failures ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
CREATE INDEX message_failures_account_idx ON message_failures (account_id, last_failed_at) WHERE dead_lettered AND account_id <> '';

-- +goose Down
DROP INDEX message_failures_account_idx;
ALTER TABLE message_failures DROP COLUMN account_id;
