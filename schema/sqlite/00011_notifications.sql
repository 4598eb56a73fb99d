-- Notifications: what Levqor told whom about an event, rendered once when
-- the event was handled, and whether it was delivered. The audience says
-- whether the recipient is the customer or Levqor's own staff, whose
-- notifications about an account its customer never sees. One row per
-- (incident, channel, recipient), so an incident reported many times is
-- told once.

-- +goose Up
CREATE TABLE notifications (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL DEFAULT '',
    event       TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    incident    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    audience    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body_text   TEXT NOT NULL,
    body_html   TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL,
    sent_at     DATETIME,
    UNIQUE (incident, channel, recipient)
);
CREATE INDEX notifications_account_idx ON notifications (account_id, audience, created_at);

-- +goose Down
DROP TABLE notifications;
