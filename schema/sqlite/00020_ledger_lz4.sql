-- PostgreSQL's 00020 compresses the ledger's payloads with lz4; SQLite
-- does not compress rows, so there is nothing to change here. The file
-- keeps the two series numbered alike.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
