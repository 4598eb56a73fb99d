package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestNotificationsAreListedPerTenant(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, options{noStripe: true})
		ctx := t.Context()
		at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
		for i, n := range []store.Notification{
			{ID: "ntf_a1", AccountID: h.accA, Incident: "backup.run_failed:run_failed:run_a1", Recipient: "ops@a.example", Status: store.NotificationSent},
			{ID: "ntf_a2", AccountID: h.accA, Incident: "backup.run_failed:run_failed:run_a2", Recipient: "ops@a.example", Status: store.NotificationPending, LastError: "smtp: 451 try later"},
			{ID: "ntf_a3", AccountID: h.accA, Incident: "backup.corrupt:corrupt:snap_a", Recipient: "https://hooks.slack.com/services/T0/B0/secret", Channel: "chat", Audience: store.AudienceStaff, Status: store.NotificationSent},
			{ID: "ntf_b1", AccountID: h.accB, Incident: "backup.run_failed:run_failed:run_b1", Recipient: "ops@b.example", Status: store.NotificationSent},
		} {
			n.Event, n.EventID, n.Subject, n.BodyText = "backup.run_failed", "outbox-1", "Backup of db failed", "Hello"
			if n.Channel == "" {
				n.Channel = "email"
			}
			if n.Audience == "" {
				n.Audience = store.AudienceCustomer
			}
			n.CreatedAt = at.Add(time.Duration(i) * time.Minute)
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.InsertNotification(ctx, n)
				return err
			}))
		}

		list := func(key, query string) []string {
			t.Helper()
			r := h.do(t, http.MethodGet, "/v1/notifications"+query, key, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			var out api.NotificationList
			r.json(t, &out)
			var got []string
			for _, n := range out.Data {
				got = append(got, n.ID)
			}
			return got
		}
		require.Equal(t, []string{"ntf_a2", "ntf_a1"}, list(h.keyA, ""), "an account sees its own, newest first, and not what staff were told")
		require.Equal(t, []string{"ntf_a2", "ntf_a1"}, list(h.keyA, "?audience=staff"), "whatever it asks")
		require.Equal(t, []string{"ntf_b1", "ntf_a3", "ntf_a2", "ntf_a1"}, list(h.opKey, ""), "an operator sees every account's")
		require.Equal(t, []string{"ntf_b1"}, list(h.opKey, "?account_id="+h.accB))
		require.Equal(t, []string{"ntf_a3"}, list(h.opKey, "?audience=staff"))
		r := h.do(t, http.MethodGet, "/v1/notifications?audience=staff", h.opKey, nil)
		require.NotContains(t, string(r.body), "secret", "a chat webhook's URL is its password")
		require.Contains(t, string(r.body), `"recipient":"https://hooks.slack.com/…"`)
		require.Equal(t, []string{"ntf_a2"}, list(h.keyA, "?limit=1"))

		r = h.do(t, http.MethodGet, "/v1/notifications?account_id="+h.accB, h.keyA, nil)
		require.Equal(t, http.StatusNotFound, r.status, "another account's answer like one that does not exist")
		r = h.do(t, http.MethodGet, "/v1/notifications?limit=0", h.keyA, nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "limit", r.errorOf(t)["field"])
		r = h.do(t, http.MethodGet, "/v1/notifications?audience=everyone", h.opKey, nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "audience", r.errorOf(t)["field"])
		r = h.do(t, http.MethodGet, "/v1/notifications?status=sent", h.keyA, nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "status", r.errorOf(t)["field"])
		r = h.do(t, http.MethodGet, "/v1/notifications", "", nil)
		require.Equal(t, http.StatusUnauthorized, r.status)
	})
}
