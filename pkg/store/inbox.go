package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
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

// ClaimInbox records e in the inbox within tx and reports whether this call
// created the row. false means the consumer has already processed the
// message (in a committed transaction, or in one running concurrently that
// then commits): the handler should skip its effects and let the message be
// acknowledged. If tx rolls back, the claim goes with it and a redelivery
// can claim again.
func (tx *Tx) ClaimInbox(ctx context.Context, e InboxEntry) (claimed bool, err error) {
	got, err := tx.ClaimInboxes(ctx, []InboxEntry{e})
	if err != nil {
		return false, err
	}
	return got[0], nil
}

// ClaimInboxes is ClaimInbox for several entries, each (consumer, msg_id)
// at most once, in one statement: claimed[i] reports whether entries[i]
// was new.
func (tx *Tx) ClaimInboxes(ctx context.Context, entries []InboxEntry) (claimed []bool, err error) {
	type key struct{ consumer, msgID string }
	const cols = 5
	at := make(map[key]int, len(entries))
	for i, e := range entries {
		if e.Consumer == "" || e.MsgID == "" {
			return nil, fmt.Errorf("store: claiming inbox: consumer and msg_id are required (got %q, %q)", e.Consumer, e.MsgID)
		}
		if _, dup := at[key{e.Consumer, e.MsgID}]; dup {
			return nil, fmt.Errorf("store: claiming inbox: %s/%s is listed twice", e.Consumer, e.MsgID)
		}
		at[key{e.Consumer, e.MsgID}] = i
	}
	claimed = make([]bool, len(entries))
	err = inRowChunks(entries, cols, func(part []InboxEntry) error {
		args := make([]any, 0, len(part)*cols)
		for _, e := range part {
			args = append(args, e.Consumer, e.MsgID, e.Subject, e.StreamSeq, ts(orNow(e.ProcessedAt)))
		}
		var rows []struct {
			Consumer string `db:"consumer"`
			MsgID    string `db:"msg_id"`
		}
		err := tx.tx.SelectContext(ctx, &rows, tx.rebind(`INSERT INTO inbox (consumer, msg_id, subject, stream_seq, processed_at)
VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (consumer, msg_id) DO NOTHING RETURNING consumer, msg_id`), args...)
		if err != nil {
			return fmt.Errorf("store: claiming inbox for %s/%s: %w", part[0].Consumer, what("message", msgIDs(part)...), err)
		}
		for _, r := range rows {
			claimed[at[key{r.Consumer, r.MsgID}]] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

func msgIDs(es []InboxEntry) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.MsgID
	}
	return ids
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

// UnclaimInbox deletes, within tx, the inbox rows of consumer's messages
// msgIDs: a batch that claimed them up front and then failed them takes
// its claims back, so that their redeliveries run.
func (tx *Tx) UnclaimInbox(ctx context.Context, consumer string, msgIDs []string) error {
	return eachChunk(msgIDs, func(chunk []string) error {
		q, args, err := sqlx.In(`DELETE FROM inbox WHERE consumer = ? AND msg_id IN (?)`, consumer, chunk)
		if err != nil {
			return err
		}
		if _, err := tx.tx.ExecContext(ctx, tx.rebind(q), args...); err != nil {
			return fmt.Errorf("store: unclaiming %s of %s: %w", what("message", chunk...), consumer, err)
		}
		return nil
	})
}
