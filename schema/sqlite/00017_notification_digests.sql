-- Digests and unsubscribe links. A burst (the same event to the same
-- recipient again within the digest window of the last one told) is not
-- sent one by one: its notifications are held (status 'held', digest_id
-- naming their digest) and told together by one digest notification,
-- which collects while digest_state is 'open', is rendered when it closes
-- ('closed') and is not delivered before not_before. unsubscribe_url is
-- the link a customer's email offers to stop that event's emails. A
-- burst has at most one open digest.

-- +goose Up
ALTER TABLE notifications ADD COLUMN digest_id TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN digest_state TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN not_before DATETIME;
ALTER TABLE notifications ADD COLUMN unsubscribe_url TEXT NOT NULL DEFAULT '';
CREATE INDEX notifications_burst_idx ON notifications (recipient, event, created_at);
CREATE INDEX notifications_digest_idx ON notifications (digest_id);
CREATE UNIQUE INDEX notifications_open_digest_idx ON notifications (account_id, channel, recipient, event) WHERE digest_state = 'open';

-- +goose Down
DROP INDEX notifications_open_digest_idx;
DROP INDEX notifications_digest_idx;
DROP INDEX notifications_burst_idx;
ALTER TABLE notifications DROP COLUMN unsubscribe_url;
ALTER TABLE notifications DROP COLUMN not_before;
ALTER TABLE notifications DROP COLUMN digest_state;
ALTER TABLE notifications DROP COLUMN digest_id;
