-- What an account asks of its notifications: the events its people are
-- not emailed about (muted), and quiet hours during which their emails
-- wait (start and end as HH:MM in time_zone; both '' for none).

-- +goose Up
CREATE TABLE notification_preferences (
    account_id   TEXT PRIMARY KEY,
    muted        TEXT NOT NULL DEFAULT '[]',
    quiet_start  TEXT NOT NULL DEFAULT '',
    quiet_end    TEXT NOT NULL DEFAULT '',
    time_zone    TEXT NOT NULL DEFAULT 'UTC',
    updated_at   TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE notification_preferences;
