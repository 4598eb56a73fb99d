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

// TestSLACheckEscalatesOnce: an unanswered enterprise ticket warns at 80%
// of its first-response target and escalates at the breach, once, however
// often the check runs and whatever ticks repeat.
func TestSLACheckEscalatesOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		ctx := t.Context()
		t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		acc := b.account(t, "enterprise", "enterprise")
		// Enterprise high: 30 minutes to answer, 8 hours to resolve.
		v := b.ok(t, support.ActionCreateTicket, acc, support.CreateTicketParams{Subject: "Backups failing", Body: "Our nightly backups are failing.", Severity: "high"}, t0)
		answered := b.ok(t, support.ActionCreateTicket, acc, support.CreateTicketParams{Subject: "Another", Body: "Backups failing here too", Severity: "high"}, t0)
		b.ok(t, support.ActionAddMessage, acc, support.AddMessageParams{TicketID: answered.ID, MessageBody: support.MessageBody{Body: "Looking"}, ByOperator: true}, t0.Add(5*time.Minute))
		require.Equal(t, "enterprise", v.Queue)
		before := len(b.events(t))

		// 20 minutes: fine.
		b.tick(t, t0.Add(20*time.Minute))
		require.Len(t, b.events(t), before)

		// 24 minutes (80% of 30): at risk, nothing else changes; twice.
		b.tick(t, t0.Add(24*time.Minute))
		b.tick(t, t0.Add(24*time.Minute))
		b.tick(t, t0.Add(26*time.Minute))
		tk := b.get(t, v.ID)
		require.Equal(t, "high", tk.Severity)
		require.Equal(t, "enterprise", tk.Queue)
		require.Equal(t, "at_risk", tk.FirstResponseState)
		require.False(t, tk.Breached)
		evs := b.events(t)[before:]
		require.Equal(t, []events.Name{events.NameSLAAtRisk}, kinds(evs))
		require.Equal(t, "first_response.at_risk", evs[0].Payload["escalation_key"])

		// 31 minutes: breached. Escalated to the escalations queue, one
		// step up, once.
		for range 3 {
			b.tick(t, t0.Add(31*time.Minute))
		}
		b.tick(t, t0.Add(33*time.Minute))
		tk = b.get(t, v.ID)
		require.Equal(t, "critical", tk.Severity)
		require.Equal(t, "escalations", tk.Queue)
		require.True(t, tk.Breached)
		require.Equal(t, "breached", tk.FirstResponseState)
		evs = b.events(t)[before:]
		require.Equal(t, []events.Name{events.NameSLAAtRisk, events.NameSLABreached}, kinds(evs))
		require.Equal(t, "first_response.breached", evs[1].Payload["escalation_key"])
		require.Equal(t, "escalations", evs[1].Payload["queue"])
		require.Equal(t, "high", evs[1].Payload["severity_before"])
		require.Equal(t, acc, evs[1].Account)
		escs, err := st.TicketEscalations(ctx, v.ID)
		require.NoError(t, err)
		require.Len(t, escs, 2)
		require.Equal(t, "first_response.breached", escs[1].Key)
		require.Equal(t, t0.Add(30*time.Minute), *escs[1].DueAt)
		hist, err := st.TicketEvents(ctx, v.ID)
		require.NoError(t, err)
		require.Equal(t, "escalated", hist[len(hist)-1].Kind)

		// The answered ticket never escalated.
		other, err := st.TicketEscalations(ctx, answered.ID)
		require.NoError(t, err)
		require.Empty(t, other)

		// Listed as breached and in the escalations queue.
		yes := true
		list, err := st.ListTickets(ctx, store.ListTicketsParams{Breached: &yes, Queue: "escalations", Limit: 10, Now: t0.Add(33 * time.Minute)})
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, v.ID, list[0].ID)

		// A reply now stops the clock late; a resolved ticket is not checked.
		b.ok(t, support.ActionAddMessage, acc, support.AddMessageParams{TicketID: v.ID, MessageBody: support.MessageBody{Body: "Sorry, on it"}, ByOperator: true}, t0.Add(40*time.Minute))
		b.ok(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: v.ID, StatusBody: support.StatusBody{Status: store.TicketResolved}}, t0.Add(50*time.Minute))
		n := len(b.events(t))
		b.tick(t, t0.Add(30*time.Hour))
		evs = b.events(t)[n:]
		require.Len(t, evs, 1, "only the answered, still open ticket escalates, for its resolution breach (no late warning)")
		require.Equal(t, answered.ID, evs[0].Payload["ticket_id"])
		require.Equal(t, "resolution.breached", evs[0].Payload["escalation_key"])
	})
}

func TestSLACheckRejectsOtherJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t))
	err := b.w.HandleTick(t.Context(), &bus.Message{Data: []byte(`{"job":"support.other","slot":"2026-03-02T10:00:00Z"}`)})
	require.True(t, bus.IsPermanent(err))
	err = b.w.HandleTick(t.Context(), &bus.Message{Data: []byte(`{`)})
	require.True(t, bus.IsPermanent(err))
}
