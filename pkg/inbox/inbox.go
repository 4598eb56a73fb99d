// Package inbox makes handlers' effects exactly-once. A transactional
// handler runs inside a database transaction that first records
// (consumer, message id) in the inbox table; a second delivery of the same
// message finds the row, changes nothing and is acknowledged.
//
// BatchHandler does the same for a whole batch of messages in one
// transaction, with a savepoint per message, so that a consumer pays for
// one commit per batch and a failing message is undone and retried alone.
//
// An operator re-running a window of messages after fixing a bug (see
// package ops) can ask for the handlers of one consumer to run again
// despite the inbox: a replay whose headers name that consumer and force
// the run (bus.Message.ForcedReplay) runs even though its id is there.
// The inbox row is still claimed when missing, so the message counts as
// processed afterwards.
package inbox

import (
	"context"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// TxHandler handles a message inside the transaction that records it in the
// inbox. Its effects commit together with the inbox row or not at all.
type TxHandler func(ctx context.Context, tx *store.Tx, msg *bus.Message) error

// Claim records m in the inbox of its consumer within tx and says whether
// its handler should run: yes for a message the consumer never processed,
// no for a duplicate. A forced replay (bus.Message.ForcedReplay) runs even
// though the consumer processed the message, but once: it also claims its
// own dedupe id, so its redelivery is a duplicate. duplicate reports
// whether the consumer had processed the message before.
func Claim(ctx context.Context, tx *store.Tx, m *bus.Message) (run, duplicate bool, err error) {
	entry := func(id string) store.InboxEntry {
		return store.InboxEntry{Consumer: m.Consumer, MsgID: id, Subject: m.Subject, StreamSeq: m.StreamSeq, ProcessedAt: time.Now().UTC()}
	}
	if m.ForcedReplay() {
		first, err := tx.ClaimInbox(ctx, entry(m.Header.Get(bus.HeaderMsgID)))
		if err != nil || !first {
			return false, true, err
		}
	}
	claimed, err := tx.ClaimInbox(ctx, entry(m.ID()))
	if err != nil {
		return false, false, err
	}
	return claimed || m.ForcedReplay(), !claimed, nil
}

// Handler adapts h into a bus.Handler that runs it at most once per
// (consumer, message id), however often the message is delivered, unless
// the message is a forced replay for its consumer.
func Handler(s *store.Store, h TxHandler) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		var ran, duplicate bool
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			if ran, duplicate, err = Claim(ctx, tx, m); err != nil || !ran {
				return err
			}
			return h(ctx, tx, m)
		})
		if err != nil {
			return err
		}
		logDuplicate(ctx, ran, duplicate)
		return nil
	}
}

// logDuplicate says what the inbox did with a message the consumer had
// processed before.
func logDuplicate(ctx context.Context, ran, duplicate bool) {
	switch {
	case duplicate && ran:
		bus.Logger(ctx).Info("already processed; running again because an operator forced a replay")
	case duplicate:
		bus.Logger(ctx).Info("already processed; acknowledging duplicate delivery")
	}
}

// ClaimBatch records msgs, none a forced replay, in their consumers'
// inboxes within tx in one statement and says for each whether its
// handler should run: yes for a message its consumer never processed
// (the first copy of a message listed twice), no for the others. A
// message that then fails must have its claim taken back
// (store.Tx.UnclaimInbox) before tx commits, unless a later copy in the
// batch takes it over and runs instead.
func ClaimBatch(ctx context.Context, tx *store.Tx, msgs []*bus.Message) (run []bool, err error) {
	type key struct{ consumer, id string }
	now := time.Now().UTC()
	entries := make([]store.InboxEntry, 0, len(msgs))
	at := make([]int, len(msgs)) // msgs[i]'s entry, or -1 for a repeat
	seen := make(map[key]bool, len(msgs))
	for i, m := range msgs {
		k := key{m.Consumer, m.ID()}
		if seen[k] {
			at[i] = -1
			continue
		}
		seen[k] = true
		at[i] = len(entries)
		entries = append(entries, store.InboxEntry{Consumer: m.Consumer, MsgID: m.ID(), Subject: m.Subject, StreamSeq: m.StreamSeq, ProcessedAt: now})
	}
	claimed, err := tx.ClaimInboxes(ctx, entries)
	if err != nil {
		return nil, err
	}
	run = make([]bool, len(msgs))
	for i, j := range at {
		run[i] = j >= 0 && claimed[j]
	}
	return run, nil
}

// LogDuplicate says that a message was not run because its consumer had
// processed it.
func LogDuplicate(ctx context.Context) { logDuplicate(ctx, false, true) }
