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
// despite the inbox, with WithForce, and learn what the inbox decided for
// each message with WithOutcome.
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

type forceKey struct{}

// WithForce returns ctx telling Handler to run the handler of consumer even
// for messages that consumer has already processed. The inbox row is still
// claimed when missing, so the message counts as processed afterwards.
// Messages of other consumers keep the duplicate check: an operator forces
// one consumer's handlers at a time, never everyone's.
func WithForce(ctx context.Context, consumer string) context.Context {
	return context.WithValue(ctx, forceKey{}, consumer)
}

func forced(ctx context.Context, consumer string) bool {
	c, ok := ctx.Value(forceKey{}).(string)
	return ok && c != "" && c == consumer
}

// Outcome is what Handler decided for one message, for callers that count
// what a replay did.
type Outcome struct {
	// Duplicate is true when the consumer had already processed the
	// message.
	Duplicate bool
	// Forced is true when the handler ran again anyway (see WithForce).
	Forced bool
}

type outcomeKey struct{}

// WithOutcome returns ctx in which Handler records its decision into o once
// its transaction commits.
func WithOutcome(ctx context.Context, o *Outcome) context.Context {
	return context.WithValue(ctx, outcomeKey{}, o)
}

// Handler adapts h into a bus.Handler that runs it at most once per
// (consumer, message id), however often the message is delivered, unless
// the context forces a re-run (WithForce).
func Handler(s *store.Store, h TxHandler) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		duplicate := false
		force := forced(ctx, m.Consumer)
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
		if o, ok := ctx.Value(outcomeKey{}).(*Outcome); ok {
			o.Duplicate = duplicate
			o.Forced = duplicate && force
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
