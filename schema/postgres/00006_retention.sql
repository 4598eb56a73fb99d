-- The backup-retention domain: backup sources, the catalog of their
-- snapshots (whose bytes live in the blob store), legal holds, and the
-- audit trail of every retention decision.
--
-- A snapshot moves active -> trash -> purging -> purged. Trash keeps the
-- blob, so an operator can restore the snapshot (trash -> active) during
-- the grace period; purging means the blob is being deleted (a crash there
-- is finished by the next sweep); purged rows stay as tombstones for the
-- audit trail.

-- +goose Up
CREATE TABLE backup_sources (
    id            TEXT        PRIMARY KEY,
    account_id    TEXT        NOT NULL REFERENCES accounts (id),
    name          TEXT        NOT NULL,
    kind          TEXT        NOT NULL,
    -- Cron spec read in time_zone: when the source is backed up.
    schedule      TEXT        NOT NULL,
    time_zone     TEXT        NOT NULL,
    -- The source's own policy (JSON, restic rule names); NULL follows the
    -- default policy of the account's tier.
    policy        JSONB,
    -- Set while sweeps refuse to delete because they would remove too
    -- large a share at once; the operator alert is raised when it is set.
    blocked_since TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT backup_sources_name_unique UNIQUE (account_id, name)
);
CREATE INDEX backup_sources_created_idx ON backup_sources (created_at DESC, id DESC);
CREATE INDEX backup_sources_account_idx ON backup_sources (account_id, created_at DESC, id DESC);

CREATE TABLE backup_snapshots (
    id          TEXT        PRIMARY KEY,
    account_id  TEXT        NOT NULL REFERENCES accounts (id),
    source_id   TEXT        NOT NULL REFERENCES backup_sources (id),
    -- When the snapshot was taken, in UTC, and the UTC offset (seconds east)
    -- it was recorded in: retention reads days and weeks in that offset.
    taken_at    TIMESTAMPTZ NOT NULL,
    utc_offset  INTEGER     NOT NULL,
    size_bytes  BIGINT      NOT NULL,
    sha256      TEXT        NOT NULL,
    blob_key    TEXT        NOT NULL,
    tags        JSONB       NOT NULL DEFAULT '[]',
    state       TEXT        NOT NULL,
    recorded_by TEXT        NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    trashed_at  TIMESTAMPTZ,
    purge_after TIMESTAMPTZ,
    purged_at   TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT backup_snapshots_state_check CHECK (state IN ('active', 'trash', 'purging', 'purged')),
    -- One snapshot per blob: purging one can never delete another's bytes.
    CONSTRAINT backup_snapshots_blob_unique UNIQUE (blob_key)
);
CREATE INDEX backup_snapshots_source_idx ON backup_snapshots (source_id, state, taken_at DESC, id);
CREATE INDEX backup_snapshots_trash_idx ON backup_snapshots (account_id, purge_after, id) WHERE state = 'trash';

CREATE TABLE legal_holds (
    id                 TEXT        PRIMARY KEY,
    account_id         TEXT        NOT NULL REFERENCES accounts (id),
    source_id          TEXT        NOT NULL REFERENCES backup_sources (id),
    -- NULL: the hold covers every snapshot of the source.
    snapshot_id        TEXT        REFERENCES backup_snapshots (id),
    -- What is held: the snapshot id, or the source id for a source hold.
    target             TEXT        NOT NULL,
    reason             TEXT        NOT NULL,
    placed_by          TEXT        NOT NULL,
    placed_by_operator BOOLEAN     NOT NULL,
    placed_at          TIMESTAMPTZ NOT NULL,
    released_at        TIMESTAMPTZ,
    released_by        TEXT        NOT NULL DEFAULT '',
    release_reason     TEXT        NOT NULL DEFAULT ''
);
-- At most one active hold per snapshot or source.
CREATE UNIQUE INDEX legal_holds_active_idx ON legal_holds (target) WHERE released_at IS NULL;
CREATE INDEX legal_holds_source_idx ON legal_holds (source_id, placed_at);

CREATE TABLE retention_audit (
    id          BIGSERIAL   PRIMARY KEY,
    account_id  TEXT        NOT NULL,
    source_id   TEXT        NOT NULL,
    -- '' for entries about the whole source.
    snapshot_id TEXT        NOT NULL DEFAULT '',
    action      TEXT        NOT NULL,
    -- Who or what acted: "sweep retention.sweep@<slot>", "key:<key id>", …
    actor       TEXT        NOT NULL,
    -- The policy in force, where the entry is a retention decision.
    policy      JSONB,
    reasons     JSONB       NOT NULL DEFAULT '[]',
    detail      JSONB       NOT NULL DEFAULT '{}',
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX retention_audit_source_idx ON retention_audit (source_id, id DESC);
CREATE INDEX retention_audit_snapshot_idx ON retention_audit (snapshot_id) WHERE snapshot_id <> '';

-- +goose Down
DROP TABLE retention_audit;
DROP TABLE legal_holds;
DROP TABLE backup_snapshots;
DROP TABLE backup_sources;
