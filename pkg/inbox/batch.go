package inbox

import (
	"context"
	"fmt"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// savepoint is the name of the savepoint each message of a batch runs
// under. It is released or rolled back before the next message, so one
// name serves them all.
const savepoint = "levqor_msg"

// BatchHandler adapts h into a bus.BatchHandler that runs a whole batch in
// one store transaction, so a batch costs one commit. Each message runs,
// in stream order, under a savepoint: the inbox claim, then h. When h (or
// the claim) fails, the transaction rolls back to the savepoint, undoing
// that message's effects alone, and carries on with the next message; the
// router then retries the failed message by itself. Messages of one batch
// therefore see each other's effects in order, as they would one
// transaction after the other.
//
// As with Handler, a message its consumer has already processed, in an
// earlier batch or earlier in the same batch, changes nothing and is
// acknowledged; a forced replay for its consumer runs again.
//
// A batch of one runs without a savepoint: its transaction is its
// savepoint.
func BatchHandler(s *store.Store, h TxHandler) bus.BatchHandler {
	return func(ctx context.Context, msgs []*bus.Message, step bus.Step) error {
		single := len(msgs) == 1
		var failed error // the step error that rolls back a batch of one
		err := s.InTx(ctx, func(tx *store.Tx) error {
			for _, m := range msgs {
				if !single {
					if err := tx.Savepoint(ctx, savepoint); err != nil {
						return err
					}
				}
				serr := step(ctx, m, func(ctx context.Context, m *bus.Message) error {
					ran, duplicate, err := Claim(ctx, tx, m)
					logDuplicate(ctx, ran, duplicate)
					if err != nil || !ran {
						return err
					}
					return h(ctx, tx, m)
				})
				if single {
					if serr != nil {
						failed = serr
						return serr
					}
					continue
				}
				if serr != nil {
					if err := tx.RollbackTo(ctx, savepoint); err != nil {
						return fmt.Errorf("undoing message %s after its failure (%v): %w", m.ID(), serr, err)
					}
				}
				if err := tx.Release(ctx, savepoint); err != nil {
					return err
				}
			}
			return nil
		})
		if failed != nil {
			// InTx returned the step's error, which the router already
			// has from the step.
			return nil
		}
		if err != nil {
			return err
		}
		return nil
	}
}
