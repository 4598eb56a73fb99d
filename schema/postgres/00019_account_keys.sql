-- Each account's data key, wrapped by the first of LEVQOR_MASTER_KEYS
-- when it was made or last re-wrapped (levqor keys rotate). The key
-- seals the account's backups (repository format v2); erasing the
-- account deletes its row, and with it every way to read them.

-- +goose Up
CREATE TABLE account_keys (
    account_id    TEXT PRIMARY KEY,
    wrapped       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    rewrapped_at  TIMESTAMPTZ
);

-- +goose Down
DROP TABLE account_keys;
