-- Restores of Levqor's own database from a self-backup (levqor
-- selfrestore). Until a restore is reconciled with the blob store
-- (reconciled_at set by `levqor selfrestore reconcile`), the sweep and
-- blob.gc refuse to run: the restored catalog does not know the snapshots
-- taken after the self-backup.

-- +goose Up
CREATE TABLE self_restores (
    id               TEXT PRIMARY KEY,
    backup_key       TEXT NOT NULL,
    backup_taken_at  DATETIME NOT NULL,
    restored_at      DATETIME NOT NULL,
    reconciled_at    DATETIME
);

-- +goose Down
DROP TABLE self_restores;
