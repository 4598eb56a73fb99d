// Package inbox makes handlers' effects exactly-once. A transactional
// handler runs inside a database transaction that first records
// (consumer, message id) in the inbox table; a second delivery of the same
// message finds the row, changes nothing and is acknowledged.
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
// (consumer, message id), however often the message is delivered.
func Handler(s *store.Store, h TxHandler) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		duplicate := false
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
				return nil
			}
			return h(ctx, tx, m)
		})
		if err == nil && duplicate {
			bus.Logger(ctx).Info("already processed; acknowledging duplicate delivery")
		}
		return err
	}
}
