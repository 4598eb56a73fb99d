-- State the scheduled jobs' workers keep between ticks.
--
-- tick_watermarks holds, per job, the newest slot whose effects were
-- committed: a worker that must act on slots in order advances it in the
-- transaction of its effects, and a tick for an older slot (late, replayed,
-- or overtaken by another replica) finds it already passed and changes
-- nothing.
--
-- ops_watch is what the housekeeping.watch job saw of each consumer at its
-- last slot, so that the next one can tell that a dead-letter queue grew or
-- that a consumer became stuck.
--
-- Time columns are DATETIME written as UTC text in one format by the store,
-- so comparing them as text is comparing them in time.

-- +goose Up
CREATE TABLE tick_watermarks (
    job        TEXT     PRIMARY KEY NOT NULL,
    slot       DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE ops_watch (
    consumer     TEXT     PRIMARY KEY NOT NULL,
    stream       TEXT     NOT NULL DEFAULT '',
    dlq_messages INTEGER  NOT NULL DEFAULT 0,
    stuck        BOOLEAN  NOT NULL DEFAULT FALSE,
    slot         DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL
);

-- +goose Down
DROP TABLE ops_watch;
DROP TABLE tick_watermarks;
