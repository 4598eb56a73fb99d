package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/support"
)

// suspensionResult is the result of billing.suspend and billing.reinstate.
func suspensionResult(t *testing.T, r response) store.Account {
	t.Helper()
	var res billing.SuspensionResult
	r.result(t, http.StatusOK, &res)
	require.NotNil(t, res.Account)
	return *res.Account
}

// TestAnOperatorSuspendsAndReinstatesAnAccount walks an operator's
// suspension as the account and Stripe see it: the account's own key may
// still read, pay and talk to support and nothing else; no backup runs;
// retention records the pause with the reason; Stripe's events do not
// lift it; and lifting it gives the account back the status billing
// derives, past due if a payment failed meanwhile.
func TestAnOperatorSuspendsAndReinstatesAnAccount(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, options{})
		root := h.allowPaths(t)
		h.runWorkers(t, billing.WorkerName, "support")
		h.runRetention(t)
		h.runRelay(t)
		t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
		h.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: t0, Customer: "cus_A",
			ObjectID: "sub_suspended", Price: "price_levqor_growth_monthly"})
		require.Eventually(t, func() bool { return h.billingOf(t, h.accA, h.keyA).Tier != nil }, 15*time.Second, 50*time.Millisecond)
		data := filepath.Join(root, "site")
		require.NoError(t, os.MkdirAll(data, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(data, "index.html"), []byte("<h1>hi</h1>"), 0o644))
		var src backups.SourceView
		h.do(t, http.MethodPost, "/v1/sources?wait=15s", h.opKey, map[string]any{
			"account_id": h.accA, "name": "site", "kind": "directory", "config": map[string]string{"path": data}}).result(t, http.StatusCreated, &src)
		suspend, reinstate := "/v1/accounts/"+h.accA+"/suspend?wait=15s", "/v1/accounts/"+h.accA+"/reinstate?wait=15s"
		runnable := func() bool {
			sources, err := st.RunnableSources(t.Context(), backups.RunnableKinds...)
			require.NoError(t, err)
			for _, s := range sources {
				if s.ID == src.ID {
					return true
				}
			}
			return false
		}
		require.True(t, runnable(), "an active account's source is scheduled")
		const why = "chargeback under investigation, case 4411"

		t.Run("BadRequestsAreRefusedNamingTheField", func(t *testing.T) {
			r := h.do(t, http.MethodPost, suspend, h.keyA, map[string]string{"reason": why})
			require.Equal(t, http.StatusForbidden, r.status, "the account's own key cannot suspend it: %s", r.body)
			r = h.do(t, http.MethodPost, suspend, h.opKey, map[string]string{})
			require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
			require.Equal(t, "reason", r.errorOf(t)["field"])
			r = h.do(t, http.MethodPost, suspend, h.opKey, map[string]string{"reason": strings.Repeat("x", billing.SuspensionReasonMax+1)})
			require.Equal(t, "reason", r.errorOf(t)["field"])
			r = h.do(t, http.MethodPost, "/v1/accounts/"+mustID(t, "acc_")+"/suspend", h.opKey, map[string]string{"reason": why})
			require.Equal(t, http.StatusNotFound, r.status, string(r.body))
			r = h.do(t, http.MethodPost, reinstate, h.opKey, map[string]string{"reason": "nothing to lift"})
			require.Equal(t, http.StatusConflict, r.status, string(r.body))
			require.Equal(t, "not_suspended", r.errorOf(t)["code"])
		})

		// Accepted before the suspension, carried out after it: the
		// accounts worker is not running yet.
		early := h.do(t, http.MethodPatch, "/v1/accounts/"+h.accA, h.keyA, map[string]string{"name": "Renamed Early"}, "Idempotency-Key", "rename-1")
		require.Equal(t, http.StatusAccepted, early.status, string(early.body))
		acc := suspensionResult(t, h.do(t, http.MethodPost, suspend, h.opKey, map[string]string{"reason": "  " + why + " "}))
		h.runWorkers(t, "accounts")
		require.Equal(t, store.AccountStatusSuspended, acc.Status)
		require.NotNil(t, acc.Suspension)
		require.Equal(t, why, acc.Suspension.Reason)
		require.True(t, strings.HasPrefix(acc.Suspension.By, "key:"), acc.Suspension.By)

		t.Run("ACommandAcceptedBeforeIsRefusedWhenItRuns", func(t *testing.T) {
			id := early.command(t).CommandID
			var c api.CommandView
			require.Eventually(t, func() bool {
				h.do(t, http.MethodGet, "/v1/commands/"+id, h.keyA, nil).json(t, &c)
				return c.Status == store.CommandFailed
			}, 15*time.Second, 50*time.Millisecond)
			require.Equal(t, http.StatusForbidden, c.HTTPStatus)
			require.Equal(t, "account_suspended", c.Error.Code)
			a, err := st.GetAccount(t.Context(), h.accA)
			require.NoError(t, err)
			require.Equal(t, "Account A", a.Name, "nothing was changed")
			retry := h.do(t, http.MethodPatch, "/v1/accounts/"+h.accA, h.keyA, map[string]string{"name": "Renamed Early"}, "Idempotency-Key", "rename-1")
			require.Equal(t, id, retry.command(t).CommandID, "a retry answers its command, refused as it was: %s", retry.body)
			require.Equal(t, "true", retry.header.Get("Idempotent-Replayed"))
		})

		t.Run("SuspendingTwiceIsAConflict", func(t *testing.T) {
			r := h.do(t, http.MethodPost, suspend, h.opKey, map[string]string{"reason": "again"})
			require.Equal(t, http.StatusConflict, r.status, string(r.body))
			require.Equal(t, "already_suspended", r.errorOf(t)["code"])
			require.Contains(t, r.errorOf(t)["message"], why)
		})

		t.Run("TheAccountSeesWhy", func(t *testing.T) {
			r := h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status)
			var a store.Account
			r.json(t, &a)
			require.Equal(t, store.AccountStatusSuspended, a.Status)
			require.Equal(t, why, a.Suspension.Reason)
			require.Empty(t, a.Suspension.By, "staff's ids are not shown to the customer")
		})

		t.Run("OnlyBillingAndSupportStayOpen", func(t *testing.T) {
			before := h.commandsPublished(t)
			for _, refused := range []struct{ method, path string }{
				{http.MethodPatch, "/v1/accounts/" + h.accA},
				{http.MethodPost, "/v1/sources/" + src.ID + "/runs"},
				{http.MethodPost, "/v1/sources/" + src.ID + "/pause"},
			} {
				body := map[string]string{}
				if refused.method == http.MethodPatch {
					body["name"] = "Renamed"
				}
				r := h.do(t, refused.method, refused.path, h.keyA, body)
				require.Equal(t, http.StatusForbidden, r.status, "%s %s: %s", refused.method, refused.path, r.body)
				e := r.errorOf(t)
				require.Equal(t, "account_suspended", e["code"])
				require.Contains(t, e["message"], why)
			}
			require.Equal(t, before, h.commandsPublished(t), "nothing refused became a command")

			r := h.do(t, http.MethodPost, "/v1/tickets?wait=15s", h.keyA, map[string]any{"subject": "Why are we suspended?", "body": "Please call us."})
			require.Equal(t, http.StatusCreated, r.status, "support stays open: %s", r.body)
			r = h.do(t, http.MethodPost, "/v1/billing/portal-sessions?wait=15s", h.keyA, map[string]string{"return_url": "https://app.example.com/account"})
			require.Equal(t, http.StatusCreated, r.status, "paying stays open: %s", r.body)
			r = h.do(t, http.MethodGet, "/v1/sources/"+src.ID, h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, "reading stays open")
			r = h.do(t, http.MethodPut, "/v1/notification-preferences", h.keyA, map[string]any{"muted_events": []string{"billing.trial_reminder"}})
			require.Equal(t, http.StatusAccepted, r.status, "opting out of notifications stays open: %s", r.body)
			r = h.do(t, http.MethodPost, "/v1/accounts/"+h.accA+"/erasure", h.keyA, map[string]string{"confirm": "Account A"})
			require.Equal(t, http.StatusAccepted, r.status, "asking for an erasure stays open (it waits for the suspension): %s", r.body)
		})

		t.Run("NoBackupRuns", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/sources/"+src.ID+"/runs?wait=20s", h.opKey, nil)
			require.Equal(t, http.StatusConflict, r.status, "even an operator's run is refused: %s", r.body)
			c := r.command(t)
			require.Equal(t, "account_suspended", c.Error.Code)
			require.Contains(t, c.Error.Message, why)
			require.False(t, runnable(), "scheduled runs, overdue alerts and drills pass the source by")
		})

		t.Run("RetentionRecordsThePauseWithTheReason", func(t *testing.T) {
			require.Eventually(t, func() bool {
				r := h.do(t, http.MethodGet, "/v1/sources/"+src.ID+"/audit", h.keyA, nil)
				return strings.Contains(string(r.body), backups.AuditRetentionPaused) && strings.Contains(string(r.body), why)
			}, 15*time.Second, 50*time.Millisecond)
		})

		t.Run("StripeDoesNotLiftIt", func(t *testing.T) {
			h.webhook(t, "customer.subscription.updated", stripesim.EventOptions{Created: t0.Add(time.Second), Customer: "cus_A",
				ObjectID: "sub_suspended", Price: "price_levqor_business_monthly"})
			require.Eventually(t, func() bool {
				b := h.billingOf(t, h.accA, h.keyA)
				return b.Tier != nil && *b.Tier == "business"
			}, 15*time.Second, 50*time.Millisecond, "billing applied the event")
			require.Equal(t, store.AccountStatusSuspended, h.billingOf(t, h.accA, h.keyA).Status)
		})

		t.Run("ReinstatingGivesBillingItsStatusBack", func(t *testing.T) {
			acc := suspensionResult(t, h.do(t, http.MethodPost, reinstate, h.opKey, map[string]string{"reason": "case 4411 closed"}))
			require.Equal(t, store.AccountStatusActive, acc.Status)
			require.Nil(t, acc.Suspension)
			r := h.do(t, http.MethodPatch, "/v1/accounts/"+h.accA, h.keyA, map[string]string{"name": "Renamed"})
			require.Equal(t, http.StatusAccepted, r.status, "changes are open again: %s", r.body)

			suspensionResult(t, h.do(t, http.MethodPost, suspend, h.opKey, map[string]string{"reason": why}))
			h.webhook(t, "invoice.payment_failed", stripesim.EventOptions{Customer: "cus_A", ObjectID: "in_suspended_1",
				Subscription: "sub_suspended", Price: "price_levqor_business_monthly"})
			require.Eventually(t, func() bool { return h.billingOf(t, h.accA, h.keyA).Dunning != nil }, 15*time.Second, 50*time.Millisecond)
			require.Equal(t, store.AccountStatusSuspended, h.billingOf(t, h.accA, h.keyA).Status, "the operator's suspension still holds")
			acc = suspensionResult(t, h.do(t, http.MethodPost, reinstate, h.opKey, map[string]string{"reason": "case 4411 closed"}))
			require.Equal(t, store.AccountStatusPastDue, acc.Status, "the failed payment shows once the suspension is lifted")
			require.True(t, runnable(), "its backups are scheduled again")
		})

		t.Run("ACanceledAccountStaysCanceled", func(t *testing.T) {
			suspensionResult(t, h.do(t, http.MethodPost, suspend, h.opKey, map[string]string{"reason": why}))
			h.webhook(t, "customer.deleted", stripesim.EventOptions{Customer: "cus_A", ObjectID: "cus_A"})
			require.Eventually(t, func() bool {
				return h.billingOf(t, h.accA, h.keyA).Status == store.AccountStatusCanceled
			}, 15*time.Second, 50*time.Millisecond, "offboarding starts from canceled, as without the suspension")
			a, err := st.GetAccount(t.Context(), h.accA)
			require.NoError(t, err)
			require.NotNil(t, a.Suspension, "the suspension still holds (and so holds the offboarding's erasure)")
			require.False(t, runnable())
		})

		t.Run("TheAuditTrailHasTheReasons", func(t *testing.T) {
			trail, err := st.ListAudit(t.Context(), store.ListAuditParams{Limit: 50})
			require.NoError(t, err)
			var said []string
			for _, e := range trail {
				if strings.HasPrefix(e.Action, ops.ActionCommandPrefix+"billing.") {
					var p map[string]any
					require.NoError(t, json.Unmarshal(e.Params, &p))
					said = append(said, strings.TrimPrefix(e.Action, ops.ActionCommandPrefix)+": "+fmt.Sprint(p["reason"]))
				}
			}
			require.Contains(t, said, "billing.suspend: "+why)
			require.Contains(t, said, "billing.reinstate: case 4411 closed")
		})

		t.Run("AnotherAccountIsUntouched", func(t *testing.T) {
			r := h.do(t, http.MethodPatch, "/v1/accounts/"+h.accB, h.keyB, map[string]string{"name": "B2"})
			require.Equal(t, http.StatusAccepted, r.status, string(r.body))
		})
	})
}

// TestWhatStaysOpenWhileSuspendedNamesRealCommands keeps the command
// package's list, which cannot import the domains, equal to their names.
func TestWhatStaysOpenWhileSuspendedNamesRealCommands(t *testing.T) {
	t.Parallel()
	for _, open := range [][2]string{
		{billing.Domain, billing.ActionPortal}, {billing.Domain, billing.ActionCheckout},
		{support.Domain, "open"}, {notify.Domain, notify.ActionUnsubscribe}, {notify.Domain, notify.ActionRotateSecret},
		{accounts.Domain, accounts.ActionRequestErasure}, {accounts.Domain, accounts.ActionCancelErasure},
	} {
		require.True(t, command.OpenWhileSuspended(open[0], open[1]), "%s.%s stays open", open[0], open[1])
	}
	for _, closed := range [][2]string{
		{accounts.Domain, accounts.ActionUpdate}, {backups.Domain, backups.ActionPause}, {backups.RunDomain, backups.ActionRun},
	} {
		require.False(t, command.OpenWhileSuspended(closed[0], closed[1]), "%s.%s is closed", closed[0], closed[1])
	}
}
