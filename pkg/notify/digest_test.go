package notify_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func smtpMailer(t *testing.T) func(ms *mailServer) notify.Sender {
	return func(ms *mailServer) notify.Sender {
		m, err := notify.NewSMTP(notify.SMTPConfig{Host: "127.0.0.1", Port: ms.port(t), TLS: notify.TLSNone, Timeout: 5 * time.Second})
		require.NoError(t, err)
		return m
	}
}

// A burst of failed runs makes two emails: the first at once, and one
// digest of the rest when the window after them ends. Once the burst is
// over, the next failure is told at once again.
func TestABurstIsToldOnceThenInOneDigest(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setupWith(t, st, smtpMailer(t), func(w *notify.Worker) { w.DigestWindow = window })
		failed := func(i int) events.BackupRunFailed {
			ev := samples(b.acc, b.src)[events.NameBackupRunFailed].(events.BackupRunFailed)
			ev.RunID, ev.Incident = fmt.Sprintf("run_%d", i), fmt.Sprintf("run_failed:run_%d", i)
			return ev
		}
		start := time.Now()
		for i := range 8 {
			b.emit(failed(i))
		}
		require.Eventually(t, func() bool { return len(b.mail.messages()) >= 1 }, 10*time.Second, 20*time.Millisecond)
		require.Equal(t, "Backup of orders-db failed", b.mail.messages()[0].Header.Get("Subject"), "the first is told at once")
		if time.Since(start) < window {
			require.Len(t, b.mail.messages(), 1, "the rest wait for the window to end")
		}

		require.Eventually(t, func() bool { return len(b.mail.messages()) == 2 }, 20*time.Second, 20*time.Millisecond)
		digest := b.mail.messages()[1]
		require.Equal(t, "Backup of orders-db failed (7 more)", digest.Header.Get("Subject"))
		text, html := parts(t, digest)
		require.Contains(t, text, "Hello Ada Backups Ltd,")
		require.Contains(t, text, "7 more notifications about backup.run_failed")
		require.Equal(t, 7, strings.Count(text, "UTC: Backup of orders-db failed"), "each one listed")
		require.Contains(t, text, "https://levqor.example.com/v1/notifications")
		require.Contains(t, html, "7 more notifications")

		b.delivered()
		var sent, digested, digests int
		var digestID string
		for _, n := range b.notifications() {
			switch {
			case strings.HasPrefix(n.Incident, notify.DigestIncidentPrefix):
				digests++
				digestID = n.ID
				require.Equal(t, store.NotificationSent, n.Status)
				require.Equal(t, store.DigestClosed, n.DigestState)
			case n.Status == store.NotificationDigested:
				digested++
			case n.Status == store.NotificationSent:
				sent++
			default:
				t.Fatalf("notification %s is %s", n.ID, n.Status)
			}
		}
		require.Equal(t, []int{1, 7, 1}, []int{sent, digested, digests})
		for _, n := range b.notifications() {
			if n.Status == store.NotificationDigested {
				require.Equal(t, digestID, n.DigestID, "told by the digest")
			}
		}

		t.Run("AfterTheBurstTheNextIsToldAtOnce", func(t *testing.T) {
			time.Sleep(window + 200*time.Millisecond)
			b.emit(failed(100))
			require.Eventually(t, func() bool { return len(b.mail.messages()) == 3 }, 10*time.Second, 20*time.Millisecond)
			require.Equal(t, "Backup of orders-db failed", b.mail.messages()[2].Header.Get("Subject"))
		})
	})
}

// A customer's email carries the link that stops its event's emails, in
// the text, the HTML and the List-Unsubscribe header; staff emails and
// mandatory events carry none.
func TestCustomerEmailsCarryAnUnsubscribeLink(t *testing.T) {
	t.Parallel()
	key, err := notify.ParseWebhookKey(strings.Repeat("ab", 32))
	require.NoError(t, err)
	wh, err := notify.NewWebhooks(notify.WebhookConfig{Key: key})
	require.NoError(t, err)
	b := setupWith(t, storetest.SQLite(t), smtpMailer(t), func(w *notify.Worker) { w.Webhooks = wh })

	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	require.Eventually(t, func() bool { return len(b.mail.messages()) == 1 }, 10*time.Second, 20*time.Millisecond)
	m := b.mail.messages()[0]
	link := strings.Trim(m.Header.Get("List-Unsubscribe"), "<>")
	require.True(t, strings.HasPrefix(link, "https://levqor.example.com/unsubscribe?"), link)
	require.Equal(t, "List-Unsubscribe=One-Click", m.Header.Get("List-Unsubscribe-Post"), "https: one click")
	u, err := url.Parse(link)
	require.NoError(t, err)
	q := u.Query()
	require.Equal(t, b.acc, q.Get("account"))
	require.Equal(t, "backup.run_failed", q.Get("event"))
	require.True(t, key.CheckUnsubscribe(b.acc, "backup.run_failed", q.Get("sig")))
	require.False(t, key.CheckUnsubscribe(b.acc, "backup.overdue", q.Get("sig")), "a link stops one event only")
	require.False(t, key.CheckUnsubscribe("acc_other", "backup.run_failed", q.Get("sig")), "of one account only")
	text, html := parts(t, m)
	require.Contains(t, text, "To stop emails about backup.run_failed: "+link)
	require.Contains(t, html, "stop emails about backup.run_failed")

	// backup.corrupt goes to the customer, who cannot mute it, and to
	// on-call, who is staff.
	b.emit(samples(b.acc, b.src)[events.NameBackupCorrupt])
	require.Eventually(t, func() bool { return len(b.mail.messages()) >= 3 }, 10*time.Second, 20*time.Millisecond)
	for _, m := range b.mail.messages()[1:] {
		require.Empty(t, m.Header.Get("List-Unsubscribe"), "to %s", m.Header.Get("To"))
		text, _ := parts(t, m)
		require.NotContains(t, text, "/unsubscribe", "to %s", m.Header.Get("To"))
	}
}
