-- State the scheduled jobs' workers keep between ticks.
--
-- tick_watermarks holds, per job, the newest slot whose effects were
-- committed: a worker that must act on slots in order advances it in the
-- transaction of its effects, and a tick for an older slot (late, replayed,
-- or overtaken by another replica) finds it already passed and changes
-- nothing. The conditional upsert also serialises two workers handling two
-- slots of one job at once.
--
-- ops_watch is what the housekeeping.watch job saw of each consumer at its
-- last slot, so that the next one can tell that a dead-letter queue grew or
-- that a consumer became stuck.

-- +goose Up
CREATE TABLE tick_watermarks (
    job        TEXT        PRIMARY KEY,
    slot       TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE ops_watch (
    consumer     TEXT        PRIMARY KEY,
    stream       TEXT        NOT NULL DEFAULT '',
    dlq_messages BIGINT      NOT NULL DEFAULT 0,
    stuck        BOOLEAN     NOT NULL DEFAULT FALSE,
    slot         TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE ops_watch;
DROP TABLE tick_watermarks;
