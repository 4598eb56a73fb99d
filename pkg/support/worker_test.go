package support_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/support"
	"github.com/levqor/levqor/pkg/support/triage"
)

var london = func() *time.Location {
	l, err := time.LoadLocation("Europe/London")
	if err != nil {
		panic(err)
	}
	return l
}()

func firedRules(t *testing.T, v support.TicketView) []string {
	t.Helper()
	var d triage.Decision
	require.NoError(t, json.Unmarshal(v.Triage, &d))
	return d.FiredRules
}

func TestCreateTicketTriagesRoutesAndTimesIt(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		ctx := t.Context()
		monday := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

		// Enterprise, 24×7: 15 minutes to answer a critical ticket.
		ent := b.account(t, "enterprise", "enterprise")
		v := b.ok(t, support.ActionCreateTicket, ent, support.CreateTicketParams{Subject: "We lost data", Body: "The files of our finance share are gone."}, monday)
		require.Equal(t, support.TicketIDPrefix, v.ID[:4])
		require.Equal(t, "data_loss", v.Category)
		require.Equal(t, "critical", v.Severity)
		require.Equal(t, "priority", v.Queue)
		require.Equal(t, "enterprise", v.SLAClass)
		require.Equal(t, store.TicketByCustomer, v.Origin)
		require.Equal(t, []string{"data_loss.lost", "route.enterprise_critical"}, firedRules(t, v))
		require.Equal(t, monday.Add(15*time.Minute), *v.SLA.FirstResponse.Due)
		require.Equal(t, monday.Add(4*time.Hour), *v.SLA.Resolution.Due)
		require.Equal(t, "ok", v.SLA.FirstResponse.State)
		stored := b.get(t, v.ID)
		require.Equal(t, monday, stored.OpenedAt)
		msgs, err := st.TicketMessages(ctx, v.ID, 0, 1000)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, store.AuthorCustomer, msgs[0].Author)

		// Business hours: opened Friday 17:00 London with 2 business hours
		// to answer, due Monday 09:00.
		biz := b.account(t, "business", "business")
		friday := time.Date(2026, 3, 6, 17, 0, 0, 0, london)
		v = b.ok(t, support.ActionCreateTicket, biz, support.CreateTicketParams{Subject: "Restore my files urgently", Body: "Yesterday's version please."}, friday)
		require.Equal(t, "restore_request", v.Category)
		require.Equal(t, "high", v.Severity)
		require.Equal(t, "business", v.Queue)
		require.Contains(t, firedRules(t, v), "route.business")
		require.Equal(t, time.Date(2026, 3, 9, 9, 0, 0, 0, london).UTC(), v.SLA.FirstResponse.Due.UTC())

		// No subscription: the general queue and the fallback class.
		none := b.account(t, "", "")
		v = b.ok(t, support.ActionCreateTicket, none, support.CreateTicketParams{Subject: "Question", Body: "How do I invite a team member?"}, monday)
		require.Equal(t, "general", v.Queue)
		require.Equal(t, "standard", v.SLAClass)
		require.Equal(t, "account", v.Category)

		// The customer's own choice stands; a DFY customer goes to dfy.
		dfy := b.account(t, "growth", "standard")
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.InsertDFYPurchase(ctx, store.DFYPurchase{CheckoutSessionID: "cs_1", AccountID: dfy, Package: "dfy_onboarding", Quantity: 1, PurchasedAt: monday})
			return err
		}))
		v = b.ok(t, support.ActionCreateTicket, dfy, support.CreateTicketParams{Subject: "Invoice wrong", Body: "Seats are wrong.", Category: "billing", Severity: "high"}, monday)
		require.Equal(t, "billing", v.Category)
		require.Equal(t, "high", v.Severity)
		require.Equal(t, "dfy", v.Queue)
		require.Contains(t, firedRules(t, v), triage.FiredCustomerSeverity)

		// Bad input names the field; nothing is opened.
		b.fails(t, support.ActionCreateTicket, ent, support.CreateTicketParams{Subject: "x", Body: "y", Category: "hardware"}, monday, http.StatusUnprocessableEntity, "invalid_field", "category")
		b.fails(t, support.ActionCreateTicket, ent, support.CreateTicketParams{Subject: "", Body: "y"}, monday, http.StatusUnprocessableEntity, "invalid_field", "subject")
		b.fails(t, support.ActionCreateTicket, ent, support.CreateTicketParams{Subject: "x", Body: "y", Severity: "urgent"}, monday, http.StatusUnprocessableEntity, "invalid_field", "severity")
		b.fails(t, support.ActionCreateTicket, "acc_aaaaaaaaaaaaaaaaaaaaaaaaaa", support.CreateTicketParams{Subject: "x", Body: "y"}, monday, http.StatusNotFound, "not_found", "account_id")
		list, err := st.ListTickets(ctx, store.ListTicketsParams{Limit: 100})
		require.NoError(t, err)
		require.Len(t, list, 4)

		evs := b.events(t)
		require.Equal(t, []events.Name{events.NameTicketOpened, events.NameTicketOpened, events.NameTicketOpened, events.NameTicketOpened}, kinds(evs))
		require.Equal(t, ent, evs[0].Account)
		require.Equal(t, ent, evs[0].Payload["account_id"])
		require.Equal(t, "We lost data", evs[0].Payload["subject"])
		require.Equal(t, "priority", evs[0].Payload["queue"])
		require.NotContains(t, evs[0].Payload, "body", "events carry no message bodies")
	})
}

func TestConversationClocksAndStatus(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		ctx := t.Context()
		t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		acc := b.account(t, "enterprise", "enterprise")
		// Enterprise normal: 2h to answer, 24h to resolve, 24×7.
		v := b.ok(t, support.ActionCreateTicket, acc, support.CreateTicketParams{Subject: "Question about snapshots", Body: "How long do you keep dailies?"}, t0)
		require.Equal(t, "normal", v.Severity)
		id := v.ID
		msg := func(body string, agent bool, at time.Time) support.TicketView {
			return b.ok(t, support.ActionAddMessage, acc, support.AddMessageParams{TicketID: id, MessageBody: support.MessageBody{Body: body}, ByOperator: agent}, at)
		}
		status := func(s string, agent bool, at time.Time) support.TicketView {
			return b.ok(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: id, StatusBody: support.StatusBody{Status: s}, ByOperator: agent}, at)
		}

		// A customer's follow-up does not stop the first-response clock;
		// the first agent reply does, on time.
		v = msg("Also: monthly?", false, t0.Add(10*time.Minute))
		require.Nil(t, v.FirstResponseAt)
		v = msg("We keep dailies for 14 days.", true, t0.Add(30*time.Minute))
		require.Equal(t, t0.Add(30*time.Minute), *v.FirstResponseAt)
		require.Equal(t, "met", v.SLA.FirstResponse.State)
		v = msg("And a second agent message", true, t0.Add(40*time.Minute))
		require.Equal(t, t0.Add(30*time.Minute), *v.FirstResponseAt, "only the first agent reply counts")

		// Pending pauses the resolution clock for 3 hours: due moves by 3h.
		require.Equal(t, t0.Add(24*time.Hour), *v.SLA.Resolution.Due)
		v = status(store.TicketPending, true, t0.Add(time.Hour))
		require.Equal(t, "paused", v.SLA.Resolution.State)
		require.Nil(t, v.SLA.Resolution.Due)
		v = msg("Thanks, one more thing", false, t0.Add(4*time.Hour))
		require.Equal(t, store.TicketOpen, v.Status, "the customer's answer brings the ticket back")
		require.Equal(t, t0.Add(27*time.Hour), *v.SLA.Resolution.Due)

		// Resolve, then reopen: the resolved span pauses the clock too.
		v = status(store.TicketResolved, true, t0.Add(5*time.Hour))
		require.Equal(t, t0.Add(5*time.Hour), *v.ResolvedAt)
		require.Equal(t, "met", v.SLA.Resolution.State)
		v = status(store.TicketOpen, false, t0.Add(7*time.Hour))
		require.Nil(t, v.ResolvedAt)
		require.Equal(t, t0.Add(29*time.Hour), *v.SLA.Resolution.Due)
		v = status(store.TicketOpen, false, t0.Add(7*time.Hour))
		require.Equal(t, store.TicketOpen, v.Status, "already open: nothing changes")
		v = status(store.TicketClosed, false, t0.Add(8*time.Hour))
		require.NotNil(t, v.ClosedAt)

		// Closed: no messages until reopened; customers cannot set pending;
		// a closed ticket is reopened, not resolved.
		b.fails(t, support.ActionAddMessage, acc, support.AddMessageParams{TicketID: id, MessageBody: support.MessageBody{Body: "hello?"}}, t0.Add(9*time.Hour), http.StatusConflict, "ticket_closed", "status")
		b.fails(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: id, StatusBody: support.StatusBody{Status: store.TicketResolved}}, t0.Add(9*time.Hour), http.StatusConflict, "invalid_transition", "status")
		b.fails(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: id, StatusBody: support.StatusBody{Status: store.TicketPending}}, t0.Add(9*time.Hour), http.StatusForbidden, "forbidden", "status")
		// Another account's command cannot reach the ticket.
		other := b.account(t, "growth", "standard")
		b.fails(t, support.ActionSetStatus, other, support.SetStatusParams{TicketID: id, StatusBody: support.StatusBody{Status: store.TicketOpen}}, t0.Add(9*time.Hour), http.StatusNotFound, "not_found", "id")

		require.Equal(t, []events.Name{
			events.NameTicketOpened, events.NameMessageAdded, events.NameMessageAdded, events.NameMessageAdded,
			events.NameTicketUpdated,                          // pending
			events.NameMessageAdded, events.NameTicketUpdated, // customer answer → open
			events.NameTicketUpdated, events.NameTicketReopened, // resolved, reopened
			events.NameTicketUpdated, // closed
		}, kinds(b.events(t)))
		hist, err := st.TicketEvents(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "opened", hist[0].Kind)
		var opened struct{ Triage triage.Decision }
		require.NoError(t, json.Unmarshal(hist[0].Detail, &opened))
		require.Equal(t, []string{"default.category", "default.severity", "route.enterprise"}, opened.Triage.FiredRules, "the triage decision is recorded")
	})
}
