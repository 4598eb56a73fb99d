-- Each account's data key, wrapped by the first of LEVQOR_MASTER_KEYS
-- when it was made or last re-wrapped (levqor keys rotate). The key
-- seals the account's backups (repository format v2); erasing the
-- account deletes its row, and with it every way to read them.
--
-- The row also fences the repository's prune against runs: a prune
-- takes pruning_since (a lease) and bumps prune_generation; a run waits
-- while the lease is held, and records its snapshot only if the
-- generation it started under is still current (a prune in between may
-- have deleted a chunk the run relied on). stored_bytes is what the
-- repository holds: runs add what they store, a prune sets what is left.

-- +goose Up
CREATE TABLE account_keys (
    account_id    TEXT PRIMARY KEY,
    wrapped       TEXT NOT NULL,
    created_at    DATETIME NOT NULL,
    rewrapped_at  DATETIME,
    prune_generation BIGINT NOT NULL DEFAULT 0,
    pruning_since DATETIME,
    pruned_at     DATETIME,
    stored_bytes  BIGINT NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE account_keys;
