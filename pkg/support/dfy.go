package support

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// IncidentDFYPurchased opens the work item of a paid Done-For-You
// package: one ticket per package and Checkout session.
const IncidentDFYPurchased = string(events.NameDFYPurchased)

// JobDFYFollowup chases stalled Done-For-You work items, as the
// scheduler's catalog names it.
const JobDFYFollowup = scheduler.JobDFYFollowup

// ConsumerDFYTicks reads the dfy.* jobs' ticks.
const ConsumerDFYTicks = "dfy-tick"

// DFYFollowupAfterDefault is LEVQOR_DFY_FOLLOWUP_AFTER: how long a DFY
// work item may stay open without a change before dfy.followup chases it.
const DFYFollowupAfterDefault = 72 * time.Hour

// DFYTickConsumer declares dfy-tick: the ticks of the dfy.* jobs.
func DFYTickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerDFYTicks, Kind: bus.Ticks, Filter: "dfy.>"}
}

// dfyPurchased reads billing.dfy_purchased, which billing raises once a
// package is paid: the DFY team's work item, a ticket listing the
// package's checklist from the catalog. Routing sends it to the dfy queue
// (the account has a DFY purchase now); resolving the ticket is finishing
// the work.
func (w *Worker) dfyPurchased(m *bus.Message) (*incident, error) {
	ev, err := events.Decode[events.DFYPurchased](m)
	if err != nil {
		return nil, err
	}
	if ev.AccountID == "" {
		ev.AccountID = m.Account()
	}
	ref := cmp.Or(ev.CheckoutSessionID, ev.StripeEventID)
	if ev.AccountID == "" || ev.Package == "" || ref == "" {
		return nil, bus.Permanentf("%s: account_id, package and checkout_session_id are required", IncidentDFYPurchased)
	}
	description := ev.Package
	var checklist []string
	if w.Catalog != nil {
		if p, ok := w.Catalog.Package(ev.Package); ok {
			description, checklist = cmp.Or(p.Description, ev.Package), p.Checklist
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The customer bought %s (%s", ev.Package, description)
	if ev.Quantity > 1 {
		fmt.Fprintf(&b, ", quantity %d", ev.Quantity)
	}
	fmt.Fprintf(&b, "), paid in Checkout session %s.\n", ref)
	if len(checklist) > 0 {
		b.WriteString("\nChecklist:\n")
		for _, item := range checklist {
			b.WriteString("- [ ] " + item + "\n")
		}
	}
	b.WriteString("\nResolve this ticket when the work is done. While it stays open with no change, dfy.followup chases it.")
	return &incident{
		AccountID: ev.AccountID, Key: IncidentDFYPurchased + ":" + ref + ":" + ev.Package,
		Subject: "Done-For-You: " + description, Body: b.String(), Category: "account", Severity: "normal", At: ev.At,
		Detail: map[string]any{"package": ev.Package, "quantity": ev.Quantity, "checkout_session_id": ev.CheckoutSessionID, "checklist": checklist},
	}, nil
}

// DFYFollowup chases, at now, every DFY work item (a ticket
// billing.dfy_purchased opened) still open or pending whose last change
// is older than DFYFollowupAfter: the chase goes into the ticket's
// history as actor's, touches the ticket (so the next chase comes one
// period later, if nothing moves meanwhile), and raises
// support.dfy_stalled for the DFY team. It returns how many it chased; a
// ticket that fails does not stop the others, and the errors are
// returned together so the tick is retried.
func (w *Worker) DFYFollowup(ctx context.Context, now time.Time, actor string) (int, error) {
	now = now.UTC().Truncate(time.Microsecond)
	after := cmp.Or(w.DFYFollowupAfter, DFYFollowupAfterDefault)
	cutoff := now.Add(-after)
	chased := 0
	var errs []error
	last := ""
	for {
		ids, err := w.Store.StalledIncidentTicketIDs(ctx, IncidentDFYPurchased+":", cutoff, last, checkPage)
		if err != nil {
			return chased, errors.Join(append(errs, err)...)
		}
		for _, id := range ids {
			done, err := w.chase(ctx, id, cutoff, after, now, actor)
			if err != nil {
				errs = append(errs, fmt.Errorf("chasing ticket %s: %w", id, err))
				continue
			}
			if done {
				chased++
			}
		}
		if len(ids) < checkPage {
			return chased, errors.Join(errs...)
		}
		last = ids[len(ids)-1]
	}
}

func (w *Worker) chase(ctx context.Context, id string, cutoff time.Time, after time.Duration, now time.Time, actor string) (bool, error) {
	done := false
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		t, err := tx.LockTicket(ctx, id)
		if err != nil {
			return err
		}
		if (t.Status != store.TicketOpen && t.Status != store.TicketPending) || !t.UpdatedAt.Before(cutoff) {
			return nil // moved since it was listed
		}
		since := t.UpdatedAt
		pkg := ""
		if parts := strings.Split(t.IncidentKey, ":"); len(parts) >= 3 {
			pkg = parts[len(parts)-1]
		}
		reason := fmt.Sprintf("no change since %s (%s)", since.Format(time.RFC3339), after)
		t.UpdatedAt = now
		if err := tx.UpdateTicket(ctx, *t); err != nil {
			return err
		}
		if err := history(ctx, tx, t, "dfy_chased", actor, now, map[string]any{"stalled_since": since, "reason": reason}); err != nil {
			return err
		}
		done = true
		return w.emit(ctx, tx, actor, events.DFYStalled{Ticket: ticketAt(t, now), Package: pkg, StalledSince: since,
			Incident: "dfy_stalled:" + t.ID + ":" + since.Format(time.RFC3339Nano), Reason: reason})
	})
	return done, err
}
