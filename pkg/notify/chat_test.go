package notify_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// chatHook is a Slack-compatible incoming webhook on loopback: it keeps
// the texts posted to /services/ok/secret-token, answers 500 to the next
// fail posts, and 404 to any other path.
type chatHook struct {
	srv *httptest.Server

	mu    sync.Mutex
	texts []string
	fail  int
}

func startChatHook(t *testing.T) *chatHook {
	t.Helper()
	h := &chatHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/services/ok/secret-token" {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		var body struct{ Text string }
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fail > 0 {
			h.fail--
			http.Error(w, "temporarily unavailable", http.StatusInternalServerError)
			return
		}
		h.texts = append(h.texts, body.Text)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *chatHook) posted() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.texts...)
}

func TestStaffAreToldInChat(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	hook := startChatHook(t)
	b := setup(t, st, func(*mailServer) notify.Sender { return notify.DirMailer{Dir: t.TempDir()} })
	rules, err := notify.Parse([]byte(`
recipients:
  on_call:
    chat: [` + hook.srv.URL + `/services/ok/secret-token]
  revoked:
    chat: [` + hook.srv.URL + `/services/gone/old-token]
rules:
  backup.corrupt: [customer, on_call]
  backup.overdue: [revoked]
`))
	require.NoError(t, err)
	b.worker.Rules, b.worker.Chat = rules, notify.NewChat(5*time.Second)

	hook.fail = 1 // the chat service has a bad moment
	b.emit(samples(b.acc, b.src)[events.NameBackupCorrupt])
	b.delivered()
	require.Equal(t, []string{"*A snapshot of orders-db failed its integrity check*\nHello Ada Backups Ltd,\n\n" +
		"Snapshot snap_1 of orders-db (" + b.src + "), taken 6 December 2026, 03:00 UTC, failed its integrity check at 6 December 2026, 03:00 UTC:\n\n" +
		"SHA-256 mismatch\n\nIt is marked corrupt and no restore will use it; your other snapshots are not affected.\n\n" +
		"https://levqor.example.com/v1/sources/" + b.src + "/snapshots"}, hook.posted(), "posted once, after the retry")
	var chat store.Notification
	for _, n := range b.notifications() {
		if n.Channel == notify.ChannelChat {
			chat = n
		}
	}
	require.Equal(t, store.AudienceStaff, chat.Audience)
	require.Equal(t, 2, chat.Attempts)

	t.Run("ARevokedWebhookIsDeadLetteredWithoutItsSecret", func(t *testing.T) {
		b.emit(samples(b.acc, b.src)[events.NameBackupOverdue])
		require.Eventually(t, func() bool { return b.nats.StreamMsgs(t, bus.DLQ) == 1 }, 20*time.Second, 20*time.Millisecond)
		n := b.notifications()[0]
		require.Equal(t, notify.ChannelChat, n.Channel)
		require.Contains(t, n.LastError, "answered 404 Not Found")
		require.NotContains(t, n.LastError, "old-token", "a webhook's URL is its password")
		dead := b.nats.Messages(t, bus.DLQ)[0]
		require.NotContains(t, dead.Header.Get(bus.HeaderDlqReason), "old-token")
	})
}

func TestChatTextCannotPingOrDisguiseLinks(t *testing.T) {
	t.Parallel()
	hook := startChatHook(t)
	err := notify.NewChat(5*time.Second).Send(t.Context(), &store.Notification{ID: "ntf_x", Channel: notify.ChannelChat,
		Recipient: hook.srv.URL + "/services/ok/secret-token", Subject: "Backup of <!channel> failed",
		BodyText: "Reason: <https://evil.example|Re-authenticate> & retry\n\n-- \nLevqor"})
	require.NoError(t, err)
	require.Equal(t, []string{"*Backup of &lt;!channel&gt; failed*\nReason: &lt;https://evil.example|Re-authenticate&gt; &amp; retry"}, hook.posted())
}

func TestChatURLsAreCheckedAndRedacted(t *testing.T) {
	t.Parallel()
	_, err := notify.Parse([]byte(`
recipients:
  on_call: {chat: ["ftp://hooks.example/x", "https://user:pw@hooks.example/x"]}
rules:
  backup.corrupt: [on_call]
`))
	require.ErrorContains(t, err, "recipients.on_call.chat[0]: not an http(s) incoming-webhook URL")
	require.ErrorContains(t, err, "recipients.on_call.chat[1]")
	_, err = notify.Parse([]byte("recipients:\n  on_call: {pager: [a@b.example]}\nrules:\n  backup.corrupt: [on_call]\n"))
	require.ErrorContains(t, err, `unknown field "pager"`)
	require.Equal(t, "https://hooks.slack.com/…", notify.RedactURL("https://hooks.slack.com/services/T0/B0/XXXX"))
}
