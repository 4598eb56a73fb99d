package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// Name is an event's name under the EVENTS prefix: "<domain>.<what>", such
// as "billing.entitlements_changed". Its subject is Name.Subject.
type Name string

// Subject is the subject n is published on in topology t, e.g.
// "levqor.event.billing.entitlements_changed".
func (n Name) Subject(t bus.Topology) string { return t.Subject(bus.Events, string(n)) }

// String returns the name itself.
func (n Name) String() string { return string(n) }

// Event is a payload of the EVENTS stream: every struct of this package.
type Event interface {
	// EventName is the event's name, which picks its subject.
	EventName() Name
	// EventAccount is the account the event concerns, written to the
	// Levqor-Account header; "" for an event about the platform.
	EventAccount() string
}

// all holds one value of every payload, so that Names lists them all; each
// is an Event, checked at compile time.
var all = []Event{
	EntitlementsChanged{},
	AccountStatusChanged{},
	PaymentFailed{},
	PaymentActionRequired{},
	PaymentRecovered{},
	AccountSuspended{},
	TrialWillEnd{},
	TrialReminder{},
	DFYPurchased{},
	ChargeRefunded{},
	DisputeOpened{},
	UnknownPrice{},
	CustomerMismatch{},
	BackupQuotaExceeded{},
	BackupCorrupt{},
	BackupOverdue{},
	SweepBlocked{},
	BackupRunFailed{},
	BackupQuotaWarn{},
	DrillFailed{},
	TicketOpened{},
	TicketUpdated{},
	TicketReopened{},
	TicketAutoClosed{},
	MessageAdded{},
	SLAAtRisk{},
	SLABreached{},
	DFYStalled{},
	DLQGrowing{},
	ConsumerStuck{},
	WebhookEndpointDisabled{},
	ErasureDue{},
}

// Names lists the name of every event Levqor publishes, in the order of
// the payloads above.
func Names() []Name {
	names := make([]Name, len(all))
	for i, e := range all {
		names[i] = e.EventName()
	}
	return names
}

// Outbox is where Emit writes: a transaction (*store.Tx), or a batch that
// writes its outbox rows together when it commits (which returns 0 for
// the ids it does not know yet).
type Outbox interface {
	EnqueueOutbox(ctx context.Context, m store.OutboxMessage) (int64, error)
}

// Emit writes ev to the outbox within tx, to be published by the relay
// once tx commits: on ev's subject in topo, with ev as its JSON payload,
// the Levqor-Account header when ev names an account and the
// Levqor-Correlation-Id header when correlationID is not empty. It returns
// the outbox row's id.
func Emit(ctx context.Context, tx Outbox, topo bus.Topology, ev Event, correlationID string) (int64, error) {
	name := ev.EventName()
	payload, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("encoding %s: %w", name, err)
	}
	headers := map[string]string{}
	if a := ev.EventAccount(); a != "" {
		headers[bus.HeaderAccount] = a
	}
	if correlationID != "" {
		headers[bus.HeaderCorrelationID] = correlationID
	}
	return tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: name.Subject(topo), Headers: headers, Payload: payload})
}

// Decode reads m's payload as the event E, one of this package's payload
// structs (not a pointer to one). A payload that is not E's JSON is a
// permanent failure (bus.Permanent): no redelivery can fix it.
func Decode[E Event](m *bus.Message) (E, error) {
	var ev E
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return ev, bus.Permanentf("decoding %s: %v", ev.EventName(), err)
	}
	return ev, nil
}
