package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
)

// WorkerName is the worker's name in LEVQOR_WORKERS.
const WorkerName = "notify"

// The worker's durable consumers.
const (
	// ConsumerEvents reads every event and decides who hears about it.
	ConsumerEvents = "notify-event"
	// ConsumerDeliveries sends the notifications by email and chat, one
	// message each.
	ConsumerDeliveries = "notify-deliver"
	// ConsumerWebhooks posts the webhook notifications, one message each,
	// in slots of their own: a slow receiver delays no email.
	ConsumerWebhooks = "notify-webhook"
)

// DeliverSubject is the subject, under the COMMANDS stream, of a
// notification's delivery by email or chat: levqor.cmd.notify.deliver.
const DeliverSubject = "notify.deliver"

// WebhookDeliverSubject is the subject of a webhook notification's
// delivery: levqor.cmd.notify.webhook.
const WebhookDeliverSubject = "notify.webhook"

// NotificationIDPrefix starts every notification's id.
const NotificationIDPrefix = "ntf_"

// Channels a notification goes through.
const (
	ChannelEmail = "email"
	ChannelChat  = "chat"
)

// RetrySchedule is how long a failed delivery waits before its next
// attempt, by the number of attempts made: growing from seconds to hours,
// like Svix's webhook schedule, so a mail server down for a while misses
// nothing. After LEVQOR_MAX_DELIVER attempts the delivery is
// dead-lettered, for an operator to replay.
var RetrySchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour}

// RetryDelay is the wait in schedule after the given number of failed
// attempts: the last entry once attempts run past the schedule.
func RetryDelay(schedule []time.Duration, attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	return schedule[min(attempts, len(schedule))-1]
}

// Worker turns events into notifications and delivers them.
type Worker struct {
	// Store holds notifications, accounts and sources; required.
	Store *store.Store
	// Rules say who hears about what; required.
	Rules *Rules
	// Topology names the delivery subject.
	Topology bus.Topology
	// Mailer sends email. Nil records each email notification unsent,
	// saying the mailer is not configured.
	Mailer Sender
	// Chat posts to chat webhooks. Nil records each chat notification
	// unsent.
	Chat Sender
	// PublicURL is where links in messages point (LEVQOR_PUBLIC_URL).
	PublicURL string
	// Webhooks signs and posts to customers' webhook endpoints, and
	// carries out the endpoint commands. Nil records each webhook
	// notification unsent and fails the commands, saying
	// LEVQOR_WEBHOOK_SECRET_KEY is missing.
	Webhooks *Webhooks
	// Runtime keeps the bookkeeping of the endpoint commands; nil
	// leaves the command consumer out.
	Runtime *command.Runtime
	// Retention is how long notifications and the webhook delivery log
	// are kept (LEVQOR_NOTIFICATION_RETENTION); zero means
	// RetentionDefault.
	Retention time.Duration
	// Retry is the delivery retry schedule; nil means RetrySchedule.
	Retry []time.Duration
	// DigestWindow gathers bursts into digests (see burst); zero sends
	// every notification on its own.
	DigestWindow time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// MailerMissing is the reason of a notification recorded while no mailer
// is configured.
const MailerMissing = "not sent: no mailer is configured (set LEVQOR_SMTP_HOST, or LEVQOR_MAIL_DIR for files)"

// ChatMissing is the reason of a chat notification recorded while chat is
// off.
const ChatMissing = "not sent: chat is not enabled in this process"

// sender is what delivers a notification of channel, and why there is
// none when it is nil.
func (w *Worker) sender(channel string) (Sender, string) {
	if channel == ChannelChat {
		return w.Chat, ChatMissing
	}
	return w.Mailer, MailerMissing
}

// EventConsumer declares notify-event: every event.
func EventConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerEvents, Kind: bus.Events, Filter: ">"}
}

// DeliveryConsumer declares notify-deliver: the deliveries by email and
// chat.
func DeliveryConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerDeliveries, Kind: bus.Commands, Filter: DeliverSubject}
}

// WebhookConsumer declares notify-webhook: the webhook deliveries.
func WebhookConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerWebhooks, Kind: bus.Commands, Filter: WebhookDeliverSubject}
}

// CommandConsumer declares notify-cmd: the webhook endpoint commands.
func CommandConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerCommands, Kind: bus.Commands, Filter: Domain + ".>"}
}

// Register adds the worker's consumers to r.
func (w *Worker) Register(r *bus.Router) {
	r.Handle(EventConsumer(), w.EventHandler())
	r.Handle(DeliveryConsumer(), w.HandleDelivery)
	r.Handle(WebhookConsumer(), w.HandleDelivery)
	r.Handle(TickConsumer(), w.HandleTick)
	if w.Runtime != nil {
		r.Handle(CommandConsumer(), w.Runtime.Handler(w.HandleCommand))
		r.Handle(w.Runtime.DeadLetters(ConsumerCommandsDLQ, ConsumerCommands))
	}
}

// EventHandler is notify-event's handler: HandleEvent through the inbox,
// for the events the rules name and the account events webhook endpoints
// may take. The others, most of EVENTS, are acknowledged without a
// transaction: nothing would be recorded for them.
func (w *Worker) EventHandler() bus.Handler {
	h := inbox.Handler(w.Store, w.HandleEvent)
	return func(ctx context.Context, m *bus.Message) error {
		name, ok := w.topology().Unprefixed(bus.Events, m.Subject)
		if ok && len(w.Rules.For(name)) == 0 && (m.Account() == "" || !IsWebhookEvent(name)) {
			return nil
		}
		return h(ctx, m)
	}
}

func (w *Worker) retrySchedule() []time.Duration {
	if len(w.Retry) == 0 {
		return RetrySchedule
	}
	return w.Retry
}

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Worker) topology() bus.Topology {
	if w.Topology.Streams == nil {
		return w.Topology.WithDefaults()
	}
	return w.Topology
}

// eventRefs are the fields of an event that say whom and what it is
// about.
type eventRefs struct {
	AccountID string `json:"account_id"`
	SourceID  string `json:"source_id"`
	Incident  string `json:"incident"`
}

// delivery is the payload of a delivery message.
type delivery struct {
	NotificationID string `json:"notification_id"`
}

// HandleEvent records the notifications the rules ask for about the event
// in m (an inbox.TxHandler, so each event is handled once), and queues
// their deliveries through the outbox in the same transaction. An
// incident already told to a recipient is not told again.
func (w *Worker) HandleEvent(ctx context.Context, tx *store.Tx, m *bus.Message) error {
	topo := w.topology()
	name, ok := topo.Unprefixed(bus.Events, m.Subject)
	if !ok {
		return bus.Permanentf("notify: %s is not an event subject", m.Subject)
	}
	var refs eventRefs
	if err := json.Unmarshal(m.Data, &refs); err != nil {
		return bus.Permanentf("notify: decoding %s: %v", name, err)
	}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"event": name, "account_id": refs.AccountID})
	if err := w.queueWebhooks(ctx, tx, name, refs.AccountID, m, log); err != nil {
		return err
	}
	to := w.Rules.For(name)
	if len(to) == 0 {
		return nil
	}
	var account, source Party
	contact := ""
	if refs.AccountID != "" {
		a, err := tx.GetAccount(ctx, refs.AccountID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			log.Warn("the event names an account Levqor does not have; it is told to no customer")
		case err != nil:
			return err
		default:
			account, contact = Party{ID: a.ID, Name: a.Name}, a.ContactEmail
		}
	}
	if refs.SourceID != "" {
		source.ID = refs.SourceID
		s, err := tx.GetSource(ctx, refs.SourceID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			source.Name = refs.SourceID
		case err != nil:
			return err
		default:
			source.Name = s.Name
		}
	}
	// Each recipient's message: the customer's with its unsubscribe link.
	rendered := map[string]Message{}
	render := func(unsubscribe string) (Message, error) {
		if msg, ok := rendered[unsubscribe]; ok {
			return msg, nil
		}
		msg, err := Render(name, m.Data, account, source, w.PublicURL, unsubscribe)
		if err != nil {
			return Message{}, bus.Permanent(fmt.Errorf("notify: %w", err))
		}
		rendered[unsubscribe] = msg
		return msg, nil
	}
	if _, err := render(""); err != nil {
		return err
	}
	incident := refs.Incident
	if incident == "" {
		incident = "event:" + m.ID()
	}
	incident = name + ":" + incident

	prefs := store.Preferences{}
	if refs.AccountID != "" {
		var err error
		if prefs, err = tx.GetPreferences(ctx, refs.AccountID); err != nil {
			return err
		}
	}
	for _, rcpt := range w.addresses(to, contact) {
		recipient := rcpt.address
		send, missing := w.sender(rcpt.channel)
		if rcpt.audience == store.AudienceCustomer && slices.Contains(prefs.Muted, name) && !slices.Contains(Mandatory, events.Name(name)) {
			send, missing = nil, MutedReason
		}
		id, err := command.NewID(NotificationIDPrefix)
		if err != nil {
			return err
		}
		unsubscribe := w.unsubscribeURL(rcpt.audience, rcpt.channel, refs.AccountID, name)
		msg, err := render(unsubscribe)
		if err != nil {
			return err
		}
		n := store.Notification{
			ID: id, AccountID: refs.AccountID, Event: name, EventID: m.ID(), Incident: incident,
			Channel: rcpt.channel, Recipient: recipient, Audience: rcpt.audience, Subject: msg.Subject, BodyText: msg.Text, BodyHTML: msg.HTML,
			Status: store.NotificationPending, CreatedAt: w.now(), UnsubscribeURL: unsubscribe,
		}
		var digest *store.Notification
		opening := false
		if send == nil {
			n.Status, n.LastError = store.NotificationUnsent, missing
		} else if digest, opening, err = w.burst(ctx, tx, n); err != nil {
			return err
		} else if digest != nil {
			n.Status, n.DigestID = store.NotificationHeld, digest.ID
		}
		inserted, err := tx.InsertNotification(ctx, n)
		if err != nil {
			return err
		}
		nlog := log.WithFields(logrus.Fields{"notification_id": id, "recipient": rcpt.name, "channel": rcpt.channel, "incident": incident})
		switch {
		case !inserted:
			nlog.Info("incident already told to this recipient; not told again")
			continue
		case send == nil:
			nlog.Warn(missing)
			continue
		case digest != nil:
			if opening {
				if _, err := tx.InsertNotification(ctx, *digest); err != nil {
					return err
				}
				if err := w.enqueueDelivery(ctx, tx, digest, m.CorrelationID()); err != nil {
					return err
				}
			}
			nlog.WithFields(logrus.Fields{"digest_id": digest.ID, "digest_due": digest.NotBefore.Format(time.RFC3339)}).
				Info("notification held for the digest of its burst")
			continue
		}
		if err := w.enqueueDelivery(ctx, tx, &n, m.CorrelationID()); err != nil {
			return err
		}
		nlog.Info("notification queued")
	}
	return nil
}

// recipient is one address a notification goes to, through which
// channel, and whose it is. name is what logs show: the customer's email,
// or the rules' name of a staff group (a chat address is a secret).
type recipient struct {
	name     string
	channel  string
	address  string
	audience string
}

// addresses expands the recipients' names into addresses, each once;
// "customer" is contact (the customer's audience), left out when the
// event names no account, and every named group is staff.
func (w *Worker) addresses(names []string, contact string) []recipient {
	var out []recipient
	seen := map[string]bool{}
	add := func(r recipient) {
		if r.address != "" && !seen[r.channel+" "+r.address] {
			seen[r.channel+" "+r.address] = true
			out = append(out, r)
		}
	}
	for _, n := range names {
		if n == RecipientCustomer {
			add(recipient{name: contact, channel: ChannelEmail, address: contact, audience: store.AudienceCustomer})
			continue
		}
		for _, a := range w.Rules.Recipients[n].Email {
			add(recipient{name: a, channel: ChannelEmail, address: a, audience: store.AudienceStaff})
		}
		for _, hook := range w.Rules.Recipients[n].Chat {
			add(recipient{name: n + " (chat)", channel: ChannelChat, address: hook, audience: store.AudienceStaff})
		}
	}
	return out
}

// HandleDelivery sends the notification a delivery message names, unless
// it was sent already, and records the attempt. A failure is retried after
// RetryDelay; one the mail server calls permanent is dead-lettered at once.
// A notification whose last attempt failed is marked failed, and sent
// when an operator replays its delivery from the DLQ.
func (w *Worker) HandleDelivery(ctx context.Context, m *bus.Message) error {
	var d delivery
	if err := json.Unmarshal(m.Data, &d); err != nil || d.NotificationID == "" {
		return bus.Permanentf("notify: a delivery names no notification: %s", m.Data)
	}
	n, err := w.Store.GetNotification(ctx, d.NotificationID)
	if errors.Is(err, store.ErrNotFound) {
		return bus.Permanent(err)
	}
	if err != nil {
		return err
	}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"notification_id": n.ID, "event": n.Event, "account_id": n.AccountID})
	if !store.Deliverable(n.Status) {
		log.WithField("status", n.Status).Info("notification is not pending; nothing to send")
		return nil
	}
	if n.Channel == ChannelWebhook {
		return w.deliverWebhook(ctx, m, n, log)
	}
	// The waits (a digest's window, the account's quiet hours) are each one
	// delivery of the message, no failure. On the last delivery nothing
	// waits: a wait then would dead-letter the message, so it goes now.
	wait := !m.LastAttempt()
	if wait && n.DigestState == store.DigestOpen && n.NotBefore != nil && w.now().Before(*n.NotBefore) {
		return bus.Defer("the digest gathers its burst until "+n.NotBefore.Format(time.RFC3339), n.NotBefore.Sub(w.now()))
	}
	if wait && n.Audience == store.AudienceCustomer && n.AccountID != "" {
		prefs, err := w.Store.GetPreferences(ctx, n.AccountID)
		if err != nil {
			return err
		}
		if until, quiet := QuietUntil(prefs, w.now()); quiet {
			// A digest still open keeps gathering meanwhile: the quiet
			// hours end with one digest, not one a window.
			if n.DigestState == store.DigestOpen {
				if err := w.Store.PostponeDigest(ctx, n.ID, until); err != nil {
					return err
				}
			}
			return bus.Defer("the account's quiet hours last until "+until.UTC().Format(time.RFC3339), until.Sub(w.now()))
		}
	}
	if n.DigestState == store.DigestOpen {
		if n, err = w.closeDigest(ctx, n); err != nil {
			return err
		}
	}
	send, missing := w.sender(n.Channel)
	if send == nil {
		return errors.New(missing)
	}
	sendErr := send.Send(ctx, n)
	final := sendErr != nil && (bus.IsPermanent(sendErr) || m.LastAttempt())
	if _, err := w.Store.NoteNotificationAttempt(ctx, n.ID, sendErr, final, w.now()); err != nil {
		if sendErr == nil {
			// Sent, but not marked: the redelivery sends it again.
			return fmt.Errorf("notification %s sent, but not marked sent: %w", n.ID, err)
		}
		return errors.Join(sendErr, err)
	}
	if sendErr != nil {
		if bus.IsPermanent(sendErr) {
			return sendErr
		}
		return bus.RetryAfter(sendErr, RetryDelay(w.retrySchedule(), n.Attempts+1))
	}
	fields := logrus.Fields{"channel": n.Channel}
	if n.Channel == ChannelEmail {
		fields["recipient"] = n.Recipient
	}
	if f, ok := send.(interface{ Path(id string) string }); ok {
		fields["file"] = f.Path(n.ID)
	}
	log.WithFields(fields).Info("notification sent")
	return nil
}
