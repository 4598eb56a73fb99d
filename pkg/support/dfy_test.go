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

// TestAPaidDFYPackageOpensAWorkItemThatIsChasedWhileItStalls: a paid
// package opens one ticket in the dfy queue listing the package's
// checklist; dfy.followup chases it while it stays open with no change,
// once per period, and leaves moving or finished work alone.
func TestAPaidDFYPackageOpensAWorkItemThatIsChasedWhileItStalls(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st)
		b.w.DFYFollowupAfter = 72 * time.Hour
		ctx := t.Context()
		acc := b.account(t, "enterprise", "enterprise")
		t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		// Billing records the purchase, then raises the event.
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.InsertDFYPurchase(ctx, store.DFYPurchase{CheckoutSessionID: "cs_1", AccountID: acc, Package: "dfy_onboarding", Quantity: 1, PurchasedAt: t0})
			return err
		}))
		bought := events.DFYPurchased{Billing: events.Billing{AccountID: acc, StripeEventID: "evt_1", At: t0}, Package: "dfy_onboarding",
			Quantity: 1, CheckoutSessionID: "cs_1"}
		require.NoError(t, b.event(t, support.IncidentDFYPurchased, "ev1", bought))
		require.NoError(t, b.event(t, support.IncidentDFYPurchased, "ev2", bought), "the same purchase again: one work item")
		list := tickets(t, b, acc)
		require.Len(t, list, 1)
		tk := list[0]
		require.Equal(t, "dfy", tk.Queue, "an enterprise account's DFY work goes to the DFY team")
		require.Equal(t, "Done-For-You: We set up your sources and policies", tk.Subject)
		require.Equal(t, "billing.dfy_purchased:cs_1:dfy_onboarding", tk.IncidentKey)
		msgs, err := st.TicketMessages(ctx, tk.ID, 0, 1000)
		require.NoError(t, err)
		require.Contains(t, msgs[0].Body, "- [ ] Create the sources and check each can be read")
		require.Contains(t, msgs[0].Body, "cs_1")

		// A second package of the same session is its own work item.
		drill := bought
		drill.Package = "dfy_recovery_drill"
		require.NoError(t, b.event(t, support.IncidentDFYPurchased, "ev3", drill))
		require.Len(t, tickets(t, b, acc), 2)
		var drillID string
		for _, x := range tickets(t, b, acc) {
			if x.ID != tk.ID {
				drillID = x.ID
			}
		}
		// The drill moves on: resolved. Only the onboarding stalls.
		b.ok(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: drillID, StatusBody: support.StatusBody{Status: store.TicketResolved}, ByOperator: true}, t0.Add(time.Hour))

		before := len(b.events(t))
		n, err := b.w.DFYFollowup(ctx, t0.Add(71*time.Hour), "test")
		require.NoError(t, err)
		require.Zero(t, n, "not stalled yet")

		at := t0.Add(73 * time.Hour)
		n, err = b.w.DFYFollowup(ctx, at, "test")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		evs := b.events(t)[before:]
		require.Equal(t, []events.Name{events.NameDFYStalled}, kinds(evs))
		require.Equal(t, tk.ID, evs[0].Payload["ticket_id"])
		require.Equal(t, "dfy_onboarding", evs[0].Payload["package"])
		require.Equal(t, acc, evs[0].Account)
		hist, err := st.TicketEvents(ctx, tk.ID)
		require.NoError(t, err)
		require.Equal(t, "dfy_chased", hist[len(hist)-1].Kind)

		n, err = b.w.DFYFollowup(ctx, at.Add(time.Hour), "test")
		require.NoError(t, err)
		require.Zero(t, n, "chased once per period")
		n, err = b.w.DFYFollowup(ctx, at.Add(73*time.Hour), "test")
		require.NoError(t, err)
		require.Equal(t, 1, n, "still stalled a period later: chased again")

		b.ok(t, support.ActionSetStatus, acc, support.SetStatusParams{TicketID: tk.ID, StatusBody: support.StatusBody{Status: store.TicketResolved}, ByOperator: true}, at.Add(74*time.Hour))
		n, err = b.w.DFYFollowup(ctx, at.Add(400*time.Hour), "test")
		require.NoError(t, err)
		require.Zero(t, n, "finished work is not chased")
	})
}
