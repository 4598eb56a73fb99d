package store

import (
	"context"
	"fmt"
	"time"
)

// InboxEntry records that a consumer has processed a message. Its key is
// (Consumer, MsgID); the other fields help operators find the message.
type InboxEntry struct {
	// Consumer is the durable consumer that handled the message, e.g.
	// "billing-stripe".
	Consumer string
	// MsgID is the message's dedupe id (its Nats-Msg-Id).
	MsgID string
	// Subject is the subject the message arrived on.
	Subject string
	// StreamSeq is the message's sequence in its stream.
	StreamSeq uint64
	// ProcessedAt is when the handler ran; zero means now.
	ProcessedAt time.Time
}

const claimInboxSQL = `INSERT INTO inbox (consumer, msg_id, subject, stream_seq, processed_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (consumer, msg_id) DO NOTHING`

// ClaimInbox records e in the inbox within tx and reports whether this call
// created the row. false means the consumer has already processed the
// message (in a committed transaction, or in one running concurrently that
// then commits): the handler should skip its effects and let the message be
// acknowledged. If tx rolls back, the claim goes with it and a redelivery
// can claim again.
func (tx *Tx) ClaimInbox(ctx context.Context, e InboxEntry) (claimed bool, err error) {
	if e.Consumer == "" || e.MsgID == "" {
		return false, fmt.Errorf("store: claiming inbox: consumer and msg_id are required (got %q, %q)", e.Consumer, e.MsgID)
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(claimInboxSQL),
		e.Consumer, e.MsgID, e.Subject, e.StreamSeq, ts(orNow(e.ProcessedAt)))
	if err != nil {
		return false, fmt.Errorf("store: claiming inbox for %s/%s: %w", e.Consumer, e.MsgID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: claiming inbox for %s/%s: %w", e.Consumer, e.MsgID, err)
	}
	return n == 1, nil
}

const pruneInboxSQL = `DELETE FROM inbox WHERE processed_at < ?`

// PruneInbox deletes inbox rows processed before before and returns how many
// it deleted. A message redelivered after its row is gone would be handled
// again, so before must lie further back than any redelivery or replay
// window (the streams' retention).
func (s *Store) PruneInbox(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(pruneInboxSQL), ts(before))
	if err != nil {
		return 0, fmt.Errorf("store: pruning inbox: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: pruning inbox: %w", err)
	}
	return n, nil
}
