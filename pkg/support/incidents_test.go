package support_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/support"
)

func tickets(t *testing.T, b *bundle, accountID string) []store.Ticket {
	t.Helper()
	list, err := b.st.ListTickets(t.Context(), store.ListTicketsParams{AccountID: accountID, Limit: 100})
	require.NoError(t, err)
	return list
}

// TestAutomaticTicketsOnePerIncident: repeated and out-of-order reports of
// one incident make one ticket, noted while it is open, reopened by a newer
// report after it was resolved, never by an older one.
func TestAutomaticTicketsOnePerIncident(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		ctx := t.Context()
		t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		acc := b.account(t, "business", "business")
		overdue := func(at time.Time) map[string]any {
			return map[string]any{"account_id": acc, "source_id": "src_1", "source_name": "finance-db", "incident": "src_1@2026-03-02", "at": at}
		}

		require.NoError(t, b.event(t, support.IncidentBackupOverdue, "ev1", overdue(t0)))
		require.NoError(t, b.event(t, support.IncidentBackupOverdue, "ev1", overdue(t0)), "the same message again: the inbox drops it")
		require.NoError(t, b.event(t, support.IncidentBackupOverdue, "ev2", overdue(t0.Add(time.Hour))), "a repeat while open")
		list := tickets(t, b, acc)
		require.Len(t, list, 1)
		tk := list[0]
		require.Equal(t, store.TicketAutomatic, tk.Origin)
		require.Equal(t, "backup.overdue:src_1@2026-03-02", tk.IncidentKey)
		require.Equal(t, "backup_failure", tk.Category)
		require.Equal(t, "high", tk.Severity)
		require.Equal(t, "business", tk.Queue)
		require.Equal(t, t0, tk.OpenedAt, "timed by the event")
		require.Contains(t, string(tk.Triage), support.FiredIncidentSeverity)
		msgs, err := st.TicketMessages(ctx, tk.ID, 0, 1000)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, store.AuthorSystem, msgs[0].Author)
		require.Contains(t, msgs[0].Body, "finance-db")

		// Resolved by an agent; an older report arrives late: no reopening.
		b.ok(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: tk.ID, StatusBody: support.StatusBody{Status: store.TicketResolved}, ByOperator: true}, t0.Add(2*time.Hour))
		require.NoError(t, b.event(t, support.IncidentBackupOverdue, "ev0", overdue(t0.Add(-time.Hour))))
		require.Equal(t, store.TicketResolved, b.get(t, tk.ID).Status)
		// A newer one reopens the same ticket.
		require.NoError(t, b.event(t, support.IncidentBackupOverdue, "ev3", overdue(t0.Add(3*time.Hour))))
		require.Equal(t, store.TicketOpen, b.get(t, tk.ID).Status)
		require.Len(t, tickets(t, b, acc), 1)
		msgs, err = st.TicketMessages(ctx, tk.ID, 0, 1000)
		require.NoError(t, err)
		require.Len(t, msgs, 2)

		var mine []events.Name
		for _, e := range b.events(t) {
			if e.Payload["ticket_id"] == tk.ID {
				mine = append(mine, e.What)
			}
		}
		require.Equal(t, []events.Name{events.NameTicketOpened, events.NameTicketUpdated, events.NameTicketReopened}, mine)
		hist, err := st.TicketEvents(ctx, tk.ID)
		require.NoError(t, err)
		var histKinds []string
		for _, h := range hist {
			histKinds = append(histKinds, h.Kind)
		}
		require.Equal(t, []string{"opened", "incident_repeated", "status_changed", "incident_repeated", "reopened"}, histKinds)

		// Another incident of the same source is another ticket.
		corrupt := map[string]any{"account_id": acc, "source_id": "src_1", "snapshot_id": "snap_1", "incident": "snap_1", "at": t0}
		require.NoError(t, b.event(t, support.IncidentBackupCorrupt, "", corrupt))
		require.Len(t, tickets(t, b, acc), 2)
	})
}

func TestAutomaticTicketsFromEachDomain(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t))
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	growth := b.account(t, "growth", "standard")
	ent := b.account(t, "enterprise", "enterprise")
	legacy := b.account(t, "premium", "business") // a legacy name of business

	failed := func(acc, invoice string) map[string]any {
		return map[string]any{"account_id": acc, "invoice_id": invoice, "amount_due": 129900, "currency": "gbp", "attempt_count": 1, "tier": "x", "at": t0}
	}
	// Payment failures: business and enterprise only, one per invoice.
	require.NoError(t, b.event(t, support.IncidentPaymentFailed, "", failed(growth, "in_1")))
	require.Empty(t, tickets(t, b, growth))
	require.NoError(t, b.event(t, support.IncidentPaymentFailed, "", failed(ent, "in_2")))
	require.NoError(t, b.event(t, support.IncidentPaymentFailed, "", failed(ent, "in_2")))
	list := tickets(t, b, ent)
	require.Len(t, list, 1)
	require.Equal(t, "billing", list[0].Category)
	require.Equal(t, "Payment failed for invoice in_2", list[0].Subject)
	require.NoError(t, b.event(t, support.IncidentPaymentFailed, "", failed(legacy, "in_3")))
	require.Len(t, tickets(t, b, legacy), 1, "legacy tier names resolve through the catalog")

	// A blocked sweep: one ticket per source.
	blocked := map[string]any{"account_id": ent, "source_id": "src_9", "source_name": "files", "would_trash": 8, "active": 10, "at": t0}
	require.NoError(t, b.event(t, support.IncidentSweepBlocked, "", blocked))
	require.NoError(t, b.event(t, support.IncidentSweepBlocked, "", blocked))
	require.Len(t, tickets(t, b, ent), 2)

	// Dead letters: only when the event names an account.
	require.NoError(t, b.event(t, support.IncidentDLQGrowing, "", map[string]any{"consumer": "retention-cmd", "dlq_messages": 3, "slot": t0}))
	total, err := b.st.ListTickets(t.Context(), store.ListTicketsParams{Limit: 100})
	require.NoError(t, err)
	require.Len(t, total, 3, "no account named: no ticket")
	require.NoError(t, b.event(t, support.IncidentDLQGrowing, "", map[string]any{"account_id": ent, "consumer": "retention-cmd", "dlq_messages": 3, "slot": t0}))
	require.Len(t, tickets(t, b, ent), 3)

	// Events support does not use, its own included, are acknowledged.
	require.NoError(t, b.event(t, "billing.entitlements_changed", "", map[string]any{"account_id": ent}))
	require.NoError(t, b.event(t, string(events.NameTicketOpened), "", map[string]any{"account_id": ent}))

	// Malformed incidents are permanent failures, and open nothing.
	for name, tc := range map[string]struct {
		what    string
		payload any
	}{
		"NotJSON":          {support.IncidentBackupOverdue, []byte("{")},
		"NoIncident":       {support.IncidentBackupOverdue, map[string]any{"account_id": ent, "source_id": "src_1"}},
		"NoSource":         {support.IncidentBackupCorrupt, map[string]any{"account_id": ent, "incident": "x"}},
		"NoAccount":        {support.IncidentBackupCorrupt, map[string]any{"source_id": "src_1", "incident": "x"}},
		"UnknownAccount":   {support.IncidentBackupOverdue, map[string]any{"account_id": "acc_aaaaaaaaaaaaaaaaaaaaaaaaaa", "source_id": "src_1", "incident": "x"}},
		"NoInvoice":        {support.IncidentPaymentFailed, map[string]any{"account_id": ent}},
		"SweepNoSource":    {support.IncidentSweepBlocked, map[string]any{"account_id": ent}},
		"PaymentNoAccount": {support.IncidentPaymentFailed, map[string]any{"account_id": "acc_aaaaaaaaaaaaaaaaaaaaaaaaaa", "invoice_id": "in_1"}},
	} {
		err := b.event(t, tc.what, "", tc.payload)
		require.Error(t, err, name)
		require.True(t, bus.IsPermanent(err), "%s: %v", name, err)
	}
	require.Len(t, tickets(t, b, ent), 3)
}

// TestAutomaticTicketForAccountDeadLetters: the housekeeping watch's
// per-account ops.dlq_growing opens one ticket for that account and
// consumer; a repeat while it is open is noted on it, not a second ticket.
func TestAutomaticTicketForAccountDeadLetters(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		ctx := t.Context()
		t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		acc := b.account(t, "business", "business")
		other := b.account(t, "growth", "standard")
		piling := func(account, consumer string, slot time.Time, dead int) events.DLQGrowing {
			prev := slot.Add(-time.Minute)
			return events.DLQGrowing{Consumer: consumer, Stream: "COMMANDS", DLQMessages: 9, Previous: 4,
				PreviousSlot: &prev, Slot: slot, AccountID: account, DeadLettered: dead}
		}

		require.NoError(t, b.event(t, support.IncidentDLQGrowing, "", piling(acc, "retention-cmd", t0, 4)))
		list := tickets(t, b, acc)
		require.Len(t, list, 1)
		tk := list[0]
		require.Equal(t, store.TicketAutomatic, tk.Origin)
		require.Equal(t, "ops.dlq_growing:retention-cmd", tk.IncidentKey)
		require.Equal(t, "Messages for this account are failing in retention-cmd", tk.Subject)
		require.Equal(t, t0, tk.OpenedAt, "timed by the watch's slot")
		msgs, err := st.TicketMessages(ctx, tk.ID, 0, 1000)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Contains(t, msgs[0].Body, "4 messages of this account failed repeatedly in retention-cmd")
		require.NotContains(t, msgs[0].Body, "levqor dlq", "the customer's ticket carries no operator commands")

		require.NoError(t, b.event(t, support.IncidentDLQGrowing, "", piling(acc, "retention-cmd", t0.Add(time.Minute), 3)))
		list = tickets(t, b, acc)
		require.Len(t, list, 1, "a repeat while the ticket is open does not open another")
		require.Equal(t, tk.ID, list[0].ID)
		hist, err := st.TicketEvents(ctx, tk.ID)
		require.NoError(t, err)
		require.Equal(t, "incident_repeated", hist[len(hist)-1].Kind)

		require.NoError(t, b.event(t, support.IncidentDLQGrowing, "", piling(acc, "billing-cmd", t0, 3)))
		require.Len(t, tickets(t, b, acc), 2, "another consumer failing the account is another incident")
		require.NoError(t, b.event(t, support.IncidentDLQGrowing, "", piling(other, "retention-cmd", t0, 3)))
		require.Len(t, tickets(t, b, other), 1, "another account gets its own ticket")
		require.Len(t, tickets(t, b, acc), 2)
	})
}
