-- Tables of the messaging pipeline: the inbox that makes handlers
-- idempotent, the transactional outbox, the Stripe event ledger and the
-- failures that workers report to operators.
--
-- Time columns are declared DATETIME so that the modernc.org/sqlite driver
-- hands them back as time.Time. The store writes them as UTC text in one
-- format ("2006-01-02 15:04:05.999999-07:00" with +00:00), which keeps
-- text comparison and ordering chronological.

-- +goose Up
CREATE TABLE inbox (
    consumer     TEXT     NOT NULL,
    msg_id       TEXT     NOT NULL,
    subject      TEXT     NOT NULL,
    stream_seq   INTEGER  NOT NULL DEFAULT 0,
    processed_at DATETIME NOT NULL,
    PRIMARY KEY (consumer, msg_id)
);
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
-- Operators look a message up by its id across all consumers.
CREATE INDEX inbox_msg_id_idx ON inbox (msg_id);

CREATE TABLE outbox (
    id           INTEGER  PRIMARY KEY AUTOINCREMENT,
    subject      TEXT     NOT NULL,
    headers      TEXT     NOT NULL DEFAULT '{}',
    payload      BLOB     NOT NULL,
    created_at   DATETIME NOT NULL,
    published_at DATETIME
);
-- The relay reads "unpublished, ordered by id"; the partial index stays as
-- small as the backlog.
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE stripe_events (
    id          TEXT     PRIMARY KEY NOT NULL,
    type        TEXT     NOT NULL,
    api_version TEXT     NOT NULL DEFAULT '',
    livemode    BOOLEAN  NOT NULL,
    created     DATETIME NOT NULL,
    received_at DATETIME NOT NULL,
    recorded_at DATETIME NOT NULL,
    stream_seq  INTEGER  NOT NULL DEFAULT 0,
    payload     BLOB     NOT NULL
);
CREATE INDEX stripe_events_type_created_idx ON stripe_events (type, created);
CREATE INDEX stripe_events_created_idx ON stripe_events (created);

CREATE TABLE message_failures (
    consumer        TEXT     NOT NULL,
    msg_id          TEXT     NOT NULL,
    subject         TEXT     NOT NULL,
    stream          TEXT     NOT NULL DEFAULT '',
    stream_seq      INTEGER  NOT NULL DEFAULT 0,
    deliveries      INTEGER  NOT NULL DEFAULT 0,
    last_error      TEXT     NOT NULL DEFAULT '',
    first_failed_at DATETIME NOT NULL,
    last_failed_at  DATETIME NOT NULL,
    dead_lettered   BOOLEAN  NOT NULL DEFAULT FALSE,
    PRIMARY KEY (consumer, msg_id)
);
CREATE INDEX message_failures_msg_id_idx ON message_failures (msg_id);
CREATE INDEX message_failures_last_failed_at_idx ON message_failures (last_failed_at);

-- +goose Down
DROP TABLE message_failures;
DROP TABLE stripe_events;
DROP TABLE outbox;
DROP TABLE inbox;
