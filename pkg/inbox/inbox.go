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
