package support

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// The events that open tickets, as subjects under levqor.event.
const (
	IncidentPaymentFailed = string(events.NamePaymentFailed)
	IncidentBackupOverdue = string(events.NameBackupOverdue)
	IncidentBackupCorrupt = string(events.NameBackupCorrupt)
	IncidentSweepBlocked  = string(events.NameSweepBlocked)
	IncidentDLQGrowing    = string(events.NameDLQGrowing)
	IncidentDrillFailed   = string(events.NameDrillFailed)
)

// PaymentFailedTiers are the tiers whose failed payments open a ticket:
// their customers have an account manager who calls before dunning bites.
var PaymentFailedTiers = []string{"business", "enterprise"}

// incident is what an event reports, for one automatic ticket.
type incident struct {
	AccountID string
	// Key is unique per (account, incident): "<subject>:<what>".
	Key                string
	Subject, Body      string
	Category, Severity string
	At                 time.Time
	Detail             map[string]any
}

// HandleEvent opens tickets for other domains' incidents (an
// inbox.TxHandler, so each event is applied once): one ticket per
// incident. A repeat while the ticket is open or pending is noted in its
// history; a repeat after it was resolved or closed reopens it, unless the
// event is older than the resolution (events arrive out of order). Other
// events, the worker's own included, are acknowledged.
func (w *Worker) HandleEvent(ctx context.Context, tx *store.Tx, m *bus.Message) error {
	what, _ := w.topology().Unprefixed(bus.Events, m.Subject)
	var inc *incident
	var err error
	switch what {
	case IncidentPaymentFailed:
		inc, err = w.paymentFailed(ctx, tx, m)
	case IncidentBackupOverdue, IncidentBackupCorrupt:
		inc, err = backupIncident(what, m)
	case IncidentSweepBlocked:
		inc, err = sweepBlocked(m)
	case IncidentDLQGrowing:
		inc, err = dlqGrowing(m)
	case IncidentDFYPurchased:
		inc, err = w.dfyPurchased(m)
	case IncidentDrillFailed:
		inc, err = drillFailed(m)
	default:
		return nil
	}
	if err != nil || inc == nil {
		return err
	}
	if inc.At.IsZero() {
		inc.At = m.Published
	}
	if inc.At.IsZero() {
		inc.At = w.now()
	}
	inc.At = inc.At.UTC().Truncate(time.Microsecond)
	return w.raise(ctx, tx, m, what, inc)
}

// raise opens the incident's ticket, notes a repeat, or reopens it.
func (w *Worker) raise(ctx context.Context, tx *store.Tx, m *bus.Message, what string, inc *incident) error {
	log := bus.Logger(ctx).WithFields(logrus.Fields{"account_id": inc.AccountID, "incident": inc.Key})
	actor := "event:" + what
	detail := map[string]any{"event": what, "event_id": m.ID(), "incident_key": inc.Key, "incident_at": inc.At}
	for k, v := range inc.Detail {
		detail[k] = v
	}
	t, err := tx.LockTicketByIncident(ctx, inc.AccountID, inc.Key)
	if errors.Is(err, store.ErrNotFound) {
		t, err = w.open(ctx, tx, newTicket{
			ID: IncidentTicketID(inc.AccountID, inc.Key), AccountID: inc.AccountID, Subject: inc.Subject, Body: inc.Body,
			Category: inc.Category, Severity: inc.Severity, Origin: store.TicketAutomatic, IncidentKey: inc.Key,
			Author: store.AuthorSystem, Actor: actor, At: inc.At, Correlation: m.CorrelationID(), Detail: detail,
		})
		if err != nil {
			return asEventError(err)
		}
		if t == nil {
			return fmt.Errorf("ticket for incident %s of %s was opened concurrently; retrying", inc.Key, inc.AccountID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if t.Status == store.TicketOpen || t.Status == store.TicketPending {
		detail["status"] = t.Status
		log.WithField("ticket_id", t.ID).Info("incident repeated; its ticket is still open")
		return history(ctx, tx, t, "incident_repeated", actor, notBefore(inc.At, lastChange(t)), detail)
	}
	stoppedAt := t.ResolvedAt
	if stoppedAt == nil {
		stoppedAt = t.ClosedAt
	}
	if stoppedAt != nil && !inc.At.After(*stoppedAt) {
		// An older report of the incident, arriving after the ticket
		// was resolved: it says nothing new.
		detail["status"], detail["stale"] = t.Status, true
		log.WithField("ticket_id", t.ID).Info("older report of a resolved incident; not reopening")
		return history(ctx, tx, t, "incident_repeated", actor, notBefore(inc.At, lastChange(t)), detail)
	}
	at := notBefore(inc.At, lastChange(t))
	from := t.Status
	if _, err := transition(t, store.TicketOpen, at); err != nil {
		return bus.Permanent(err)
	}
	t.UpdatedAt = at
	w.refresh(t, at)
	if err := tx.UpdateTicket(ctx, *t); err != nil {
		return err
	}
	id, err := tx.AppendTicketMessage(ctx, store.TicketMessage{TicketID: t.ID, AccountID: t.AccountID, Author: store.AuthorSystem,
		Body: "The incident happened again.\n\n" + inc.Body, At: at})
	if err != nil {
		return err
	}
	detail["status"], detail["previous_status"], detail["message_id"] = t.Status, from, id
	if err := history(ctx, tx, t, "reopened", actor, at, detail); err != nil {
		return err
	}
	w.Metrics.ticketReopened()
	log.WithField("ticket_id", t.ID).Info("incident happened again; ticket reopened")
	return w.emit(ctx, tx, m.CorrelationID(), events.TicketReopened{
		Ticket: ticketAt(t, at), PreviousStatus: from, IncidentKey: inc.Key, FirstResponseDue: t.FirstResponseDue, ResolutionDue: t.ResolutionDue,
	})
}

// asEventError turns a command failure from open (an unknown account, a
// category the rules do not know) into a permanent event failure.
func asEventError(err error) error {
	var ce *command.Error
	if errors.As(err, &ce) {
		return bus.Permanent(err)
	}
	return err
}

// paymentFailed reads billing.payment_failed: a ticket for business and
// enterprise accounts, one per invoice.
func (w *Worker) paymentFailed(ctx context.Context, tx *store.Tx, m *bus.Message) (*incident, error) {
	ev, err := events.Decode[events.PaymentFailed](m)
	if err != nil {
		return nil, err
	}
	if ev.AccountID == "" {
		ev.AccountID = m.Account()
	}
	if ev.AccountID == "" || ev.InvoiceID == "" {
		return nil, bus.Permanentf("%s: account_id and invoice_id are required", IncidentPaymentFailed)
	}
	_, prof, err := w.accountProfile(ctx, tx, ev.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, bus.Permanentf("%s: no account %s", IncidentPaymentFailed, ev.AccountID)
	}
	if err != nil {
		return nil, err
	}
	tierOK := false
	for _, t := range PaymentFailedTiers {
		tierOK = tierOK || prof.Tier == t
	}
	if !tierOK {
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": ev.AccountID, "tier": prof.Tier}).Debug("payment failed on a tier without a support ticket for it")
		return nil, nil
	}
	body := fmt.Sprintf("Stripe could not collect the payment of invoice %s (%s %s, attempt %d). "+
		"Billing marks the account past due; it is suspended if the invoice stays unpaid after the grace period.",
		ev.InvoiceID, formatAmount(ev.AmountDue), strings.ToUpper(ev.Currency), ev.AttemptCount)
	if ev.GraceUntil != nil && !ev.GraceUntil.IsZero() {
		body += " Grace period ends " + ev.GraceUntil.UTC().Format(time.RFC3339) + "."
	}
	return &incident{
		AccountID: ev.AccountID, Key: IncidentPaymentFailed + ":" + ev.InvoiceID,
		Subject: "Payment failed for invoice " + ev.InvoiceID, Body: body, Category: "billing", Severity: "high", At: ev.At,
		Detail: map[string]any{"invoice_id": ev.InvoiceID, "attempt_count": ev.AttemptCount},
	}, nil
}

func formatAmount(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d", sign, minor/100, minor%100)
}

// backupIncident reads backup.overdue and backup.corrupt: account_id,
// source_id and incident (the dedupe key) are required, snapshot_id is
// optional.
func backupIncident(what string, m *bus.Message) (*incident, error) {
	// What the ticket needs of either event.
	var ev struct {
		AccountID, SourceID, SourceName, SnapshotID, Incident string
		At                                                    time.Time
	}
	if what == IncidentBackupOverdue {
		o, err := events.Decode[events.BackupOverdue](m)
		if err != nil {
			return nil, err
		}
		ev.AccountID, ev.SourceID, ev.SourceName, ev.Incident, ev.At = o.AccountID, o.SourceID, o.SourceName, o.Incident, o.At
	} else {
		c, err := events.Decode[events.BackupCorrupt](m)
		if err != nil {
			return nil, err
		}
		ev.AccountID, ev.SourceID, ev.SnapshotID, ev.Incident, ev.At = c.AccountID, c.SourceID, c.SnapshotID, c.Incident, c.At
	}
	var missing []string
	for _, f := range [][2]string{{"account_id", ev.AccountID}, {"source_id", ev.SourceID}, {"incident", ev.Incident}} {
		if strings.TrimSpace(f[1]) == "" {
			missing = append(missing, f[0])
		}
	}
	if len(missing) > 0 {
		return nil, bus.Permanentf("%s: missing %s", what, strings.Join(missing, ", "))
	}
	source := ev.SourceID
	if ev.SourceName != "" {
		source = fmt.Sprintf("%q (%s)", ev.SourceName, ev.SourceID)
	}
	inc := &incident{AccountID: ev.AccountID, Key: what + ":" + ev.Incident, Category: "backup_failure", Severity: "high", At: ev.At,
		Detail: map[string]any{"source_id": ev.SourceID}}
	if what == IncidentBackupOverdue {
		inc.Subject = "Backup overdue for source " + ev.SourceID
		inc.Body = "No backup of source " + source + " arrived when its schedule expected one."
	} else {
		inc.Subject = "Corrupt backup for source " + ev.SourceID
		inc.Body = "A backup of source " + source + " failed its integrity check; it may not restore."
	}
	if ev.SnapshotID != "" {
		inc.Body += " Snapshot: " + ev.SnapshotID + "."
		inc.Detail["snapshot_id"] = ev.SnapshotID
	}
	return inc, nil
}

// sweepBlocked reads backup.sweep_blocked: one ticket per source while
// sweeps of it stay blocked.
func sweepBlocked(m *bus.Message) (*incident, error) {
	ev, err := events.Decode[events.SweepBlocked](m)
	if err != nil {
		return nil, err
	}
	if ev.AccountID == "" || ev.SourceID == "" {
		return nil, bus.Permanentf("%s: account_id and source_id are required", IncidentSweepBlocked)
	}
	body := fmt.Sprintf("The retention sweep of source %q (%s) stopped at its safety limit: it would have sent %d of %d active snapshots to the trash at once, so it deleted nothing. Check the source's retention policy.",
		ev.SourceName, ev.SourceID, ev.WouldTrash, ev.Active)
	if ev.Message != "" {
		body += "\n\n" + ev.Message
	}
	return &incident{
		AccountID: ev.AccountID, Key: IncidentSweepBlocked + ":" + ev.SourceID,
		Subject: "Retention sweep blocked for source " + ev.SourceID, Body: body, Category: "backup_failure", Severity: "normal", At: ev.At,
		Detail: map[string]any{"source_id": ev.SourceID, "would_trash": ev.WouldTrash, "active": ev.Active},
	}, nil
}

// dlqGrowing reads ops.dlq_growing: a ticket only when the event names an
// account (in its payload or its Levqor-Account header), one per (account,
// consumer): the incident key names the consumer and tickets are looked up
// per account, so a repeat while the ticket is open only adds to its
// history. The housekeeping watch raises such events when dead letters of
// one account pile up (dead_lettered: how many since its previous watch).
func dlqGrowing(m *bus.Message) (*incident, error) {
	ev, err := events.Decode[events.DLQGrowing](m)
	if err != nil {
		return nil, err
	}
	if ev.AccountID == "" {
		ev.AccountID = m.Account()
	}
	if ev.AccountID == "" {
		// An operator alert about the platform, not about a customer.
		return nil, nil
	}
	if ev.Consumer == "" {
		return nil, bus.Permanentf("%s: consumer is required", IncidentDLQGrowing)
	}
	// The ticket is the customer's to read: it says what happened to
	// their work, not the platform-wide dead-letter counts.
	inc := &incident{
		AccountID: ev.AccountID, Key: IncidentDLQGrowing + ":" + ev.Consumer,
		Subject: "Messages for this account are failing in " + ev.Consumer,
		Body: "Some of this account's work failed repeatedly and was set aside for an operator to fix and replay " +
			"(consumer " + ev.Consumer + "). Nothing is lost; it is not done yet.",
		Category: "other", Severity: "high", At: ev.Slot,
		Detail: map[string]any{"consumer": ev.Consumer},
	}
	if ev.DeadLettered > 0 {
		inc.Body = fmt.Sprintf("%d messages of this account failed repeatedly in %s and were set aside for an operator to fix "+
			"and replay. Nothing is lost; that work is not done yet.", ev.DeadLettered, ev.Consumer)
		inc.Detail["dead_lettered"] = ev.DeadLettered
	}
	return inc, nil
}

// drillFailed reads backup.drill_failed: a restore drill could not prove
// a source's backups restore; one ticket per drill.
func drillFailed(m *bus.Message) (*incident, error) {
	ev, err := events.Decode[events.DrillFailed](m)
	if err != nil {
		return nil, err
	}
	if ev.AccountID == "" || ev.SourceID == "" || ev.Incident == "" {
		return nil, bus.Permanentf("%s: account_id, source_id and incident are required", IncidentDrillFailed)
	}
	return &incident{
		AccountID: ev.AccountID, Key: IncidentDrillFailed + ":" + ev.Incident,
		Subject: "Restore drill failed for source " + ev.SourceID,
		Body: fmt.Sprintf("The restore drill %s of snapshot %s (source %s) failed: %s\n\nUntil a drill passes, do not count on that snapshot; "+
			"check the source's newer snapshots, or restore one by hand (POST /v1/snapshots/{id}/restore) to see what fails.", ev.DrillID, ev.SnapshotID, ev.SourceID, ev.Reason),
		Category: "backup_failure", Severity: "high", At: ev.At,
		Detail: map[string]any{"drill_id": ev.DrillID, "snapshot_id": ev.SnapshotID, "source_id": ev.SourceID},
	}, nil
}
