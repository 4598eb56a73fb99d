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

// Handler adapts h into a bus.Handler that runs it at most once per
// (consumer, message id), however often the message is delivered, unless
// the message is a forced replay for its consumer.
func Handler(s *store.Store, h TxHandler) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		duplicate := false
		force := m.ForcedReplay()
		err := s.InTx(ctx, func(tx *store.Tx) error {
			claimed, err := tx.ClaimInbox(ctx, store.InboxEntry{
				Consumer:    m.Consumer,
				MsgID:       m.ID(),
				Subject:     m.Subject,
				StreamSeq:   m.StreamSeq,
				ProcessedAt: time.Now().UTC(),
			})
			if err != nil {
				return err
			}
			if !claimed {
				duplicate = true
				if !force {
					return nil
				}
			}
			return h(ctx, tx, m)
		})
		if err != nil {
			return err
		}
		switch {
		case duplicate && force:
			bus.Logger(ctx).Info("already processed; running again because an operator forced a replay")
		case duplicate:
			bus.Logger(ctx).Info("already processed; acknowledging duplicate delivery")
		}
		return nil
	}
}
