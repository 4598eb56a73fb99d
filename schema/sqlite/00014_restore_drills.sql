-- Restore drills: backup.restore_drill restores a recent snapshot of each
-- source of an entitled account into a scratch target, checks it against
-- the snapshot's manifest, cleans up, and keeps this report. One drill
-- per source and tick slot, so a redelivered tick runs none twice.

-- +goose Up
CREATE TABLE restore_drills (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    snapshot_id  TEXT NOT NULL DEFAULT '',
    slot         DATETIME NOT NULL,
    kind         TEXT NOT NULL,
    result       TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    files        BIGINT NOT NULL DEFAULT 0,
    bytes        BIGINT NOT NULL DEFAULT 0,
    duration_ms  BIGINT NOT NULL DEFAULT 0,
    started_at   DATETIME NOT NULL,
    finished_at  DATETIME NOT NULL,
    UNIQUE (source_id, slot)
);
CREATE INDEX restore_drills_source_idx ON restore_drills (source_id, finished_at);
CREATE INDEX restore_drills_account_idx ON restore_drills (account_id, finished_at);

-- +goose Down
DROP TABLE restore_drills;
