-- The ledger keeps every Stripe event's exact bytes, 3 to 6 KB each: past
-- PostgreSQL's 2 KB threshold, so each row's payload is compressed as it
-- is written. lz4 compresses several times faster than the default pglz,
-- which showed in the billing worker's drain (about 9% more events a
-- second, docs/benchmarks.md). Rows already written keep their pglz
-- compression; both read the same. A server before PostgreSQL 14 (no
-- per-column compression) or built without lz4 keeps pglz.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE stripe_events ALTER COLUMN payload SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; the ledger keeps pglz';
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE stripe_events ALTER COLUMN payload SET COMPRESSION pglz';
    END IF;
END $$;
-- +goose StatementEnd
