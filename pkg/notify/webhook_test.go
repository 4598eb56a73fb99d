package notify_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func testKey(t *testing.T) *notify.WebhookKey {
	t.Helper()
	k, err := notify.ParseWebhookKey(strings.Repeat("ab", 32))
	require.NoError(t, err)
	return k
}

func TestWebhookSignaturesVerifyWithTheReferenceLibrary(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	secret := k.SecretString("whe_1", 1)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	require.NotEqual(t, secret, k.SecretString("whe_1", 2), "a rotation changes the secret")
	require.NotEqual(t, secret, k.SecretString("whe_2", 1), "each endpoint has its own")
	other, err := notify.ParseWebhookKey(strings.Repeat("cd", 32))
	require.NoError(t, err)
	require.NotEqual(t, secret, other.SecretString("whe_1", 1), "another deployment key gives other secrets")

	body := []byte(`{"type":"backup.run_failed","timestamp":"2026-12-06T03:00:00Z","data":{}}`)
	now := time.Now()
	h := http.Header{}
	h.Set("webhook-id", "ntf_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", notify.SignWebhook(k.Secret("whe_1", 1), "ntf_1", now, body))
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(body, h))
	require.Error(t, wh.Verify(append(body, ' '), h), "a changed body does not verify")
}

func TestKeysAreChecked(t *testing.T) {
	t.Parallel()
	_, err := notify.ParseWebhookKey("abcd")
	require.ErrorContains(t, err, "LEVQOR_WEBHOOK_SECRET_KEY: 2 bytes; at least 32")
	_, err = notify.ParseWebhookKey("not a key!")
	require.ErrorContains(t, err, "not hex or base64")
	_, err = notify.ParseNets([]string{"10.0.0.0/8", "127.0.0.1", "fd00::/8"})
	require.NoError(t, err)
	_, err = notify.ParseNets([]string{"intranet"})
	require.ErrorContains(t, err, `"intranet" is not a network`)
}

func TestTheGuardRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	g := notify.Guard{}
	for addr, want := range map[string]string{
		"127.0.0.1":        "loopback",
		"::1":              "loopback",
		"::ffff:127.0.0.1": "loopback",
		"10.1.2.3":         "private",
		"172.16.0.1":       "private",
		"192.168.1.1":      "private",
		"fd12::1":          "private",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"100.64.0.1":       "reserved",
		"0.0.0.0":          "unspecified",
		"64:ff9b::a00:1":   "reserved",
		"64:ff9b::a00:1%1": "reserved",
		"::10.0.0.1":       "reserved",
		"::ffff:0:a00:1":   "reserved",
		"2002:a00:1::1":    "reserved",
		"239.1.2.3":        "multicast",
		"93.184.216.34":    "",
		"2606:4700::1111":  "",
	} {
		err := g.Check(netip.MustParseAddr(addr))
		if want == "" {
			require.NoError(t, err, addr)
			continue
		}
		require.ErrorContains(t, err, want, addr)
	}
	allowed := notify.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	require.NoError(t, allowed.Check(netip.MustParseAddr("10.1.2.3")))
	require.Error(t, allowed.Check(netip.MustParseAddr("192.168.1.1")))

	for raw, want := range map[string]string{
		"":                                     "url is required",
		"hooks.example.com/levqor":             "absolute http or https URL",
		"ftp://hooks.example.com/":             `scheme "ftp"`,
		"https://user:pw@hooks.example.com":    "credentials",
		"https://hooks.example.com/#x":         "fragment",
		"http://hooks.example.com/":            "must use https",
		"https://127.0.0.1:9000/":              "loopback",
		"https://localhost/":                   "loopback",
		"https://[::1]/":                       "loopback",
		"https://[64:ff9b::a00:1%25eth0]/":     "IPv6 zone",
		"https://169.254.169.254/latest":       "link-local",
		"https://hooks.example.com:99999/":     "not a port number",
		"https://" + strings.Repeat("a", 2100): "longer than 2048",
		"https://hooks.example.com/levqor":     "",
	} {
		err := g.CheckURL(raw)
		if want == "" {
			require.NoError(t, err, raw)
			continue
		}
		require.ErrorContains(t, err, want, raw)
	}
	loopback := notify.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	require.NoError(t, loopback.CheckURL("http://127.0.0.1:9000/hook"), "plain http to an allowed address")
	require.ErrorContains(t, loopback.CheckURL("http://hooks.example.com/"), "must use https")
}

// receiver is a customer's webhook receiver: it verifies every request
// with the Standard Webhooks reference library and answers what fail
// says for the nth request (1-based), 204 otherwise.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	fail   func(n int, w http.ResponseWriter) bool

	mu       sync.Mutex
	requests []*http.Request
	accepted map[string][]byte // webhook-id → body, verified and taken
	verified int
}

func startReceiver(t *testing.T, fail func(n int, w http.ResponseWriter) bool) *receiver {
	rc := &receiver{t: t, fail: fail, accepted: map[string][]byte{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, r)
		n, secret := len(rc.requests), rc.secret
		rc.mu.Unlock()
		wh, err := standardwebhooks.NewWebhook(secret)
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			http.Error(w, "signature: "+err.Error(), http.StatusUnauthorized)
			return
		}
		rc.mu.Lock()
		rc.verified++
		rc.mu.Unlock()
		if rc.fail != nil && rc.fail(n, w) {
			return
		}
		rc.mu.Lock()
		rc.accepted[r.Header.Get("webhook-id")] = body
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) snapshot() (requests, verified int, accepted map[string][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range rc.accepted {
		out[k] = v
	}
	return len(rc.requests), rc.verified, out
}

func webhooks(t *testing.T, cfg notify.WebhookConfig) *notify.Webhooks {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = testKey(t)
	}
	if cfg.Guard.Allow == nil {
		cfg.Guard.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	wh, err := notify.NewWebhooks(cfg)
	require.NoError(t, err)
	return wh
}

// endpoint records an enabled endpoint of the bundle's account at url,
// and points rc at its secret.
func (b *bundle) endpoint(rc *receiver, url string, types ...string) *store.WebhookEndpoint {
	b.t.Helper()
	id, err := command.NewID(notify.EndpointIDPrefix)
	require.NoError(b.t, err)
	require.NoError(b.t, b.st.InTx(b.t.Context(), func(tx *store.Tx) error {
		_, err := tx.InsertWebhookEndpoint(b.t.Context(), store.WebhookEndpoint{ID: id, AccountID: b.acc, URL: url, EventTypes: types, Enabled: true})
		return err
	}))
	if rc != nil {
		rc.mu.Lock()
		rc.secret = b.worker.Webhooks.Key().SecretString(id, 1)
		rc.mu.Unlock()
	}
	ep, err := b.st.GetWebhookEndpoint(b.t.Context(), id)
	require.NoError(b.t, err)
	return ep
}

func (b *bundle) attempts(endpointID string) []store.WebhookAttempt {
	b.t.Helper()
	a, err := b.st.ListWebhookAttempts(b.t.Context(), endpointID, 0, 100)
	require.NoError(b.t, err)
	return a
}

func (b *bundle) webhookNotifications(endpointID string) []store.Notification {
	b.t.Helper()
	var out []store.Notification
	for _, n := range b.notifications() {
		if n.Channel == notify.ChannelWebhook && n.Recipient == endpointID {
			out = append(out, n)
		}
	}
	return out
}

func TestAnEventIsPostedSignedToTheAccountsEndpoints(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setupWith(t, st, func(*mailServer) notify.Sender { return nil }, func(w *notify.Worker) {
			w.Webhooks = webhooks(t, notify.WebhookConfig{})
		})
		// A receiver that refuses twice (500), then takes the message.
		rc := startReceiver(t, func(n int, w http.ResponseWriter) bool {
			if n <= 2 {
				http.Error(w, "database is restarting", http.StatusInternalServerError)
				return true
			}
			return false
		})
		ep := b.endpoint(rc, rc.srv.URL+"/levqor")
		quota := b.endpoint(nil, rc.srv.URL+"/quota-only", string(events.NameBackupQuotaWarn))

		ev := samples(b.acc, b.src)[events.NameBackupRunFailed].(events.BackupRunFailed)
		b.emit(ev)
		require.Eventually(t, func() bool { _, _, acc := rc.snapshot(); return len(acc) == 1 }, 20*time.Second, 20*time.Millisecond)
		b.delivered()

		requests, verified, accepted := rc.snapshot()
		require.Equal(t, 3, requests, "two refusals, then the delivery")
		require.Equal(t, 3, verified, "every attempt is signed")
		n := b.webhookNotifications(ep.ID)
		require.Len(t, n, 1)
		require.Equal(t, store.NotificationSent, n[0].Status)
		require.Equal(t, 3, n[0].Attempts)
		body, ok := accepted[n[0].ID]
		require.True(t, ok, "webhook-id is the notification's id, the same on every retry")
		var payload struct {
			Type      string                 `json:"type"`
			Timestamp time.Time              `json:"timestamp"`
			Data      events.BackupRunFailed `json:"data"`
		}
		require.NoError(t, json.Unmarshal(body, &payload))
		require.Equal(t, "backup.run_failed", payload.Type)
		require.False(t, payload.Timestamp.IsZero())
		require.Equal(t, ev.Reason, payload.Data.Reason)
		require.Equal(t, b.src, payload.Data.SourceID)
		require.Empty(t, b.webhookNotifications(quota.ID), "an endpoint's filter keeps other events out")

		log := b.attempts(ep.ID)
		require.Len(t, log, 3)
		require.True(t, log[0].OK)
		require.Equal(t, http.StatusNoContent, log[0].StatusCode)
		require.False(t, log[2].OK)
		require.Equal(t, http.StatusInternalServerError, log[2].StatusCode)
		require.Contains(t, log[2].Response, "database is restarting")
		require.Contains(t, log[2].Error, "answered 500")
		got, err := st.GetWebhookEndpoint(t.Context(), ep.ID)
		require.NoError(t, err)
		require.Nil(t, got.FailingSince, "a success ends the endpoint's failing spell")

		t.Run("EventsOfOtherAccountsAreNotPosted", func(t *testing.T) {
			other := samples("acc_someone_else", "src_x")[events.NameBackupRunFailed].(events.BackupRunFailed)
			other.Incident = "run_failed:other"
			b.emit(other)
			require.Len(t, b.webhookNotifications(ep.ID), 1)
		})
	})
}

func TestARotatedSecretKeepsSigningDuringTheOverlap(t *testing.T) {
	t.Parallel()
	b := setupWith(t, storetest.SQLite(t), func(*mailServer) notify.Sender { return nil }, func(w *notify.Worker) {
		w.Webhooks = webhooks(t, notify.WebhookConfig{})
	})
	rc := startReceiver(t, nil)
	ep := b.endpoint(rc, rc.srv.URL)
	old := rc.secret
	until := time.Now().Add(time.Hour)
	require.NoError(t, b.st.InTx(t.Context(), func(tx *store.Tx) error {
		ep.PreviousGeneration, ep.PreviousExpiresAt, ep.SecretGeneration = 1, &until, 2
		return tx.UpdateWebhookEndpoint(t.Context(), ep, time.Now())
	}))
	// The receiver still has the old secret: the overlap lets it verify.
	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	require.Eventually(t, func() bool { _, _, acc := rc.snapshot(); return len(acc) == 1 }, 20*time.Second, 20*time.Millisecond)
	require.Len(t, strings.Fields(rc.lastHeader().Get("webhook-signature")), 2, "signed with both secrets")

	// The overlap over, only the new secret signs: a receiver that
	// switched verifies, one that did not would refuse.
	past := time.Now().Add(-time.Minute)
	require.NoError(t, b.st.InTx(t.Context(), func(tx *store.Tx) error {
		ep.PreviousExpiresAt = &past
		return tx.UpdateWebhookEndpoint(t.Context(), ep, time.Now())
	}))
	rc.mu.Lock()
	rc.secret = b.worker.Webhooks.Key().SecretString(ep.ID, 2)
	rc.mu.Unlock()
	ev := samples(b.acc, b.src)[events.NameBackupRunFailed].(events.BackupRunFailed)
	ev.Incident = "run_failed:second"
	b.emit(ev)
	require.Eventually(t, func() bool { _, _, acc := rc.snapshot(); return len(acc) == 2 }, 20*time.Second, 20*time.Millisecond)
	h := rc.lastHeader()
	require.Len(t, strings.Fields(h.Get("webhook-signature")), 1)
	_, _, accepted := rc.snapshot()
	stale, err := standardwebhooks.NewWebhook(old)
	require.NoError(t, err)
	require.Error(t, stale.Verify(accepted[h.Get("webhook-id")], h), "the old secret no longer verifies")
}

func (rc *receiver) lastHeader() http.Header {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests[len(rc.requests)-1].Header.Clone()
}

func TestStaffAlertsAreNotWebhookEvents(t *testing.T) {
	t.Parallel()
	for _, name := range []events.Name{events.NameCustomerMismatch, events.NameDFYPurchased, events.NameSLABreached, events.NameConsumerStuck, events.NameUnknownPrice} {
		require.False(t, notify.IsWebhookEvent(string(name)), name)
	}
	require.True(t, notify.IsWebhookEvent(string(events.NameBackupRunFailed)))
}

func TestHostileEndpointsCannotReachInsideOrHoldTheWorker(t *testing.T) {
	t.Parallel()
	inside := startReceiver(t, nil) // an internal service a customer must not reach
	for name, tc := range map[string]struct {
		handler http.HandlerFunc
		guard   notify.Guard
		want    func(t *testing.T, a store.WebhookAttempt, err error)
	}{
		"RedirectToLoopback": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, inside.srv.URL+"/admin", http.StatusFound)
			},
			want: func(t *testing.T, a store.WebhookAttempt, err error) {
				require.ErrorContains(t, err, "redirects are not followed")
				require.Equal(t, http.StatusFound, a.StatusCode)
			},
		},
		"HugeAnswer": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				chunk := []byte(strings.Repeat("x", 64<<10))
				for range 160 { // 10 MiB
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			},
			want: func(t *testing.T, a store.WebhookAttempt, err error) {
				require.NoError(t, err, "a 2xx is a delivery, however long the answer")
				require.True(t, a.OK)
				require.LessOrEqual(t, len(a.Response), notify.WebhookResponseKept)
			},
		},
		"ControlCharactersInTheAnswer": {
			handler: func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\x00\x1b[31m\nbye")) },
			want: func(t *testing.T, a store.WebhookAttempt, err error) {
				require.NoError(t, err)
				require.Equal(t, "ok[31m\nbye", a.Response, "no NUL (PostgreSQL refuses it) nor escape codes in the log")
			},
		},
		"SlowAnswer": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body) // then the server sees the client leave
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			},
			want: func(t *testing.T, a store.WebhookAttempt, err error) {
				require.ErrorContains(t, err, "Timeout")
				require.Less(t, a.DurationMS, int64(5000))
				require.Zero(t, a.StatusCode)
			},
		},
		"LoopbackNotAllowed": {
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
			guard:   notify.Guard{},
			want: func(t *testing.T, a store.WebhookAttempt, err error) {
				require.ErrorContains(t, err, "is a loopback address, which webhooks may not call")
				require.Zero(t, a.StatusCode)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			guard := tc.guard
			if name != "LoopbackNotAllowed" {
				guard.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			}
			wh, err := notify.NewWebhooks(notify.WebhookConfig{Key: testKey(t), Guard: guard, Timeout: time.Second})
			require.NoError(t, err)
			ep := &store.WebhookEndpoint{ID: "whe_1", URL: srv.URL, SecretGeneration: 1}
			n := &store.Notification{ID: "ntf_1", Event: "backup.run_failed", BodyText: `{"type":"backup.run_failed"}`}
			a, err := wh.Post(t.Context(), ep, n, time.Now())
			tc.want(t, a, err)
			if err != nil {
				require.Equal(t, err.Error(), a.Error)
			}
		})
	}
	requests, _, _ := inside.snapshot()
	require.Zero(t, requests, "the internal service was never called")
}

func TestAnEndpointFailingTooLongIsDisabledAndItsOwnerTold(t *testing.T) {
	t.Parallel()
	b := setupWith(t, storetest.SQLite(t), func(ms *mailServer) notify.Sender { return notify.DirMailer{Dir: t.TempDir()} }, func(w *notify.Worker) {
		w.Webhooks = webhooks(t, notify.WebhookConfig{DisableAfter: 100 * time.Millisecond})
		w.Retry = []time.Duration{150 * time.Millisecond}
	})
	rc := startReceiver(t, func(_ int, w http.ResponseWriter) bool {
		http.Error(w, "gone fishing", http.StatusBadGateway)
		return true
	})
	ep := b.endpoint(rc, rc.srv.URL)
	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	require.Eventually(t, func() bool {
		got, err := b.st.GetWebhookEndpoint(t.Context(), ep.ID)
		return err == nil && !got.Enabled
	}, 20*time.Second, 20*time.Millisecond)
	got, err := b.st.GetWebhookEndpoint(t.Context(), ep.ID)
	require.NoError(t, err)
	require.Contains(t, got.DisabledReason, "deliveries failed since")
	log := b.attempts(ep.ID)
	require.Len(t, log, 2, "the first failure starts the clock, the first one past DisableAfter disables")

	n := b.webhookNotifications(ep.ID)
	require.Len(t, n, 1)
	require.Equal(t, store.NotificationUnsent, n[0].Status)
	require.Contains(t, n[0].LastError, "the endpoint was disabled")

	// The owner hears of it by email; the disabled endpoint gets nothing
	// more, and nothing is dead-lettered.
	require.Eventually(t, func() bool {
		for _, n := range b.notifications() {
			if n.Event == string(events.NameWebhookEndpointDisabled) && n.Channel == notify.ChannelEmail && n.Status == store.NotificationSent {
				return strings.Contains(n.BodyText, ep.ID) && strings.Contains(n.Subject, "Levqor stopped sending webhooks to http://127.0.0.1")
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	require.Empty(t, b.webhookNotifications(ep.ID)[1:], "the disabled endpoint is not sent its own disabling")
	require.Zero(t, b.nats.StreamMsgs(t, bus.DLQ))
}

func TestEachCreateCommandMakesItsOwnEndpoint(t *testing.T) {
	t.Parallel()
	a, b := notify.EndpointIDFor("cmd_aaaaaaaaaaaaaaaaaaaaaaaaaa"), notify.EndpointIDFor("cmd_bbbbbbbbbbbbbbbbbbbbbbbbbb")
	require.NotEqual(t, a, b)
	require.Equal(t, a, notify.EndpointIDFor("cmd_aaaaaaaaaaaaaaaaaaaaaaaaaa"), "a retried command finds its endpoint")
	require.True(t, command.ValidID(a, notify.EndpointIDPrefix))
}

func TestVerifyWebhookAgreesWithTheReferenceLibrary(t *testing.T) {
	t.Parallel()
	secret := testKey(t).SecretString("whe_1", 1)
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	body := []byte(`{"type":"webhook.test","timestamp":"2026-12-06T03:00:00Z","data":{}}`)
	now := time.Now()
	sig, err := wh.Sign("ntf_1", now, body)
	require.NoError(t, err)
	h := http.Header{}
	h.Set("webhook-id", "ntf_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", "v1,bm90IGl0 "+sig)
	require.NoError(t, notify.VerifyWebhook(secret, h, body, now), "one matching signature among several is enough")

	require.ErrorContains(t, notify.VerifyWebhook(secret, h, append(body, '\n'), now), "no signature matches")
	require.ErrorContains(t, notify.VerifyWebhook(testKey(t).SecretString("whe_1", 2), h, body, now), "no signature matches")
	require.ErrorContains(t, notify.VerifyWebhook(secret, h, body, now.Add(10*time.Minute)), "too old")
	h.Del("webhook-id")
	require.ErrorContains(t, notify.VerifyWebhook(secret, h, body, now), "required")
}

// TestAWorkerStoppedMidDeliveryPostsTheSameMessageAgain: a worker that
// stops while a receiver holds its delivery loses nothing; the next worker
// posts the message again with the same webhook-id, on which the receiver
// deduplicates.
func TestAWorkerStoppedMidDeliveryPostsTheSameMessageAgain(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	release := make(chan struct{})
	var once sync.Once
	rc := startReceiver(t, func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			<-release // the receiver is slow; the worker stops meanwhile
			w.WriteHeader(http.StatusNoContent)
			return true // answered, but the worker is gone and never hears it
		}
		return false
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	first := setupWith(t, st, func(*mailServer) notify.Sender { return nil }, func(w *notify.Worker) {
		w.Webhooks = webhooks(t, notify.WebhookConfig{Timeout: 30 * time.Second})
	})
	ep := first.endpoint(rc, rc.srv.URL)
	first.emit(samples(first.acc, first.src)[events.NameBackupRunFailed])
	require.Eventually(t, func() bool { n, _, _ := rc.snapshot(); return n == 1 }, 20*time.Second, 20*time.Millisecond)

	first.stop() // mid-delivery
	once.Do(func() { close(release) })
	n := first.webhookNotifications(ep.ID)
	require.Len(t, n, 1)
	require.Equal(t, store.NotificationPending, n[0].Status, "not marked sent: the worker never heard the answer")

	first.restart()
	require.Eventually(t, func() bool { _, _, acc := rc.snapshot(); return len(acc) == 1 }, 20*time.Second, 20*time.Millisecond)
	first.delivered()
	requests, _, accepted := rc.snapshot()
	require.Equal(t, 2, requests)
	_, ok := accepted[n[0].ID]
	require.True(t, ok, "the second post carries the first one's webhook-id")
	require.Equal(t, store.NotificationSent, first.webhookNotifications(ep.ID)[0].Status)
}

// TestOldNotificationsArePrunedButPendingOnesKept: notify.prune deletes
// what is older than the retention, except a notification still pending
// (it may yet be delivered or replayed), and the old delivery log.
func TestOldNotificationsArePrunedButPendingOnesKept(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		now := time.Now().UTC()
		old := now.Add(-100 * 24 * time.Hour)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			for id, n := range map[string]struct {
				at     time.Time
				status string
			}{"ntf_old_sent": {old, store.NotificationSent}, "ntf_old_pending": {old, store.NotificationPending}, "ntf_new_sent": {now, store.NotificationSent}} {
				if _, err := tx.InsertNotification(ctx, store.Notification{ID: id, AccountID: "acc_1", Event: "backup.run_failed", EventID: "outbox-1",
					Incident: id, Channel: notify.ChannelEmail, Recipient: "ops@ada.example", Audience: store.AudienceCustomer, Subject: "s",
					Status: n.status, CreatedAt: n.at}); err != nil {
					return err
				}
			}
			for _, at := range []time.Time{old, now} {
				if err := tx.InsertWebhookAttempt(ctx, store.WebhookAttempt{EndpointID: "whe_1", NotificationID: "ntf_x", Event: "e", AttemptedAt: at, OK: true}); err != nil {
					return err
				}
			}
			return nil
		}))
		w := &notify.Worker{Store: st}
		tick, err := json.Marshal(scheduler.Tick{Job: notify.JobPrune, Slot: now})
		require.NoError(t, err)
		require.NoError(t, w.HandleTick(ctx, &bus.Message{Subject: "levqor.tick." + notify.JobPrune, Data: tick, Header: nats.Header{}, Consumer: notify.ConsumerTicks}))
		left, err := st.ListNotifications(ctx, store.ListNotificationsParams{AccountID: "acc_1", Limit: 10})
		require.NoError(t, err)
		var ids []string
		for _, n := range left {
			ids = append(ids, n.ID)
		}
		require.ElementsMatch(t, []string{"ntf_old_pending", "ntf_new_sent"}, ids)
		log, err := st.ListWebhookAttempts(ctx, "whe_1", 0, 10)
		require.NoError(t, err)
		require.Len(t, log, 1)
	})
}

// TestASlowReceiverHoldsNoEmail: webhook deliveries have a consumer of
// their own, so a receiver that never answers holds none of email's
// slots, even with one slot a consumer.
func TestASlowReceiverHoldsNoEmail(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hung := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hung <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	b := setupWith(t, storetest.SQLite(t), smtpMailer(t), func(w *notify.Worker) {
		w.Webhooks = webhooks(t, notify.WebhookConfig{Timeout: time.Minute})
	})
	b.stop()
	b.concurrency = 1
	b.restart()
	b.endpoint(nil, srv.URL, "backup.run_failed")

	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was never posted")
	}
	require.Eventually(t, func() bool { return len(b.mail.messages()) == 1 }, 10*time.Second, 20*time.Millisecond,
		"the email went out while the receiver held its delivery")
}
