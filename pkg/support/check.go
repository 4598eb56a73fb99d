package support

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support/sla"
)

// checkPage is how many tickets the SLA check reads at a time.
const checkPage = 200

// CheckResult counts what one SLA check did.
type CheckResult struct {
	// Checked is how many open and pending tickets were evaluated.
	Checked int `json:"checked"`
	// AtRisk and Breached count the escalations raised.
	AtRisk   int `json:"at_risk"`
	Breached int `json:"breached"`
}

// HandleTick runs the support.sla_check job at the tick's slot. It does
// not go through the inbox: each ticket is checked in its own
// transaction, and its escalations are recorded under unique keys
// (sla.EscalationKey), so a redelivered tick escalates nothing twice and
// finishes what a crash interrupted.
func (w *Worker) HandleTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch("support", scheduler.Jobs{
		JobSLACheck: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.CheckSLA(ctx, t.Slot)
			return err
		},
		JobAutoClose: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			n, err := w.AutoClose(ctx, t.Slot, "autoclose:"+scheduler.MsgID(t.Job, t.Slot))
			if n > 0 {
				bus.Logger(ctx).WithField("tickets", n).Info("resolved tickets closed")
			}
			return err
		},
		JobDFYFollowup: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			n, err := w.DFYFollowup(ctx, t.Slot, "dfy_followup:"+scheduler.MsgID(t.Job, t.Slot))
			if n > 0 {
				bus.Logger(ctx).WithField("tickets", n).Info("stalled DFY work chased")
			}
			return err
		},
	})(ctx, m)
}

// CheckSLA evaluates every open and pending ticket's clocks at now and
// escalates those at risk or breached that have not been escalated for
// it: a breach moves the ticket to the escalation queue with its severity
// one step up; both record an escalation and an entry in the ticket's
// history, and raise levqor.event.support.sla_at_risk or .sla_breached. A
// ticket that fails does not stop the others; the errors are returned
// together so the tick is retried.
func (w *Worker) CheckSLA(ctx context.Context, now time.Time) (CheckResult, error) {
	now = now.UTC().Truncate(time.Microsecond)
	start := time.Now()
	log := bus.Logger(ctx).WithField("slot", now.Format(time.RFC3339))
	var res CheckResult
	var errs []error
	after := ""
	for {
		ids, err := w.Store.ActiveTicketIDs(ctx, after, checkPage)
		if err != nil {
			w.Metrics.check(time.Since(start), true)
			return res, err
		}
		for _, id := range ids {
			if err := w.checkTicket(ctx, id, now, &res); err != nil {
				errs = append(errs, fmt.Errorf("ticket %s: %w", id, err))
				log.WithFields(logrus.Fields{"ticket_id": id, "error": err.Error()}).Error("SLA check of a ticket failed; the tick will be retried")
			}
		}
		if len(ids) < checkPage {
			break
		}
		after = ids[len(ids)-1]
	}
	w.Metrics.check(time.Since(start), len(errs) > 0)
	log.WithFields(logrus.Fields{"tickets": res.Checked, "at_risk": res.AtRisk, "breached": res.Breached, "failed": len(errs)}).Info("SLA check done")
	return res, errors.Join(errs...)
}

func (w *Worker) checkTicket(ctx context.Context, id string, now time.Time, res *CheckResult) error {
	var atRisk, breached int
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		atRisk, breached = 0, 0
		t, err := tx.LockTicket(ctx, id)
		if err != nil {
			return err
		}
		if t.Status != store.TicketOpen && t.Status != store.TicketPending {
			return nil
		}
		keys, err := tx.EscalationKeys(ctx, t.ID)
		if err != nil {
			return err
		}
		before := *t
		escs := w.policy().Escalations(now, slaTicket(t), keys)
		for _, esc := range escs {
			e := store.TicketEscalation{
				TicketID: t.ID, AccountID: t.AccountID, Key: esc.Key, Clock: esc.Clock, State: string(esc.State),
				SeverityBefore: t.Severity, SeverityAfter: t.Severity, QueueBefore: t.Queue, QueueAfter: t.Queue, At: now,
			}
			if !esc.Due.IsZero() {
				due := esc.Due.UTC()
				e.DueAt = &due
			}
			if esc.State == sla.StateBreached {
				e.SeverityAfter, e.QueueAfter = esc.Severity, esc.Queue
			}
			recorded, err := tx.RecordEscalation(ctx, e)
			if err != nil {
				return err
			}
			if !recorded {
				continue
			}
			kind := "sla_at_risk"
			if esc.State == sla.StateBreached {
				kind = "escalated"
				t.Severity, t.Queue, t.Breached = e.SeverityAfter, e.QueueAfter, true
				breached++
			} else {
				atRisk++
			}
			detail := map[string]any{"key": e.Key, "clock": e.Clock, "state": e.State, "due": e.DueAt,
				"severity_before": e.SeverityBefore, "severity": e.SeverityAfter, "queue_before": e.QueueBefore, "queue": e.QueueAfter}
			if err := history(ctx, tx, t, kind, "sla_check", now, detail); err != nil {
				return err
			}
			about := events.SLAEscalation{Ticket: ticketAt(t, now), EscalationKey: e.Key, Clock: e.Clock, Due: e.DueAt,
				SeverityBefore: e.SeverityBefore, QueueBefore: e.QueueBefore}
			var ev events.Event = events.SLAAtRisk{SLAEscalation: about}
			if esc.State == sla.StateBreached {
				ev = events.SLABreached{SLAEscalation: about}
			}
			if err := w.emit(ctx, tx, "sla_check-"+t.ID, ev); err != nil {
				return err
			}
			w.Metrics.escalated(e.Clock, e.State)
			bus.Logger(ctx).WithFields(logrus.Fields{"account_id": t.AccountID, "ticket_id": t.ID, "escalation_key": e.Key,
				"severity": t.Severity, "queue": t.Queue}).Warn("ticket escalated")
		}
		w.refresh(t, now)
		if !changed(&before, t) {
			return nil
		}
		if atRisk+breached > 0 {
			t.UpdatedAt = now
		}
		return tx.UpdateTicket(ctx, *t)
	})
	if err != nil {
		return err
	}
	res.Checked++
	res.AtRisk += atRisk
	res.Breached += breached
	return nil
}

// changed reports whether the check changed what the ticket shows.
func changed(a, b *store.Ticket) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.Severity != b.Severity || a.Queue != b.Queue || a.Breached != b.Breached ||
		a.FirstResponseState != b.FirstResponseState || a.ResolutionState != b.ResolutionState ||
		!eq(a.FirstResponseDue, b.FirstResponseDue) || !eq(a.ResolutionDue, b.ResolutionDue)
}

// AutoClose closes, at now, every ticket resolved more than
// AutoCloseAfter before now and still resolved (a reply reopens a
// ticket): the change goes into the ticket's history as actor's, and out
// as support.ticket_updated and support.ticket_autoclosed, which the
// notify worker sends the customer. It returns how many it closed; a
// ticket that fails does not stop the others, and the errors are returned
// together so the tick is retried.
func (w *Worker) AutoClose(ctx context.Context, now time.Time, actor string) (int, error) {
	now = now.UTC().Truncate(time.Microsecond)
	after := cmp.Or(w.AutoCloseAfter, AutoCloseAfterDefault)
	cutoff := now.Add(-after)
	closed := 0
	var errs []error
	last := ""
	for {
		ids, err := w.Store.ResolvedTicketIDs(ctx, cutoff, last, checkPage)
		if err != nil {
			return closed, errors.Join(append(errs, err)...)
		}
		for _, id := range ids {
			done := false
			err := w.Store.InTx(ctx, func(tx *store.Tx) error {
				t, err := tx.LockTicket(ctx, id)
				if err != nil {
					return err
				}
				if t.Status != store.TicketResolved || t.ResolvedAt == nil || !t.ResolvedAt.Before(cutoff) {
					return nil // reopened or closed since it was listed
				}
				resolvedAt := *t.ResolvedAt
				if _, err := transition(t, store.TicketClosed, now); err != nil {
					return err
				}
				t.UpdatedAt = now
				w.refresh(t, now)
				if err := tx.UpdateTicket(ctx, *t); err != nil {
					return err
				}
				reason := fmt.Sprintf("resolved %s with no reply since", resolvedAt.Format(time.RFC3339))
				if err := history(ctx, tx, t, "status_changed", actor, now, map[string]any{
					"status": store.TicketClosed, "previous_status": store.TicketResolved, "reason": reason,
				}); err != nil {
					return err
				}
				if err := w.emit(ctx, tx, actor, events.TicketUpdated{Ticket: ticketAt(t, now), PreviousStatus: store.TicketResolved,
					FirstResponseDue: t.FirstResponseDue, ResolutionDue: t.ResolutionDue}); err != nil {
					return err
				}
				done = true
				return w.emit(ctx, tx, actor, events.TicketAutoClosed{Ticket: ticketAt(t, now), ResolvedAt: resolvedAt,
					Incident: "autoclosed:" + t.ID, Reason: reason})
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("closing ticket %s: %w", id, err))
				continue
			}
			if done {
				closed++
			}
		}
		if len(ids) < checkPage {
			return closed, errors.Join(errs...)
		}
		last = ids[len(ids)-1]
	}
}
