-- An operator's suspension of an account: Levqor staff stop an account's
-- service (abuse, fraud, a legal request) whatever its billing says.
-- Billing's own suspension (dunning) stays in account_dunning; the
-- account's status is suspended while either holds. The reason is shown
-- to the account's people.

-- +goose Up
ALTER TABLE accounts ADD COLUMN suspension_reason TEXT;
-- Who suspended it, as the audit trail names actors ("user:<id>", "key:<id>").
ALTER TABLE accounts ADD COLUMN suspended_by TEXT;
ALTER TABLE accounts ADD COLUMN suspended_at DATETIME;

-- +goose Down
ALTER TABLE accounts DROP COLUMN suspended_at;
ALTER TABLE accounts DROP COLUMN suspended_by;
ALTER TABLE accounts DROP COLUMN suspension_reason;
