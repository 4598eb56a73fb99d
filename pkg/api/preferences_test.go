package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestNotificationPreferencesRoundTrip(t *testing.T) {
	t.Parallel()
	h := webhookHarness(t, storetest.SQLite(t))
	r := h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyA, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.JSONEq(t, `[]`, mustField(t, r.body, "muted_events"), "nothing muted by default")

	r = h.do(t, http.MethodPut, "/v1/notification-preferences?wait=10s", h.keyA, map[string]any{
		"muted_events": []string{"billing.trial_reminder"}, "quiet_hours": map[string]string{"start": "22:00", "end": "07:00", "time_zone": "Europe/London"},
	})
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var p store.Preferences
	require.NoError(t, json.Unmarshal(r.command(t).Result, &p))
	require.Equal(t, []string{"billing.trial_reminder"}, p.Muted)
	require.Equal(t, "22:00", p.QuietStart)

	r = h.do(t, http.MethodGet, "/v1/notification-preferences?account_id="+h.accA, h.keyB, nil)
	require.Equal(t, http.StatusNotFound, r.status, "another account's preferences are not seen")
	r = h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyB, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `[]`, mustField(t, r.body, "muted_events"), "B's own are untouched")

	r = h.do(t, http.MethodPut, "/v1/notification-preferences", h.keyA, map[string]any{"muted_events": []string{"accounts.erasure_due"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, "muted_events", r.errorOf(t)["field"])
	r = h.do(t, http.MethodPut, "/v1/notification-preferences", h.opKey, map[string]any{"muted_events": []string{}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status, "an operator names the account")
	require.Equal(t, "account_id", r.errorOf(t)["field"])
}

func mustField(t *testing.T, body []byte, field string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m))
	return string(m[field])
}

// unsubscribeLink is the link an email to the account's customer about
// event carries, under the harness's ingest.
func (h *harness) unsubscribeLink(t *testing.T, account, event string) string {
	t.Helper()
	key, err := notify.ParseWebhookKey(strings.Repeat("5e", 32))
	require.NoError(t, err)
	link := key.UnsubscribeURL(h.url, account, event)
	return strings.TrimPrefix(link, h.url)
}

// TestAnUnsubscribeLinkMutesOneEventOfOneAccount: the link's page asks
// first (following it changes nothing), one click mutes the event for
// the link's account alone, and a link altered in any part is refused.
func TestAnUnsubscribeLinkMutesOneEventOfOneAccount(t *testing.T) {
	t.Parallel()
	h := webhookHarness(t, storetest.SQLite(t))
	link := h.unsubscribeLink(t, h.accA, "backup.run_failed")

	r := h.do(t, http.MethodGet, link, "", nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, "noindex, nofollow", r.header.Get("X-Robots-Tag"))
	require.Equal(t, "no-referrer", r.header.Get("Referrer-Policy"))
	require.Contains(t, string(r.body), "Stop emails about backup.run_failed?")
	require.Contains(t, string(r.body), `<form method="post"`)
	r = h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyA, nil)
	require.JSONEq(t, `[]`, mustField(t, r.body, "muted_events"), "the page alone mutes nothing")

	// What a mail client's one-click sends (RFC 8058).
	r = h.do(t, http.MethodPost, link, "", "List-Unsubscribe=One-Click", "Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Contains(t, string(r.body), "Unsubscribed")
	r = h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyA, nil)
	require.JSONEq(t, `["backup.run_failed"]`, mustField(t, r.body, "muted_events"))
	r = h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyB, nil)
	require.JSONEq(t, `[]`, mustField(t, r.body, "muted_events"), "another account is untouched")

	r = h.do(t, http.MethodPost, link, "", nil)
	require.Equal(t, http.StatusOK, r.status, "a second click changes nothing more")
	r = h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyA, nil)
	require.JSONEq(t, `["backup.run_failed"]`, mustField(t, r.body, "muted_events"))

	u, err := url.Parse(link)
	require.NoError(t, err)
	q := u.Query()
	for name, tc := range map[string]struct {
		query  url.Values
		status int
	}{
		"OtherAccount": {url.Values{"account": {h.accB}, "event": {q.Get("event")}, "sig": {q.Get("sig")}}, http.StatusForbidden},
		"OtherEvent":   {url.Values{"account": {h.accA}, "event": {"backup.overdue"}, "sig": {q.Get("sig")}}, http.StatusForbidden},
		"NoSignature":  {url.Values{"account": {h.accA}, "event": {q.Get("event")}}, http.StatusBadRequest},
		"NotHex":       {url.Values{"account": {h.accA}, "event": {q.Get("event")}, "sig": {"zz"}}, http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			r := h.do(t, http.MethodPost, notify.UnsubscribePath+"?"+tc.query.Encode(), "", nil)
			require.Equal(t, tc.status, r.status, string(r.body))
			require.Contains(t, string(r.body), "This link does not work")
		})
	}

	t.Run("AMandatoryEventCannotBeStopped", func(t *testing.T) {
		r := h.do(t, http.MethodGet, h.unsubscribeLink(t, h.accA, "backup.corrupt"), "", nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Contains(t, string(r.body), "cannot be stopped")
	})
	t.Run("ABodyOverOneKiBIsRefused", func(t *testing.T) {
		r := h.do(t, http.MethodPost, link, "", strings.Repeat("x", 2048))
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	})
	r = h.do(t, http.MethodGet, "/v1/notification-preferences", h.keyB, nil)
	require.JSONEq(t, `[]`, mustField(t, r.body, "muted_events"), "no altered link muted anything")
}

// TestUnsubscribeLinksNeedTheKey: without LEVQOR_WEBHOOK_SECRET_KEY no
// link can be checked, and the page says so.
func TestUnsubscribeLinksNeedTheKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	r := h.do(t, http.MethodGet, h.unsubscribeLink(t, h.accA, "backup.run_failed"), "", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Contains(t, string(r.body), "LEVQOR_WEBHOOK_SECRET_KEY")
}
