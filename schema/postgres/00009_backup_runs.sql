-- Backups that run: the configuration of runnable sources (directory,
-- postgres), pausing, the runs that stream a source into the blob store,
-- and what verification learned about each snapshot.
--
-- config holds the kind's settings as JSON ({"path": …} or {"dsn": …}); a
-- DSN is a secret: the API only ever shows it redacted.

-- +goose Up
ALTER TABLE backup_sources ADD COLUMN config JSONB;
ALTER TABLE backup_sources ADD COLUMN paused_at TIMESTAMPTZ;
-- The overdue incident last raised for the source ("overdue:<source>:<last
-- good snapshot or never>"), so each incident raises one event.
ALTER TABLE backup_sources ADD COLUMN overdue_incident TEXT NOT NULL DEFAULT '';

-- unverified -> verified | corrupt. A corrupt snapshot keeps its lifecycle
-- state (the sweep may still trash it) but never counts as a good one.
ALTER TABLE backup_snapshots ADD COLUMN integrity TEXT NOT NULL DEFAULT 'unverified';
ALTER TABLE backup_snapshots ADD COLUMN verified_at TIMESTAMPTZ;
ALTER TABLE backup_snapshots ADD COLUMN verify_error TEXT NOT NULL DEFAULT '';
-- The archive's manifest summary (kind, files, source bytes, dump checksum)
-- of a snapshot a run made; NULL for snapshots recorded by agents.
ALTER TABLE backup_snapshots ADD COLUMN manifest JSONB;
ALTER TABLE backup_snapshots ADD CONSTRAINT backup_snapshots_integrity_check CHECK (integrity IN ('unverified', 'verified', 'corrupt'));
CREATE INDEX backup_snapshots_verify_idx ON backup_snapshots (verified_at NULLS FIRST, id) WHERE state = 'active' AND integrity <> 'corrupt';

CREATE TABLE backup_runs (
    id           TEXT        PRIMARY KEY,
    account_id   TEXT        NOT NULL REFERENCES accounts (id),
    source_id    TEXT        NOT NULL REFERENCES backup_sources (id),
    -- The command that carries the run out.
    command_id   TEXT        NOT NULL,
    -- manual (API, CLI) or schedule (the backup.due tick, for slot).
    trigger      TEXT        NOT NULL,
    slot         TIMESTAMPTZ,
    state        TEXT        NOT NULL,
    -- Source bytes read so far, updated about once a second while running.
    bytes_done   BIGINT      NOT NULL DEFAULT 0,
    source_bytes BIGINT      NOT NULL DEFAULT 0,
    stored_bytes BIGINT      NOT NULL DEFAULT 0,
    sha256       TEXT        NOT NULL DEFAULT '',
    snapshot_id  TEXT        NOT NULL DEFAULT '',
    error        TEXT        NOT NULL DEFAULT '',
    attempts     INTEGER     NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    -- A running run whose heartbeat is old belongs to a worker that died:
    -- it no longer counts against the account's concurrent runs.
    heartbeat_at TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT backup_runs_state_check CHECK (state IN ('queued', 'running', 'succeeded', 'failed'))
);
CREATE INDEX backup_runs_source_idx ON backup_runs (source_id, created_at DESC, id DESC);
CREATE INDEX backup_runs_account_running_idx ON backup_runs (account_id) WHERE state = 'running';
CREATE UNIQUE INDEX backup_runs_slot_idx ON backup_runs (source_id, slot) WHERE slot IS NOT NULL;

-- +goose Down
DROP TABLE backup_runs;
DROP INDEX backup_snapshots_verify_idx;
ALTER TABLE backup_snapshots DROP CONSTRAINT backup_snapshots_integrity_check;
ALTER TABLE backup_snapshots DROP COLUMN manifest;
ALTER TABLE backup_snapshots DROP COLUMN verify_error;
ALTER TABLE backup_snapshots DROP COLUMN verified_at;
ALTER TABLE backup_snapshots DROP COLUMN integrity;
ALTER TABLE backup_sources DROP COLUMN overdue_incident;
ALTER TABLE backup_sources DROP COLUMN paused_at;
ALTER TABLE backup_sources DROP COLUMN config;
