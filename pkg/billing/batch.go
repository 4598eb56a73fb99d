package billing

import (
	"context"
	"maps"
	"slices"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
)

// StripeHandler is the handler of billing-stripe. Before a batch's
// transaction opens, it asks Stripe for what the batch's events do not
// carry (prefetch): no Stripe call is ever made with the transaction open,
// where a slow Stripe would hold the batch's locks, and every other
// message, for as long as it takes. It then applies the batch with
// set-based statements (applyBatch).
//
// A batch holding a forced replay (an operator's, which claims two inbox
// rows and runs despite the inbox) is applied a message at a time under
// savepoints instead (inbox.BatchHandler over HandleStripe).
func (w *Worker) StripeHandler() bus.BatchHandler {
	alone := inbox.BatchHandler(w.Store, w.HandleStripe)
	return func(ctx context.Context, msgs []*bus.Message, step bus.Step) error {
		ctx = w.prefetch(ctx, msgs)
		if slices.ContainsFunc(msgs, (*bus.Message).ForcedReplay) {
			return alone(ctx, msgs, step)
		}
		return w.applyBatch(ctx, msgs, step)
	}
}

// applyBatch applies a batch of Stripe events in one transaction and a
// dozen statements, whatever its size:
//
//  1. one INSERT claims every message in the inbox;
//  2. a few SELECTs load the accounts (locked), subscriptions, invoices,
//     charges and dunning rows the events name (batchState);
//  3. each event is applied in stream order to that state in memory,
//     through the same handler code as a single event, inside its step;
//     an event that fails has its changes undone and its claim taken back;
//  4. one multi-row statement a table writes the ledger rows and the
//     changed rows, and one the outbox events.
//
// Events of a customer are in one batch at a time and in stream order
// (StripeEventKey), and each sees the changes of those before it, so the
// out-of-order guards (SourceEvent.Newer) decide exactly as they do one
// event at a time. When a statement fails, the whole batch returns the
// error and the router runs its messages alone, each in its own
// transaction, which finds the failing one.
func (w *Worker) applyBatch(ctx context.Context, msgs []*bus.Message, step bus.Step) error {
	var committed []func()
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		run, err := inbox.ClaimBatch(ctx, tx, msgs)
		if err != nil {
			return err
		}
		parsed := make([]*parsedEvent, len(msgs))
		perr := make([]error, len(msgs))
		var keys store.BillingKeys
		for i, m := range msgs {
			if !run[i] {
				continue
			}
			if parsed[i], perr[i] = parseEvent(m); perr[i] == nil {
				parsed[i].addKeys(&keys)
			}
		}
		b := newBatchState(tx)
		if err := b.load(ctx, keys.Compact()); err != nil {
			return err
		}
		// unclaim holds the ids whose claim this batch holds for a
		// message that failed: a later copy of the same message in the
		// batch takes the claim over and runs, as it would one message at
		// a time; otherwise the claim is taken back.
		unclaim := map[string]bool{}
		for i, m := range msgs {
			runs := run[i]
			if !runs && unclaim[m.ID()] {
				runs = true
				delete(unclaim, m.ID())
				parsed[i], perr[i] = parseEvent(m) // its rows load when first read
			}
			mark := b.mark()
			serr := step(ctx, m, func(ctx context.Context, m *bus.Message) error {
				if !runs {
					inbox.LogDuplicate(ctx)
					return nil
				}
				if perr[i] != nil {
					return perr[i]
				}
				p := parsed[i]
				b.record(p.ledger)
				b.afterCommit(func() { logRecorded(ctx, p.ledger.ID) })
				return w.apply(ctx, b, m, p)
			})
			if b.failed != nil {
				// A statement failed: the transaction is of no more use.
				return b.failed
			}
			if serr != nil {
				b.undoTo(mark)
				if runs {
					unclaim[m.ID()] = true
				}
			}
		}
		if len(unclaim) > 0 {
			if err := tx.UnclaimInbox(ctx, msgs[0].Consumer, slices.Sorted(maps.Keys(unclaim))); err != nil {
				return err
			}
		}
		if err := b.flush(ctx); err != nil {
			return err
		}
		committed = b.onCommit
		return nil
	})
	if err != nil {
		return err
	}
	for _, fn := range committed {
		fn()
	}
	return nil
}

// addKeys adds what the event is about to k.
func (p *parsedEvent) addKeys(k *store.BillingKeys) {
	add := func(s *[]string, id string) {
		if id != "" {
			*s = append(*s, id)
		}
	}
	switch {
	case p.sub != nil:
		add(&k.Subscriptions, p.sub.ID)
		add(&k.Customers, p.sub.Customer.ID)
	case p.inv != nil:
		add(&k.Invoices, p.inv.ID)
		add(&k.Customers, p.inv.Customer.ID)
	case p.cs != nil:
		add(&k.Accounts, p.cs.ClientReferenceID)
		add(&k.Accounts, p.cs.Metadata["levqor_account"])
	case p.ch != nil:
		add(&k.Charges, p.ch.ID)
		add(&k.Customers, p.ch.Customer.ID)
	case p.dp != nil:
		add(&k.Charges, p.dp.Charge.ID)
		add(&k.Customers, p.dp.Charge.Customer.ID)
	case p.cus != nil:
		add(&k.Customers, p.cus.ID)
	}
}
