package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/outbox"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestShippedRulesAreValid(t *testing.T) {
	t.Parallel()
	r, err := notify.Load("")
	require.NoError(t, err)
	require.Equal(t, []string{notify.RecipientCustomer}, r.For(string(events.NameBackupRunFailed)))
	require.Equal(t, []string{"dfy_team"}, r.For(string(events.NameDFYPurchased)))
	require.Empty(t, r.For(string(events.NameEntitlementsChanged)), "not every event tells someone")
}

func TestBadRulesNameEveryEntryAtFault(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "notify.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
recipients:
  on_call: [not-an-address]
  customer: [x@example.com]
rules:
  backup.run_failed: [customer, finance]
  backup.exploded: [on_call]
  billing.entitlements_changed: [on_call]
`), 0o600))
	_, err := notify.Load(path)
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		"LEVQOR_NOTIFY_RULES notify.yaml: invalid notify rules",
		`recipients.customer: "customer" is reserved`,
		`recipients.on_call.email[0]: "not-an-address" is not an email address`,
		`rules.backup.run_failed: unknown recipient "finance"`,
		"rules.backup.exploded: no such event",
		"rules.billing.entitlements_changed: Levqor has no message for this event",
	} {
		require.Contains(t, msg, want)
	}

	require.NoError(t, os.WriteFile(path, []byte("rules: {}\nextra: 1\n"), 0o600))
	_, err = notify.Load(path)
	require.ErrorContains(t, err, `unknown field "extra"`)
}

// samples are realistic payloads of every event the shipped rules name,
// as their producers write them.
func samples(acc, src string) map[events.Name]events.Event {
	at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	tier := "growth"
	grace := at.Add(72 * time.Hour)
	billing := events.Billing{AccountID: acc, StripeEventID: "evt_1", At: at}
	invoice := events.Invoice{Billing: billing, InvoiceID: "in_1", AmountDue: 4900, Currency: "gbp", AttemptCount: 2, Tier: &tier}
	ticket := events.Ticket{AccountID: acc, TicketID: "tkt_1", Subject: "Restore failing", Status: "open", Category: "restore",
		Severity: "high", Queue: "priority", Origin: "customer", At: at}
	esc := events.SLAEscalation{Ticket: ticket, EscalationKey: "first_response.breached", Clock: "first_response", Due: &at}
	return map[events.Name]events.Event{
		events.NameBackupRunFailed: events.BackupRunFailed{AccountID: acc, SourceID: src, RunID: "run_1", CommandID: "cmd_1",
			Trigger: "schedule", Attempts: 1, Incident: "run_failed:run_1", Reason: "pg_dump: connection refused", At: at},
		events.NameBackupOverdue: events.BackupOverdue{AccountID: acc, SourceID: src, SourceName: "orders-db",
			Incident: "overdue:" + src + ":never", Schedule: "0 2 * * *", TimeZone: "Europe/London", Reason: "no good snapshot yet", At: at},
		events.NameBackupCorrupt: events.BackupCorrupt{AccountID: acc, SourceID: src, SnapshotID: "snap_1",
			Incident: "corrupt:snap_1", Reason: "SHA-256 mismatch", TakenAt: at, At: at},
		events.NameBackupQuotaExceeded: events.BackupQuotaExceeded{AccountID: acc, SourceID: src, RunID: "run_2",
			Incident: "quota:run_2", Reason: "100 GB quota reached", At: at},
		events.NameDrillFailed: events.DrillFailed{AccountID: acc, SourceID: src, SnapshotID: "snap_1", DrillID: "drl_1",
			Incident: "drill_failed:drl_1", Reason: "the restore failed: archive: checksum mismatch", At: at},
		events.NameBackupQuotaWarn: events.BackupQuotaWarn{AccountID: acc, SourceID: src, RunID: "run_3", Level: 80,
			Incident: "quota_warn:80:run_3", Reason: "the account stores 81 GB of its 100 GB", At: at},
		events.NamePaymentFailed:    events.PaymentFailed{Invoice: invoice, GraceUntil: &grace},
		events.NameAccountSuspended: events.AccountSuspended{Billing: billing, InvoiceID: "in_1", PastDueSince: at, GraceUntil: grace},
		events.NamePaymentRecovered: events.PaymentRecovered{Invoice: invoice, PreviousState: "past_due"},
		events.NameTrialWillEnd:     events.TrialWillEnd{Billing: billing, SubscriptionID: "sub_1", TrialEnd: &grace},
		events.NameTrialReminder: events.TrialReminder{Billing: billing, SubscriptionID: "sub_1", TrialEnd: grace, DaysLeft: 3, Tier: &tier,
			Incident: "trial_reminder:sub_1:2026-12-09T03:00:00Z:168h0m0s"},
		events.NameCustomerMismatch: events.CustomerMismatch{Billing: billing, CheckoutSessionID: "cs_2", AccountCustomerID: "cus_a",
			SessionCustomerID: "cus_b", Incident: "customer_mismatch:cs_2", Reason: "Checkout session cs_2 names account acc_1 …"},
		events.NameDFYPurchased: events.DFYPurchased{Billing: billing, Package: "dfy_setup", Quantity: 1, CheckoutSessionID: "cs_1"},
		events.NameTicketAutoClosed: events.TicketAutoClosed{Ticket: ticket, ResolvedAt: at, Incident: "autoclosed:tkt_1",
			Reason: "resolved 2026-12-06T03:00:00Z with no reply since"},
		events.NameSLAAtRisk:   events.SLAAtRisk{SLAEscalation: esc},
		events.NameSLABreached: events.SLABreached{SLAEscalation: esc},
		events.NameDFYStalled: events.DFYStalled{Ticket: ticket, Package: "dfy_onboarding", StalledSince: at,
			Incident: "dfy_stalled:tkt_1", Reason: "no change since 2026-12-06T03:00:00Z (72h0m0s)"},
		events.NameConsumerStuck: events.ConsumerStuck{Consumer: "billing-stripe", Stream: "STRIPE", Slot: at},
		events.NameDLQGrowing:    events.DLQGrowing{Consumer: "billing-stripe", Stream: "STRIPE", DLQMessages: 4, Slot: at},
		events.NameErasureDue:    events.ErasureDue{AccountID: acc, ErasureID: "era_1", ScheduledFor: grace, Incident: "erasure_due:era_1", At: at},
		events.NameWebhookEndpointDisabled: events.WebhookEndpointDisabled{AccountID: acc, EndpointID: "whe_1", URL: "https://hooks.ada.example/…",
			FailingSince: at, LastError: "webhook https://hooks.ada.example/… answered 500 Internal Server Error",
			Incident: "endpoint_disabled:whe_1", Reason: "deliveries failed for 120h0m0s", At: at},
	}
}

func TestEveryRuledEventRenders(t *testing.T) {
	t.Parallel()
	rules, err := notify.Load("")
	require.NoError(t, err)
	all := samples("acc_1", "src_1")
	for name := range rules.Rules {
		t.Run(name, func(t *testing.T) {
			ev, ok := all[events.Name(name)]
			require.True(t, ok, "the shipped rules name %s: give it a sample", name)
			payload := mustJSON(t, ev)
			m, err := notify.Render(name, payload, notify.Party{ID: "acc_1", Name: "Ada Backups Ltd"},
				notify.Party{ID: "src_1", Name: "orders-db"}, "https://levqor.example.com", "")
			require.NoError(t, err)
			require.NotEmpty(t, m.Subject)
			require.NotContains(t, m.Text+m.Subject, "<no value>")
			require.Contains(t, m.Text, "https://levqor.example.com/")
			require.Contains(t, m.HTML, `<a href="https://levqor.example.com/`)
		})
	}
}

// TestEveryRuledEventRendersFromItsLeanestPayload: a payload with every
// optional field left out (zero values, omitempty) still renders; a
// template that needs one would dead-letter the notification.
func TestEveryRuledEventRendersFromItsLeanestPayload(t *testing.T) {
	t.Parallel()
	rules, err := notify.Load("")
	require.NoError(t, err)
	all := samples("", "")
	for name := range rules.Rules {
		t.Run(name, func(t *testing.T) {
			ev, ok := all[events.Name(name)]
			require.True(t, ok)
			zero := reflect.Zero(reflect.TypeOf(ev)).Interface()
			_, err := notify.Render(name, mustJSON(t, zero), notify.Party{}, notify.Party{}, "", "")
			require.NoError(t, err)
		})
	}
}

func TestRenderEscapesHTML(t *testing.T) {
	t.Parallel()
	ev := samples("acc_1", "src_1")[events.NameBackupRunFailed].(events.BackupRunFailed)
	ev.Reason = `<script>alert("x")</script>`
	m, err := notify.Render(string(events.NameBackupRunFailed), mustJSON(t, ev), notify.Party{ID: "acc_1", Name: "A & B <Ltd>"},
		notify.Party{ID: "src_1", Name: "db"}, "http://127.0.0.1:8080", "")
	require.NoError(t, err)
	require.Contains(t, m.Text, `<script>alert("x")</script>`, "the text part is text")
	require.NotContains(t, m.HTML, "<script>")
	require.Contains(t, m.HTML, "&lt;script&gt;")
	require.Contains(t, m.HTML, "A &amp; B &lt;Ltd&gt;")
}

type bundle struct {
	t      *testing.T
	st     *store.Store
	nats   *bustest.Env
	mail   *mailServer
	worker *notify.Worker
	acc    string
	src    string
	halt   func() // stops the running router and relay
	// concurrency, when set, is the router's per consumer.
	concurrency int
}

func quiet(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(t.Output())
	l.SetLevel(logrus.WarnLevel)
	return l
}

// setup runs the notify worker, with a mail server and the outbox relay,
// for an account with one source.
func setup(t *testing.T, st *store.Store, mailer func(ms *mailServer) notify.Sender) *bundle {
	t.Helper()
	return setupWith(t, st, mailer, nil)
}

// setupWith is setup with configure called on the worker before it
// starts.
func setupWith(t *testing.T, st *store.Store, mailer func(ms *mailServer) notify.Sender, configure func(w *notify.Worker)) *bundle {
	t.Helper()
	ctx := t.Context()
	b := &bundle{t: t, st: st, nats: bustest.Start(t), mail: startMailServer(t)}
	var err error
	b.acc, err = command.NewID("acc_")
	require.NoError(t, err)
	b.src, err = command.NewID("src_")
	require.NoError(t, err)
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertAccount(ctx, store.Account{ID: b.acc, Name: "Ada Backups Ltd", ContactEmail: "ops@ada.example", StripeCustomerID: "cus_ada"}); err != nil {
			return err
		}
		_, err := tx.InsertSource(ctx, store.BackupSource{ID: b.src, AccountID: b.acc, Name: "orders-db", Kind: "postgres", Schedule: "0 2 * * *", TimeZone: "UTC"})
		return err
	}))
	rules, err := notify.Parse([]byte(`
recipients:
  on_call: [oncall@levqor.example, pager@refused.example]
rules:
  backup.run_failed: [customer]
  backup.corrupt: [customer, on_call]
  webhook.endpoint_disabled: [customer]
`))
	require.NoError(t, err)
	b.worker = &notify.Worker{Store: st, Rules: rules, Topology: b.nats.Topo, Mailer: mailer(b.mail),
		PublicURL: "https://levqor.example.com", Retry: []time.Duration{50 * time.Millisecond}}
	if configure != nil {
		configure(b.worker)
	}

	b.restart()
	t.Cleanup(b.stop)
	return b
}

// restart runs the worker's router and the outbox relay until stop.
func (b *bundle) restart() {
	b.t.Helper()
	r, err := bus.NewRouter(b.nats.JS, bus.RouterConfig{
		Topology: b.nats.Topo, Logger: quiet(b.t), MaxDeliver: 4, RetryAttempts: 1, Concurrency: b.concurrency,
		FetchWait: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second, AckWait: 2 * time.Second,
	})
	require.NoError(b.t, err)
	b.worker.Register(r)
	relay := &outbox.Relay{Store: b.st, Publisher: bus.NewPublisher(b.nats.JS, b.nats.Topo), Log: quiet(b.t), Interval: 20 * time.Millisecond}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- r.Run(runCtx) }()
	go func() { done <- relay.Run(runCtx) }()
	require.Eventually(b.t, r.Ready, 10*time.Second, 10*time.Millisecond)
	b.halt = func() {
		cancel()
		<-done
		<-done
	}
}

// stop stops the router and the relay, waiting for their handlers.
func (b *bundle) stop() {
	if b.halt != nil {
		b.halt()
		b.halt = nil
	}
}

// emit publishes ev as its producer would, through the outbox, and
// waits until the notify worker has handled it.
func (b *bundle) emit(ev events.Event) {
	b.t.Helper()
	var id int64
	require.NoError(b.t, b.st.InTx(b.t.Context(), func(tx *store.Tx) error {
		var err error
		id, err = events.Emit(b.t.Context(), tx, b.nats.Topo, ev, "corr-test")
		return err
	}))
	msgID := outbox.MsgID(id)
	require.Eventually(b.t, func() bool {
		done, err := b.st.ProcessedMsgIDs(b.t.Context(), notify.ConsumerEvents, []string{msgID})
		return err == nil && done[msgID]
	}, 20*time.Second, 20*time.Millisecond, "notify-event handled %s", msgID)
}

// delivered waits until no notification of the account but those to
// except is pending.
func (b *bundle) delivered(except ...string) {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		for _, n := range b.notifications() {
			if n.Status == store.NotificationPending && !slices.Contains(except, n.Recipient) {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond)
}

func (b *bundle) notifications() []store.Notification {
	b.t.Helper()
	n, err := b.st.ListNotifications(b.t.Context(), store.ListNotificationsParams{AccountID: b.acc, Limit: 100})
	require.NoError(b.t, err)
	return n
}

func TestAFailedBackupIsToldByEmailOncePerIncident(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, func(ms *mailServer) notify.Sender {
			m, err := notify.NewSMTP(notify.SMTPConfig{Host: "127.0.0.1", Port: ms.port(t), TLS: notify.TLSNone, Timeout: 5 * time.Second})
			require.NoError(t, err)
			return m
		})
		ev := samples(b.acc, b.src)[events.NameBackupRunFailed].(events.BackupRunFailed)
		b.emit(ev)
		require.Eventually(t, func() bool { return len(b.mail.messages()) == 1 }, 20*time.Second, 20*time.Millisecond)

		m := b.mail.messages()[0]
		require.Equal(t, "ops@ada.example", to(t, m))
		require.Equal(t, "Backup of orders-db failed", m.Header.Get("Subject"))
		text, html := parts(t, m)
		require.Contains(t, text, "Hello Ada Backups Ltd,")
		require.Contains(t, text, "pg_dump: connection refused")
		require.Contains(t, text, "https://levqor.example.com/v1/sources/"+b.src+"/runs")
		require.Contains(t, html, "pg_dump: connection refused")

		b.delivered()
		n := b.notifications()
		require.Len(t, n, 1)
		require.Equal(t, store.NotificationSent, n[0].Status)
		require.Equal(t, 1, n[0].Attempts)
		require.Equal(t, "backup.run_failed:run_failed:run_1", n[0].Incident)
		require.Equal(t, store.AudienceCustomer, n[0].Audience)

		t.Run("TheSameIncidentAgainIsNotToldAgain", func(t *testing.T) {
			again := ev
			again.Attempts = 2
			b.emit(again)
			require.Len(t, b.mail.messages(), 1)
			require.Len(t, b.notifications(), 1)
		})

		t.Run("AMailServerThatIsBusyGetsTheMessageOnceLater", func(t *testing.T) {
			b.mail.failNext(2)
			busy := ev
			busy.RunID, busy.Incident = "run_2", "run_failed:run_2"
			b.emit(busy)
			b.delivered()
			require.Len(t, b.mail.messages(), 2, "delivered once")
			n := b.notifications()
			require.Equal(t, store.NotificationSent, n[0].Status)
			require.Equal(t, 3, n[0].Attempts, "two refusals, then the delivery")
		})

		t.Run("ARefusedAddressIsDeadLetteredAndTheOthersStillGo", func(t *testing.T) {
			b.emit(samples(b.acc, b.src)[events.NameBackupCorrupt])
			require.Eventually(t, func() bool { return b.nats.StreamMsgs(t, bus.DLQ) == 1 }, 20*time.Second, 20*time.Millisecond)
			b.delivered("pager@refused.example")
			var got []string
			for _, m := range b.mail.messages()[2:] {
				got = append(got, to(t, m))
			}
			require.ElementsMatch(t, []string{"ops@ada.example", "oncall@levqor.example"}, got)
			dead := b.nats.Messages(t, bus.DLQ)[0]
			require.Equal(t, b.nats.Topo.Subject(bus.DLQ, notify.ConsumerDeliveries), dead.Subject)
			require.Contains(t, dead.Header.Get(bus.HeaderDlqReason), "no such mailbox")
			var refused *store.Notification
			for _, n := range b.notifications() {
				if n.Recipient == "pager@refused.example" {
					refused = &n
				}
			}
			require.NotNil(t, refused)
			require.Equal(t, store.AudienceStaff, refused.Audience)
			require.Equal(t, store.NotificationFailed, refused.Status, "its last attempt failed; an operator can replay it once the address is fixed")
			require.Contains(t, refused.LastError, "no such mailbox")
		})
	})
}

func TestWithoutAMailerNotificationsAreRecordedUnsent(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), func(*mailServer) notify.Sender { return nil })
	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	n := b.notifications()
	require.Len(t, n, 1)
	require.Equal(t, store.NotificationUnsent, n[0].Status)
	require.Equal(t, notify.MailerMissing, n[0].LastError)
	require.Zero(t, b.nats.StreamMsgs(t, bus.DLQ))
}

func TestDirMailerWritesAReadableEmail(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "mail")
	b := setup(t, storetest.SQLite(t), func(*mailServer) notify.Sender { return notify.DirMailer{Dir: dir} })
	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	b.delivered()
	n := b.notifications()
	require.Len(t, n, 1)
	f, err := os.Open(notify.DirMailer{Dir: dir}.Path(n[0].ID))
	require.NoError(t, err)
	defer f.Close()
	m, err := mail.ReadMessage(f)
	require.NoError(t, err)
	require.Equal(t, "Backup of orders-db failed", m.Header.Get("Subject"))
	require.Equal(t, "<"+n[0].ID+"@levqor>", m.Header.Get("Message-Id"))
	text, _ := parts(t, m)
	require.Contains(t, text, "pg_dump: connection refused")
}

func TestSMTPSettingsAreChecked(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  notify.SMTPConfig
		want string
	}{
		"NoHost":  {notify.SMTPConfig{}, "LEVQOR_SMTP_HOST: required"},
		"BadTLS":  {notify.SMTPConfig{Host: "mail", TLS: "maybe"}, `LEVQOR_SMTP_TLS: "maybe"`},
		"BadFrom": {notify.SMTPConfig{Host: "mail", From: "nobody"}, "LEVQOR_MAIL_FROM"},
		"BadPort": {notify.SMTPConfig{Host: "mail", Port: 70000}, "LEVQOR_SMTP_PORT"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := notify.NewSMTP(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// parts returns the text and HTML parts of a multipart/alternative email.
func parts(t *testing.T, m *mail.Message) (text, html string) {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mediaType)
	r := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(p)
		require.NoError(t, err)
		body := string(b) // multipart.Reader decodes quoted-printable itself
		switch {
		case strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain"):
			text = body
		case strings.HasPrefix(p.Header.Get("Content-Type"), "text/html"):
			html = body
		}
	}
	return text, html
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// to is the address an email was sent to.
func to(t *testing.T, m *mail.Message) string {
	t.Helper()
	a, err := mail.ParseAddress(m.Header.Get("To"))
	require.NoError(t, err)
	return a.Address
}

func TestEventsNoRuleNamesCostNoTransaction(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	rules, err := notify.Parse([]byte("rules:\n  backup.run_failed: [customer]\n"))
	require.NoError(t, err)
	w := &notify.Worker{Store: st, Rules: rules}
	payload := mustJSON(t, samples("", "")[events.NameBackupRunFailed])
	deliver := func(what, id string) {
		t.Helper()
		m := &bus.Message{Subject: "levqor.event." + what, Header: nats.Header{bus.HeaderMsgID: {id}}, Data: payload,
			Stream: "EVENTS", Consumer: notify.ConsumerEvents, StreamSeq: 1, Deliveries: 1}
		require.NoError(t, w.EventHandler()(t.Context(), m))
	}
	deliver("billing.entitlements_changed", "outbox-1")
	deliver("backup.run_failed", "outbox-2")
	done, err := st.ProcessedMsgIDs(t.Context(), notify.ConsumerEvents, []string{"outbox-1", "outbox-2"})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"outbox-2": true}, done, "only the ruled event went through the inbox")
}

// A notification whose last attempt failed is failed, and its delivery
// in the DLQ; the operator's replay sends it.
func TestAFailedNotificationIsSentWhenReplayed(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "mail")
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertNotification(ctx, store.Notification{ID: "ntf_failed", Event: "ops.dlq_growing", EventID: "outbox-1",
			Incident: "x", Channel: notify.ChannelEmail, Recipient: "oncall@levqor.example", Audience: store.AudienceStaff,
			Subject: "s", BodyText: "b", Status: store.NotificationFailed, LastError: "smtp: 451 try later"})
		return err
	}))
	w := &notify.Worker{Store: st, Mailer: notify.DirMailer{Dir: dir}}
	payload := mustJSON(t, map[string]string{"notification_id": "ntf_failed"})
	require.NoError(t, w.HandleDelivery(ctx, &bus.Message{Subject: "levqor.cmd.notify.deliver", Data: payload, Header: nats.Header{}, Deliveries: 1}))
	n, err := st.GetNotification(ctx, "ntf_failed")
	require.NoError(t, err)
	require.Equal(t, store.NotificationSent, n.Status)
	require.FileExists(t, notify.DirMailer{Dir: dir}.Path("ntf_failed"))
}

// TestAMailServerDownThenUpGetsTheEmailOnce: while nothing listens on the
// mail server's port, the delivery fails and waits; once the server is
// up, the next attempt delivers it, once.
func TestAMailServerDownThenUpGetsTheEmailOnce(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // down: nothing listens there
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	b := setupWith(t, storetest.SQLite(t), func(*mailServer) notify.Sender {
		m, err := notify.NewSMTP(notify.SMTPConfig{Host: "127.0.0.1", Port: p, TLS: notify.TLSNone, Timeout: 2 * time.Second})
		require.NoError(t, err)
		return m
	}, func(w *notify.Worker) { w.Retry = []time.Duration{time.Second} })

	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	require.Eventually(t, func() bool {
		n := b.notifications()
		return len(n) == 1 && n[0].Attempts >= 1
	}, 10*time.Second, 20*time.Millisecond)
	n := b.notifications()[0]
	require.Equal(t, store.NotificationPending, n.Status, "waiting for the next attempt")
	require.Contains(t, n.LastError, "connection refused")

	up := startMailServerOn(t, addr)
	b.delivered()
	require.Len(t, up.messages(), 1)
	n = b.notifications()[0]
	require.Equal(t, store.NotificationSent, n.Status)
	require.GreaterOrEqual(t, n.Attempts, 2)
	require.Zero(t, b.nats.StreamMsgs(t, bus.DLQ))
}
