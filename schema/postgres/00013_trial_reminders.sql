-- Trial reminders sent by billing.trial_reminder: one per subscription,
-- trial end and reminder (its distance before the end, in seconds), so
-- that each is sent once however often the job runs, and a trial that is
-- extended is reminded again.

-- +goose Up
CREATE TABLE billing_trial_reminders (
    subscription_id  TEXT NOT NULL,
    trial_end        TIMESTAMPTZ NOT NULL,
    before_seconds   BIGINT NOT NULL,
    account_id       TEXT NOT NULL,
    sent_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subscription_id, trial_end, before_seconds)
);

-- +goose Down
DROP TABLE billing_trial_reminders;
