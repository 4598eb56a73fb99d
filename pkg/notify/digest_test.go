package notify_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/scheduler"
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

// lostDigest records, for the bundle's customer, an open digest that was
// due due and one notification held for it just now, with no delivery
// queued: as if the digest's delivery had been dead-lettered while the
// burst went on.
func (b *bundle) lostDigest(due time.Time) string {
	b.t.Helper()
	ctx := b.t.Context()
	created := time.Now()
	require.NoError(b.t, b.st.InTx(ctx, func(tx *store.Tx) error {
		base := store.Notification{AccountID: b.acc, Event: "backup.run_failed", EventID: "outbox-1", Channel: notify.ChannelEmail,
			Recipient: "ops@ada.example", Audience: store.AudienceCustomer, Subject: "Backup of orders-db failed", CreatedAt: created}
		d := base
		d.ID, d.Incident, d.Status, d.DigestState, d.NotBefore = "ntf_lostdigest", "digest:ntf_lostdigest", store.NotificationPending, store.DigestOpen, &due
		m := base
		m.ID, m.Incident, m.Status, m.DigestID = "ntf_lostmember", "backup.run_failed:run_failed:lost", store.NotificationHeld, d.ID
		for _, n := range []store.Notification{d, m} {
			if _, err := tx.InsertNotification(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}))
	return "ntf_lostdigest"
}

// A digest whose delivery was lost (dead-lettered while it waited) is
// not left open to gather the burst for ever: the next notification of
// the burst closes it and queues it again, and opens a digest of its own.
func TestALostDigestIsSentByTheNextOfItsBurst(t *testing.T) {
	t.Parallel()
	const window = time.Second
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setupWith(t, st, smtpMailer(t), func(w *notify.Worker) { w.DigestWindow = window })
		lost := b.lostDigest(time.Now().Add(-1500 * time.Millisecond)) // due more than a window ago
		ev := samples(b.acc, b.src)[events.NameBackupRunFailed].(events.BackupRunFailed)
		b.emit(ev)
		require.Eventually(t, func() bool { return len(b.mail.messages()) == 2 }, 10*time.Second, 20*time.Millisecond)
		subjects := []string{b.mail.messages()[0].Header.Get("Subject"), b.mail.messages()[1].Header.Get("Subject")}
		require.Equal(t, []string{"Backup of orders-db failed (1 more)", "Backup of orders-db failed (1 more)"}, subjects,
			"the lost digest with its member, then the new one with the event")
		b.delivered()
		for _, n := range b.notifications() {
			require.NotEqual(t, store.NotificationHeld, n.Status, "%s", n.ID)
			if n.ID == lost {
				require.Equal(t, store.NotificationSent, n.Status)
			}
		}
	})
}

// The daily notify.prune sends a lost digest whose burst ended with it.
func TestPruneSendsALostDigest(t *testing.T) {
	t.Parallel()
	b := setupWith(t, storetest.SQLite(t), smtpMailer(t), func(w *notify.Worker) { w.DigestWindow = time.Minute })
	lost := b.lostDigest(time.Now().Add(-2 * time.Minute))
	tick, err := json.Marshal(scheduler.Tick{Job: notify.JobPrune, Slot: time.Now()})
	require.NoError(t, err)
	require.NoError(t, b.worker.HandleTick(t.Context(), &bus.Message{Subject: "levqor.tick." + notify.JobPrune, Data: tick,
		Header: nats.Header{}, Consumer: notify.ConsumerTicks}))
	require.Eventually(t, func() bool { return len(b.mail.messages()) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Backup of orders-db failed (1 more)", b.mail.messages()[0].Header.Get("Subject"))
	b.delivered()
	n, err := b.st.GetNotification(t.Context(), lost)
	require.NoError(t, err)
	require.Equal(t, store.NotificationSent, n.Status)
}

// On a delivery's last attempt nothing waits: a digest not yet due, or a
// customer's quiet hours, would dead-letter it; it goes now instead.
func TestTheLastDeliveryDoesNotWait(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "mail")
	due := time.Now().Add(time.Hour)
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertNotification(ctx, store.Notification{ID: "ntf_digest", Event: "ops.dlq_growing", EventID: "outbox-1",
			Incident: "digest:ntf_digest", Channel: notify.ChannelEmail, Recipient: "oncall@levqor.example", Audience: store.AudienceStaff,
			Subject: "s", Status: store.NotificationPending, DigestState: store.DigestOpen, NotBefore: &due})
		return err
	}))
	w := &notify.Worker{Store: st, Mailer: notify.DirMailer{Dir: dir}}
	payload := mustJSON(t, map[string]string{"notification_id": "ntf_digest"})
	msg := func(deliveries uint64) *bus.Message {
		return &bus.Message{Subject: "levqor.cmd.notify.deliver", Data: payload, Header: nats.Header{}, Deliveries: deliveries, MaxDeliver: 3}
	}
	var de *bus.DeferError
	require.ErrorAs(t, w.HandleDelivery(ctx, msg(1)), &de, "not due: it waits")
	err := w.HandleDelivery(ctx, msg(3))
	require.Error(t, err, "a digest of nothing cannot be rendered")
	require.False(t, errors.As(err, &de), "the last delivery does not wait")
}
