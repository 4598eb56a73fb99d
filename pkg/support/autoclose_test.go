package support_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/support"
)

// TestLongResolvedTicketsAreClosedAndTheCustomerTold: support.autoclose
// closes what was resolved more than AutoCloseAfter ago and nothing else,
// once, with the change in the ticket's history and a
// support.ticket_autoclosed for the customer.
func TestLongResolvedTicketsAreClosedAndTheCustomerTold(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		b.w.AutoCloseAfter = 7 * 24 * time.Hour
		acc := b.account(t, "growth", "standard")
		t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC) // a Monday
		ticket := func(subject string, resolvedAt time.Time) string {
			v := b.ok(t, support.ActionCreateTicket, acc, support.CreateTicketParams{Subject: subject, Body: "Please help."}, t0)
			if !resolvedAt.IsZero() {
				b.ok(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: v.ID, StatusBody: support.StatusBody{Status: store.TicketResolved}}, resolvedAt)
			}
			return v.ID
		}
		old := ticket("Old question", t0.Add(time.Hour))
		recent := ticket("Recent question", t0.Add(6*24*time.Hour))
		open := ticket("Still open", time.Time{})
		before := len(b.events(t))

		now := t0.Add(8 * 24 * time.Hour)
		n, err := b.w.AutoClose(t.Context(), now, "autoclose:test")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		closed := b.get(t, old)
		require.Equal(t, store.TicketClosed, closed.Status)
		require.True(t, closed.ClosedAt.Equal(now))
		require.Equal(t, store.TicketResolved, b.get(t, recent).Status, "resolved a day ago: the customer may still answer")
		require.Equal(t, store.TicketOpen, b.get(t, open).Status)

		evs := b.events(t)[before:]
		require.Equal(t, []events.Name{events.NameTicketUpdated, events.NameTicketAutoClosed}, kinds(evs))
		require.Equal(t, old, evs[1].Payload["ticket_id"])
		require.Equal(t, "autoclosed:"+old, evs[1].Payload["incident"])
		require.Equal(t, "resolved 2026-11-02T10:00:00Z with no reply since", evs[1].Payload["reason"])
		require.Equal(t, acc, evs[1].Account)

		n, err = b.w.AutoClose(t.Context(), now.Add(time.Hour), "autoclose:again")
		require.NoError(t, err)
		require.Zero(t, n, "closed once")
	})
}
