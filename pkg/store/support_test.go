package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func supportAccount(t *testing.T, st *store.Store, id string) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: id, Name: id, ContactEmail: "ops@" + id + ".example", StripeCustomerID: "cus_" + id})
		return err
	}))
}

func newTicket(id, account string, opened time.Time) store.Ticket {
	due := opened.Add(time.Hour)
	return store.Ticket{
		ID: id, AccountID: account, Subject: "Restore my files", Status: store.TicketOpen, Category: "restore_request",
		Severity: "high", Queue: "business", Tier: "business", SLAClass: "business", Origin: store.TicketByCustomer,
		Triage: json.RawMessage(`{"category":"restore_request","fired_rules":["restore_request.ask"]}`), OpenedAt: opened,
		FirstResponseDue: &due, CreatedAt: opened, UpdatedAt: opened,
	}
}

func TestTickets(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		supportAccount(t, st, "acc_a")
		supportAccount(t, st, "acc_b")
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

		insert := func(tk store.Ticket) bool {
			var ok bool
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				var err error
				ok, err = tx.InsertTicket(ctx, tk)
				return err
			}))
			return ok
		}
		a1 := newTicket("tkt_a1", "acc_a", t0)
		require.True(t, insert(a1))
		require.False(t, insert(a1), "same id: not inserted twice")
		a2 := newTicket("tkt_a2", "acc_a", t0.Add(time.Minute))
		a2.Origin, a2.IncidentKey = store.TicketAutomatic, "backup.overdue:src_1"
		require.True(t, insert(a2))
		dup := newTicket("tkt_a3", "acc_a", t0.Add(2*time.Minute))
		dup.Origin, dup.IncidentKey = store.TicketAutomatic, "backup.overdue:src_1"
		require.False(t, insert(dup), "one ticket per incident and account")
		other := newTicket("tkt_b1", "acc_b", t0.Add(3*time.Minute))
		other.Origin, other.IncidentKey, other.Queue = store.TicketAutomatic, "backup.overdue:src_1", "general"
		require.True(t, insert(other), "another account's incident of the same key is its own")

		got, err := st.GetTicket(ctx, "tkt_a1")
		require.NoError(t, err)
		require.Equal(t, "restore_request", got.Category)
		require.Equal(t, t0, got.OpenedAt)
		require.Equal(t, t0.Add(time.Hour), *got.FirstResponseDue)
		require.Nil(t, got.ResolutionDue)
		require.JSONEq(t, string(a1.Triage), string(got.Triage))
		require.Empty(t, got.Pauses)
		require.Equal(t, "ok", got.FirstResponseState)
		_, err = st.GetTicket(ctx, "tkt_none")
		require.ErrorIs(t, err, store.ErrNotFound)

		// Update: a pending pause, then resolved; found by incident.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			tk, err := tx.LockTicketByIncident(ctx, "acc_a", "backup.overdue:src_1")
			if err != nil {
				return err
			}
			require.Equal(t, "tkt_a2", tk.ID)
			end := t0.Add(3 * time.Hour)
			res := t0.Add(4 * time.Hour)
			tk.Status, tk.Severity, tk.Queue, tk.Breached = store.TicketResolved, "critical", "escalations", true
			tk.Pauses = []store.TicketPause{{From: t0.Add(2 * time.Hour), To: &end}, {From: res}}
			tk.ResolvedAt, tk.ResolutionState, tk.UpdatedAt = &res, "met", res
			return tx.UpdateTicket(ctx, *tk)
		}))
		got, err = st.GetTicket(ctx, "tkt_a2")
		require.NoError(t, err)
		require.Equal(t, store.TicketResolved, got.Status)
		require.Equal(t, "escalations", got.Queue)
		require.True(t, got.Breached)
		require.Len(t, got.Pauses, 2)
		require.Equal(t, t0.Add(3*time.Hour), *got.Pauses[0].To)
		require.Nil(t, got.Pauses[1].To)
		require.Equal(t, "met", got.ResolutionState)
		require.ErrorIs(t, st.InTx(ctx, func(tx *store.Tx) error {
			return tx.UpdateTicket(ctx, newTicket("tkt_none", "acc_a", t0))
		}), store.ErrNotFound)

		// Lists: tenancy, filters, pages.
		list := func(p store.ListTicketsParams) []string {
			if p.Limit == 0 {
				p.Limit = 10
			}
			page, err := st.ListTickets(ctx, p)
			require.NoError(t, err)
			var ids []string
			for _, tk := range page {
				ids = append(ids, tk.ID)
			}
			return ids
		}
		require.Equal(t, []string{"tkt_b1", "tkt_a2", "tkt_a1"}, list(store.ListTicketsParams{}))
		require.Equal(t, []string{"tkt_a2", "tkt_a1"}, list(store.ListTicketsParams{AccountID: "acc_a"}))
		require.Equal(t, []string{"tkt_b1", "tkt_a1"}, list(store.ListTicketsParams{Statuses: []string{store.TicketOpen, store.TicketPending}}))
		require.Equal(t, []string{"tkt_b1"}, list(store.ListTicketsParams{Queue: "general"}))
		yes, no := true, false
		require.Equal(t, []string{"tkt_a2"}, list(store.ListTicketsParams{Breached: &yes, Now: t0}), "recorded breach")
		require.Equal(t, []string{"tkt_b1", "tkt_a1"}, list(store.ListTicketsParams{Breached: &no, Now: t0}))
		require.Equal(t, []string{"tkt_b1", "tkt_a2", "tkt_a1"}, list(store.ListTicketsParams{Breached: &yes, Now: t0.Add(2 * time.Hour)}),
			"a running first-response clock past its due time counts before any check recorded it")
		require.Equal(t, []string{"tkt_b1", "tkt_a2"}, list(store.ListTicketsParams{Limit: 2}))
		require.Equal(t, []string{"tkt_a1"}, list(store.ListTicketsParams{After: &store.TicketCursor{OpenedAt: t0.Add(time.Minute), ID: "tkt_a2"}}))

		ids, err := st.ActiveTicketIDs(ctx, "", 10)
		require.NoError(t, err)
		require.Equal(t, []string{"tkt_a1", "tkt_b1"}, ids, "resolved tickets are not checked")
		ids, err = st.ActiveTicketIDs(ctx, "tkt_a1", 10)
		require.NoError(t, err)
		require.Equal(t, []string{"tkt_b1"}, ids)

		// Messages, history, escalations.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.AppendTicketMessage(ctx, store.TicketMessage{TicketID: "tkt_a1", AccountID: "acc_a", Author: store.AuthorCustomer, KeyID: "key_1", Body: "Please help\nsoon", At: t0}); err != nil {
				return err
			}
			if _, err := tx.AppendTicketMessage(ctx, store.TicketMessage{TicketID: "tkt_a1", AccountID: "acc_a", Author: store.AuthorAgent, KeyID: "key_op", Body: "On it", At: t0.Add(time.Minute)}); err != nil {
				return err
			}
			if _, err := tx.AppendTicketEvent(ctx, store.TicketEvent{TicketID: "tkt_a1", AccountID: "acc_a", Kind: "opened", Actor: "key:key_1", Detail: json.RawMessage(`{"fired_rules":["restore_request.ask"]}`), At: t0}); err != nil {
				return err
			}
			due := t0.Add(time.Hour)
			e := store.TicketEscalation{TicketID: "tkt_a1", AccountID: "acc_a", Key: "first_response.breached", Clock: "first_response", State: "breached",
				SeverityBefore: "high", SeverityAfter: "critical", QueueBefore: "business", QueueAfter: "escalations", DueAt: &due, At: t0.Add(2 * time.Hour)}
			ok, err := tx.RecordEscalation(ctx, e)
			require.NoError(t, err)
			require.True(t, ok)
			e.At = t0.Add(3 * time.Hour)
			ok, err = tx.RecordEscalation(ctx, e)
			require.NoError(t, err)
			require.False(t, ok, "the same breach is recorded once")
			keys, err := tx.EscalationKeys(ctx, "tkt_a1")
			require.NoError(t, err)
			require.Equal(t, []string{"first_response.breached"}, keys)
			return nil
		}))
		msgs, err := st.TicketMessages(ctx, "tkt_a1", 0, 10)
		require.NoError(t, err)
		require.Len(t, msgs, 2)
		require.Equal(t, "Please help\nsoon", msgs[0].Body)
		require.Equal(t, store.AuthorAgent, msgs[1].Author)
		page, err := st.TicketMessages(ctx, "tkt_a1", msgs[0].ID, 10)
		require.NoError(t, err)
		require.Equal(t, msgs[1:], page, "after the first, the rest")
		page, err = st.TicketMessages(ctx, "tkt_a1", 0, 1)
		require.NoError(t, err)
		require.Equal(t, msgs[:1], page, "at most limit")
		hist, err := st.TicketEvents(ctx, "tkt_a1")
		require.NoError(t, err)
		require.Len(t, hist, 1)
		require.JSONEq(t, `{"fired_rules":["restore_request.ask"]}`, string(hist[0].Detail))
		escs, err := st.TicketEscalations(ctx, "tkt_a1")
		require.NoError(t, err)
		require.Len(t, escs, 1)
		require.Equal(t, "escalations", escs[0].QueueAfter)
		require.Equal(t, t0.Add(time.Hour), *escs[0].DueAt)
		require.Equal(t, t0.Add(2*time.Hour), escs[0].At)

		// DFY purchases route tickets to the dfy queue.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			has, err := tx.HasDFYPurchase(ctx, "acc_a")
			require.NoError(t, err)
			require.False(t, has)
			return nil
		}))
	})
}
