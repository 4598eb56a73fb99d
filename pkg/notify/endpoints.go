package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// ChannelWebhook is the channel of a notification to a customer's webhook
// endpoint; its recipient is the endpoint's id and its BodyText the
// payload.
const ChannelWebhook = "webhook"

// The webhook endpoint commands: the API submits them, the notify worker
// carries them out (consumer notify-cmd).
const (
	Domain               = "notifications"
	ActionCreateEndpoint = "create_endpoint"
	ActionUpdateEndpoint = "update_endpoint"
	ActionRotateSecret   = "rotate_secret"
	ActionTestEndpoint   = "test_endpoint"
)

// The worker's command consumers.
const (
	ConsumerCommands    = "notify-cmd"
	ConsumerCommandsDLQ = "notify-cmd-dlq"
)

// EndpointIDPrefix starts every endpoint's id.
const EndpointIDPrefix = "whe_"

// MaxEndpointsPerAccount bounds an account's endpoints: each event is
// posted to every one of them.
const MaxEndpointsPerAccount = 20

// EndpointDescriptionMax bounds an endpoint's description.
const EndpointDescriptionMax = 256

// EventWebhookTest is the type of the message a test-send posts.
const EventWebhookTest = "webhook.test"

// WebhookEvents are the events an account's endpoints receive: those
// about the account that its people would act on. Staff alerts (SLA
// clocks, ops, DFY fulfilment, billing anomalies) are not among them.
var WebhookEvents = []events.Name{
	events.NameBackupRunFailed,
	events.NameBackupOverdue,
	events.NameBackupCorrupt,
	events.NameBackupQuotaWarn,
	events.NameBackupQuotaExceeded,
	events.NameDrillFailed,
	events.NameSweepBlocked,
	events.NameEntitlementsChanged,
	events.NameAccountStatusChanged,
	events.NamePaymentFailed,
	events.NamePaymentActionRequired,
	events.NamePaymentRecovered,
	events.NameAccountSuspended,
	events.NameTrialWillEnd,
	events.NameTrialReminder,
	events.NameTicketOpened,
	events.NameTicketUpdated,
	events.NameTicketReopened,
	events.NameTicketAutoClosed,
	events.NameMessageAdded,
	events.NameWebhookEndpointDisabled,
	events.NameErasureDue,
}

// IsWebhookEvent reports whether endpoints receive the event name.
func IsWebhookEvent(name string) bool {
	return slices.Contains(WebhookEvents, events.Name(name))
}

// EndpointIDFor is the id of the endpoint the create command commandID
// makes: the API knows it before the worker has run, and so can show the
// endpoint's secret in its answer.
func EndpointIDFor(commandID string) string {
	return command.IDFor(EndpointIDPrefix, "webhook endpoint", commandID)
}

// CreateEndpointParams are the parameters of notifications.create_endpoint.
type CreateEndpointParams struct {
	// AccountID is the account the endpoint belongs to; an account key
	// may leave it out.
	AccountID   string `json:"account_id,omitempty"`
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
	// EventTypes filters the events posted; empty: all of WebhookEvents.
	EventTypes []string `json:"event_types,omitempty"`
}

// Normalize trims the text fields and sorts the event types.
func (p *CreateEndpointParams) Normalize() {
	p.AccountID, p.URL, p.Description = strings.TrimSpace(p.AccountID), strings.TrimSpace(p.URL), strings.TrimSpace(p.Description)
	p.EventTypes = normalizeTypes(p.EventTypes)
}

// Validate checks the description and event types; the URL is checked
// against the deployment's guard (CheckURL).
func (p *CreateEndpointParams) Validate() error {
	if err := checkDescription(p.Description); err != nil {
		return err
	}
	return checkTypes(p.EventTypes)
}

// UpdateEndpointParams are the parameters of notifications.update_endpoint:
// the fields to change.
type UpdateEndpointParams struct {
	EndpointID  string    `json:"endpoint_id"`
	URL         *string   `json:"url,omitempty"`
	Description *string   `json:"description,omitempty"`
	EventTypes  *[]string `json:"event_types,omitempty"`
	// Enabled false stops deliveries; true resumes them (and forgets the
	// failures that disabled the endpoint).
	Enabled *bool `json:"enabled,omitempty"`
}

// Normalize trims the text fields and sorts the event types.
func (p *UpdateEndpointParams) Normalize() {
	if p.URL != nil {
		*p.URL = strings.TrimSpace(*p.URL)
	}
	if p.Description != nil {
		*p.Description = strings.TrimSpace(*p.Description)
	}
	if p.EventTypes != nil {
		*p.EventTypes = normalizeTypes(*p.EventTypes)
	}
}

// Validate requires a change and checks the fields given.
func (p *UpdateEndpointParams) Validate() error {
	if p.URL == nil && p.Description == nil && p.EventTypes == nil && p.Enabled == nil {
		return invalid("", "nothing to change: give url, description, event_types or enabled")
	}
	if p.Description != nil {
		if err := checkDescription(*p.Description); err != nil {
			return err
		}
	}
	if p.EventTypes != nil {
		return checkTypes(*p.EventTypes)
	}
	return nil
}

// RotateSecretParams are the parameters of notifications.rotate_secret.
// Generation is the generation the rotation makes (the endpoint's current
// one plus one), so that the API can show the new secret and a repeated
// rotation changes nothing.
type RotateSecretParams struct {
	EndpointID string `json:"endpoint_id"`
	Generation int    `json:"generation"`
}

// TestEndpointParams are the parameters of notifications.test_endpoint.
type TestEndpointParams struct {
	EndpointID string `json:"endpoint_id"`
}

func normalizeTypes(types []string) []string {
	out := make([]string, 0, len(types))
	for _, t := range types {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

func checkDescription(d string) error {
	if len(d) > EndpointDescriptionMax {
		return invalid("description", fmt.Sprintf("description is longer than %d bytes", EndpointDescriptionMax))
	}
	return nil
}

func checkTypes(types []string) error {
	for _, t := range types {
		if !IsWebhookEvent(t) {
			return invalid("event_types", fmt.Sprintf("%q is not an event endpoints receive; they are: %s", t, webhookEventList()))
		}
	}
	return nil
}

func webhookEventList() string {
	names := make([]string, len(WebhookEvents))
	for i, n := range WebhookEvents {
		names[i] = string(n)
	}
	return strings.Join(names, ", ")
}

func invalid(field, msg string) error {
	return command.Fail(http.StatusUnprocessableEntity, "invalid_params", field, msg)
}

// CheckURL is the guard's URL check as the API and the worker answer it:
// 422 naming the url field.
func CheckURL(g Guard, raw string) error {
	if err := g.CheckURL(raw); err != nil {
		return invalid("url", err.Error())
	}
	return nil
}

// WebhooksMissing is why webhook commands and deliveries fail in a
// process without LEVQOR_WEBHOOK_SECRET_KEY.
const WebhooksMissing = "webhook endpoints are not configured: set LEVQOR_WEBHOOK_SECRET_KEY"

// HandleCommand carries out one notifications.* command (a command.Func).
func (w *Worker) HandleCommand(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "notifications", Domain, command.Actions{
		ActionCreateEndpoint: w.needWebhooks(command.Typed(w.createEndpoint)),
		ActionUpdateEndpoint: w.needWebhooks(command.Typed(w.updateEndpoint)),
		ActionRotateSecret:   w.needWebhooks(command.Typed(w.rotateSecret)),
		ActionTestEndpoint:   w.needWebhooks(command.Typed(w.testEndpoint)),
		ActionSetPreferences: command.Typed(w.setPreferences),
		ActionUnsubscribe:    command.Typed(w.unsubscribe),
	})
}

// needWebhooks fails the endpoint commands, 503, in a process without
// LEVQOR_WEBHOOK_SECRET_KEY.
func (w *Worker) needWebhooks(f command.Func) command.Func {
	return func(ctx context.Context, e *command.Envelope) (command.Effect, error) {
		if w.Webhooks == nil {
			return nil, command.Fail(http.StatusServiceUnavailable, "not_configured", "", WebhooksMissing)
		}
		return f(ctx, e)
	}
}

func (w *Worker) createEndpoint(_ context.Context, e *command.Envelope, p CreateEndpointParams) (command.Effect, error) {
	switch {
	case e.AccountID == "":
		return nil, invalid("account_id", "account_id is required: the account the endpoint belongs to")
	case p.AccountID != "" && p.AccountID != e.AccountID:
		return nil, invalid("account_id", "account_id does not match the command's account")
	}
	if err := CheckURL(w.Webhooks.Guard(), p.URL); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if err := tx.LockAccountForSources(ctx, e.AccountID); errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, command.Fail(http.StatusNotFound, "not_found", "account_id", "no account "+e.AccountID)
		} else if err != nil {
			return command.Outcome{}, err
		}
		if err := roomForOneMore(ctx, tx, e.AccountID); err != nil {
			return command.Outcome{}, err
		}
		ep := store.WebhookEndpoint{ID: EndpointIDFor(e.ID), AccountID: e.AccountID, URL: p.URL, Description: p.Description,
			EventTypes: p.EventTypes, Enabled: true, CreatedAt: w.now()}
		if _, err := tx.InsertWebhookEndpoint(ctx, ep); err != nil {
			return command.Outcome{}, err
		}
		got, err := tx.GetWebhookEndpoint(ctx, ep.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusCreated, Result: got}, nil
	}, nil
}

// roomForOneMore refuses an endpoint more than MaxEndpointsPerAccount
// enabled ones.
func roomForOneMore(ctx context.Context, tx *store.Tx, accountID string) error {
	n, err := tx.CountWebhookEndpoints(ctx, accountID)
	if err != nil {
		return err
	}
	if n >= MaxEndpointsPerAccount {
		return command.Fail(http.StatusConflict, "too_many_endpoints", "",
			fmt.Sprintf("an account may have %d enabled webhook endpoints; disable one, or change one's URL", MaxEndpointsPerAccount))
	}
	return nil
}

// lockEndpoint locks the endpoint a command names, which must be the
// command's account's.
func lockEndpoint(ctx context.Context, tx *store.Tx, e *command.Envelope, id string) (*store.WebhookEndpoint, error) {
	ep, err := tx.LockWebhookEndpoint(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && e.AccountID != "" && ep.AccountID != e.AccountID) {
		return nil, command.Fail(http.StatusNotFound, "not_found", "endpoint_id", "no webhook endpoint "+id)
	}
	return ep, err
}

func (w *Worker) updateEndpoint(_ context.Context, e *command.Envelope, p UpdateEndpointParams) (command.Effect, error) {
	if p.URL != nil {
		if err := CheckURL(w.Webhooks.Guard(), *p.URL); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		ep, err := lockEndpoint(ctx, tx, e, p.EndpointID)
		if err != nil {
			return command.Outcome{}, err
		}
		if p.URL != nil && *p.URL != ep.URL {
			// A new receiver is not blamed for the old one's failures.
			ep.URL, ep.FailingSince = *p.URL, nil
		}
		if p.Description != nil {
			ep.Description = *p.Description
		}
		if p.EventTypes != nil {
			ep.EventTypes = *p.EventTypes
		}
		switch {
		case p.Enabled == nil:
		case *p.Enabled && !ep.Enabled:
			if err := roomForOneMore(ctx, tx, ep.AccountID); err != nil {
				return command.Outcome{}, err
			}
			ep.Enabled, ep.DisabledReason, ep.FailingSince = true, "", nil
		case !*p.Enabled && ep.Enabled:
			ep.Enabled, ep.DisabledReason = false, "disabled by its owner"
		}
		if err := tx.UpdateWebhookEndpoint(ctx, ep, w.now()); err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: ep}, nil
	}, nil
}

func (w *Worker) rotateSecret(_ context.Context, e *command.Envelope, p RotateSecretParams) (command.Effect, error) {
	if p.Generation < 2 {
		return nil, invalid("generation", "generation must be the endpoint's next secret generation, 2 or more")
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		ep, err := lockEndpoint(ctx, tx, e, p.EndpointID)
		if err != nil {
			return command.Outcome{}, err
		}
		switch ep.SecretGeneration {
		case p.Generation:
			// Rotated to this generation already: by a redelivery of this
			// command, or by a concurrent request that showed the same
			// secret.
			return command.Outcome{Status: http.StatusOK, Result: ep}, nil
		case p.Generation - 1:
		default:
			return command.Outcome{}, command.Fail(http.StatusConflict, "rotated_meanwhile", "",
				fmt.Sprintf("the secret was rotated by another request meanwhile (generation %d now); rotate again for a new one", ep.SecretGeneration))
		}
		now := w.now()
		until := now.Add(w.Webhooks.cfg.SecretOverlap).UTC().Truncate(time.Microsecond)
		ep.PreviousGeneration, ep.PreviousExpiresAt, ep.SecretGeneration = ep.SecretGeneration, &until, p.Generation
		if err := tx.UpdateWebhookEndpoint(ctx, ep, now); err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: ep}, nil
	}, nil
}

// TestResult is what a test-send answers: the notification whose
// delivery the endpoint's log shows.
type TestResult struct {
	EndpointID     string `json:"endpoint_id"`
	NotificationID string `json:"notification_id"`
}

func (w *Worker) testEndpoint(_ context.Context, e *command.Envelope, p TestEndpointParams) (command.Effect, error) {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		ep, err := lockEndpoint(ctx, tx, e, p.EndpointID)
		if err != nil {
			return command.Outcome{}, err
		}
		if !ep.Enabled {
			return command.Outcome{}, command.Fail(http.StatusConflict, "endpoint_disabled", "endpoint_id",
				"the endpoint is disabled ("+ep.DisabledReason+"); enable it first")
		}
		data, err := json.Marshal(map[string]string{
			"account_id": ep.AccountID, "endpoint_id": ep.ID,
			"message": "A test from Levqor: this endpoint receives signed webhooks.",
		})
		if err != nil {
			return command.Outcome{}, err
		}
		id := command.IDFor(NotificationIDPrefix, "webhook test", e.ID)
		if err := w.queueWebhook(ctx, tx, ep, id, EventWebhookTest, e.ID, EventWebhookTest+":"+e.ID, data, w.now(), e.ID); err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusAccepted, Result: TestResult{EndpointID: ep.ID, NotificationID: id}}, nil
	}, nil
}

// webhookPayload is what a webhook POSTs, per Standard Webhooks.
type webhookPayload struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// queueWebhooks records, in the event's transaction, a webhook
// notification of the event for each enabled endpoint of the account
// that takes it, and queues their deliveries. Each event is posted once
// per endpoint: receivers want every event, not one per incident.
func (w *Worker) queueWebhooks(ctx context.Context, tx *store.Tx, name, accountID string, m *bus.Message, log logrus.FieldLogger) error {
	if accountID == "" || !IsWebhookEvent(name) {
		return nil
	}
	eps, err := tx.ListWebhookEndpoints(ctx, store.ListWebhookEndpointsParams{AccountID: accountID, EnabledOnly: true, Limit: MaxEndpointsPerAccount})
	if err != nil {
		return err
	}
	at := m.Published
	if at.IsZero() {
		at = w.now()
	}
	for i := range eps {
		ep := &eps[i]
		if !ep.Wants(name) {
			continue
		}
		id, err := command.NewID(NotificationIDPrefix)
		if err != nil {
			return err
		}
		if err := w.queueWebhook(ctx, tx, ep, id, name, m.ID(), name+":event:"+m.ID(), m.Data, at, m.CorrelationID()); err != nil {
			return err
		}
		log.WithFields(logrus.Fields{"notification_id": id, "endpoint_id": ep.ID}).Info("webhook queued")
	}
	return nil
}

// queueWebhook records the webhook notification id of event to ep and
// queues its delivery, unless the incident was recorded for ep already.
func (w *Worker) queueWebhook(ctx context.Context, tx *store.Tx, ep *store.WebhookEndpoint, id, event, eventID, incident string,
	data []byte, at time.Time, correlationID string) error {
	body, err := json.Marshal(webhookPayload{Type: event, Timestamp: at.UTC(), Data: data})
	if err != nil {
		return bus.Permanent(err)
	}
	n := store.Notification{
		ID: id, AccountID: ep.AccountID, Event: event, EventID: eventID, Incident: incident,
		Channel: ChannelWebhook, Recipient: ep.ID, Audience: store.AudienceCustomer, Subject: event, BodyText: string(body),
		Status: store.NotificationPending, CreatedAt: w.now(),
	}
	if w.Webhooks == nil {
		n.Status, n.LastError = store.NotificationUnsent, "not sent: "+WebhooksMissing
	}
	inserted, err := tx.InsertNotification(ctx, n)
	if err != nil || !inserted || w.Webhooks == nil {
		return err
	}
	return w.enqueueDelivery(ctx, tx, &n, correlationID)
}

// enqueueDelivery puts the delivery of n on the outbox, for its channel's
// consumer.
func (w *Worker) enqueueDelivery(ctx context.Context, tx *store.Tx, n *store.Notification, correlationID string) error {
	payload, err := json.Marshal(delivery{NotificationID: n.ID})
	if err != nil {
		return err
	}
	headers := map[string]string{}
	if n.AccountID != "" {
		headers[bus.HeaderAccount] = n.AccountID
	}
	if correlationID != "" {
		headers[bus.HeaderCorrelationID] = correlationID
	}
	subject := DeliverSubject
	if n.Channel == ChannelWebhook {
		subject = WebhookDeliverSubject
	}
	_, err = tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: w.topology().Subject(bus.Commands, subject), Headers: headers, Payload: payload})
	return err
}

// deliverWebhook posts the webhook notification n to its endpoint and
// records the attempt in the endpoint's delivery log. A failure is retried
// on the schedule; once the endpoint has been failing for DisableAfter,
// it is disabled, its owner told (webhook.endpoint_disabled), and its
// deliveries given up. A notification whose endpoint is gone or disabled
// is given up without a call.
func (w *Worker) deliverWebhook(ctx context.Context, m *bus.Message, n *store.Notification, log logrus.FieldLogger) error {
	if w.Webhooks == nil {
		return errors.New(WebhooksMissing)
	}
	log = log.WithField("endpoint_id", n.Recipient)
	ep, err := w.Store.GetWebhookEndpoint(ctx, n.Recipient)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return w.abandon(ctx, n, "not sent: the endpoint no longer exists", log)
	case err != nil:
		return err
	case !ep.Enabled:
		return w.abandon(ctx, n, "not sent: the endpoint is disabled ("+ep.DisabledReason+")", log)
	}
	now := w.now()
	attempt, postErr := w.Webhooks.Post(ctx, ep, n, now)
	disabled := false
	record := func() error {
		return w.Store.InTx(ctx, func(tx *store.Tx) error {
			disabled = false
			if err := tx.InsertWebhookAttempt(ctx, attempt); err != nil {
				return err
			}
			cur, err := tx.LockWebhookEndpoint(ctx, ep.ID)
			if err != nil {
				return err
			}
			if postErr == nil {
				if _, err := tx.NoteNotificationAttempt(ctx, n.ID, nil, false, now); err != nil {
					return err
				}
				if cur.FailingSince == nil {
					return nil
				}
				cur.FailingSince = nil
				return tx.UpdateWebhookEndpoint(ctx, cur, now)
			}
			if cur.FailingSince == nil {
				since := now.UTC().Truncate(time.Microsecond)
				cur.FailingSince = &since
			}
			if !cur.Enabled || now.Sub(*cur.FailingSince) < w.Webhooks.cfg.DisableAfter {
				if _, err := tx.NoteNotificationAttempt(ctx, n.ID, postErr, m.LastAttempt(), now); err != nil {
					return err
				}
				return tx.UpdateWebhookEndpoint(ctx, cur, now)
			}
			disabled = true
			since := cur.FailingSince.Format(time.RFC3339)
			cur.Enabled, cur.DisabledReason = false, "deliveries failed since "+since
			if err := tx.UpdateWebhookEndpoint(ctx, cur, now); err != nil {
				return err
			}
			if _, err := tx.AbandonNotification(ctx, n.ID, "not sent: "+postErr.Error()+"; the endpoint was disabled", true, now); err != nil {
				return err
			}
			_, err = events.Emit(ctx, tx, w.topology(), events.WebhookEndpointDisabled{
				AccountID: cur.AccountID, EndpointID: cur.ID, URL: RedactURL(cur.URL), FailingSince: *cur.FailingSince,
				LastError: postErr.Error(), Incident: "endpoint_disabled:" + cur.ID + ":" + since,
				Reason: "deliveries to the endpoint failed since " + since + ", for longer than " + w.Webhooks.cfg.DisableAfter.String(),
				At:     now.UTC(),
			}, m.CorrelationID())
			return err
		})
	}
	if postErr == nil {
		// The receiver has it: retry only the recording, here, rather
		// than the whole delivery (which would post it again).
		err = backoff.Retry(record, backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(), 4), ctx))
	} else {
		err = record()
	}
	if err != nil {
		if postErr == nil {
			return fmt.Errorf("webhook %s delivered, but not recorded: %w", n.ID, err)
		}
		return errors.Join(postErr, err)
	}
	fields := logrus.Fields{"status_code": attempt.StatusCode, "duration_ms": attempt.DurationMS}
	switch {
	case postErr == nil:
		log.WithFields(fields).Info("webhook delivered")
		return nil
	case disabled:
		log.WithFields(fields).WithError(postErr).Warn("webhook endpoint failing for too long: disabled, and its owner told")
		return nil
	}
	return bus.RetryAfter(postErr, RetryDelay(w.retrySchedule(), n.Attempts+1))
}

func (w *Worker) abandon(ctx context.Context, n *store.Notification, reason string, log logrus.FieldLogger) error {
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.AbandonNotification(ctx, n.ID, reason, false, w.now())
		return err
	})
	if err == nil {
		log.Info(reason)
	}
	return err
}
