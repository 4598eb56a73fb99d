package support_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support"
	"github.com/levqor/levqor/pkg/support/triage"
)

// bundle is a worker on a fresh store.
type bundle struct {
	st  *store.Store
	w   *support.Worker
	seq uint64
}

func setup(t *testing.T, st *store.Store) *bundle {
	t.Helper()
	rules, err := triage.Load("")
	require.NoError(t, err)
	cat, err := catalog.Load("")
	require.NoError(t, err)
	w := &support.Worker{Store: st, Rules: rules, Catalog: cat, Runtime: &command.Runtime{Store: st, Prefix: "levqor"},
		Topology: bus.Topology{}.WithDefaults(), Metrics: support.NewMetrics(nil)}
	return &bundle{st: st, w: w}
}

// account inserts an account with a tier and its SLA class, as billing
// would have set them; tier "" has no subscription.
func (b *bundle) account(t *testing.T, tier, slaClass string) string {
	t.Helper()
	id, err := command.NewID("acc_")
	require.NoError(t, err)
	a := store.Account{ID: id, Name: "Customer " + tier, ContactEmail: "ops@" + strings.ToLower(id) + ".example", StripeCustomerID: "cus_" + id[4:]}
	if tier != "" {
		a.Tier = &tier
		ent, err := json.Marshal(map[string]any{"tier": tier, "sla": slaClass, "storage_gb": 1, "sources": 1, "retention": map[string]any{}})
		require.NoError(t, err)
		a.Entitlements = ent
	}
	ctx := t.Context()
	require.NoError(t, b.st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, a)
		return err
	}))
	return id
}

// command records and runs a support command at the given time, as the
// API accepted it, and returns it with its outcome.
func (b *bundle) command(t *testing.T, action, accountID string, params any, at time.Time) *store.Command {
	t.Helper()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	env := command.Envelope{ID: id, Domain: support.Domain, Action: action, AccountID: accountID, KeyID: "key_test", Params: raw, CreatedAt: at}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = b.st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "operator", AccountID: accountID, Domain: support.Domain, Action: action, RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	b.seq++
	m := &bus.Message{Subject: "levqor.cmd.support." + action, Header: nats.Header{bus.HeaderMsgID: {id}}, Data: payload,
		Stream: "COMMANDS", Consumer: support.ConsumerCommands, StreamSeq: b.seq, Deliveries: 1}
	require.NoError(t, b.w.Runtime.Handler(b.w.Handle)(t.Context(), m))
	c, err := b.st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	return c
}

// ticket runs a command that must succeed and returns the ticket it
// answered with.
func (b *bundle) ok(t *testing.T, action, accountID string, params any, at time.Time) support.TicketView {
	t.Helper()
	c := b.command(t, action, accountID, params, at)
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	var v support.TicketView
	require.NoError(t, json.Unmarshal(c.Result, &v))
	return v
}

// fails runs a command that must fail with status, code and field.
func (b *bundle) fails(t *testing.T, action, accountID string, params any, at time.Time, status int, code, field string) {
	t.Helper()
	c := b.command(t, action, accountID, params, at)
	require.Equal(t, store.CommandFailed, c.Status)
	require.Equal(t, status, c.HTTPStatus, "%+v", c.Error)
	require.Equal(t, code, c.Error.Code, c.Error.Message)
	require.Equal(t, field, c.Error.Field, c.Error.Message)
}

func (b *bundle) get(t *testing.T, id string) *store.Ticket {
	t.Helper()
	tk, err := b.st.GetTicket(t.Context(), id)
	require.NoError(t, err)
	return tk
}

// event delivers an event to the support-event consumer through the
// inbox, as the router does; msgID "" makes a fresh one.
func (b *bundle) event(t *testing.T, what, msgID string, payload any) error {
	t.Helper()
	raw, ok := payload.([]byte)
	if !ok {
		var err error
		raw, err = json.Marshal(payload)
		require.NoError(t, err)
	}
	if msgID == "" {
		id, err := command.NewID("evt_")
		require.NoError(t, err)
		msgID = id
	}
	b.seq++
	m := &bus.Message{Subject: "levqor.event." + what, Header: nats.Header{bus.HeaderMsgID: {msgID}}, Data: raw,
		Stream: "EVENTS", Consumer: support.ConsumerEvents, StreamSeq: b.seq, Deliveries: 1, Published: time.Now().UTC()}
	return inbox.Handler(b.st, b.w.HandleEvent)(t.Context(), m)
}

// tick delivers a support.sla_check tick for slot.
func (b *bundle) tick(t *testing.T, slot time.Time) {
	t.Helper()
	raw, err := json.Marshal(scheduler.Tick{Job: support.JobSLACheck, Slot: slot})
	require.NoError(t, err)
	b.seq++
	m := &bus.Message{Subject: "levqor.tick." + support.JobSLACheck, Header: nats.Header{bus.HeaderMsgID: {scheduler.MsgID(support.JobSLACheck, slot)}},
		Data: raw, Stream: "TICKS", Consumer: support.ConsumerTicks, StreamSeq: b.seq, Deliveries: 1}
	require.NoError(t, b.w.HandleTick(t.Context(), m))
}

// events returns the support events in the outbox, in order, as subject
// tail and payload.
func (b *bundle) events(t *testing.T) []outboxEvent {
	t.Helper()
	msgs, err := b.st.UnpublishedOutbox(t.Context(), 1000)
	require.NoError(t, err)
	var out []outboxEvent
	for _, m := range msgs {
		var p map[string]any
		require.NoError(t, json.Unmarshal(m.Payload, &p))
		out = append(out, outboxEvent{What: events.Name(strings.TrimPrefix(m.Subject, "levqor.event.")), Payload: p, Account: m.Headers[bus.HeaderAccount]})
	}
	return out
}

type outboxEvent struct {
	What    events.Name
	Payload map[string]any
	Account string
}

func kinds(evs []outboxEvent) []events.Name {
	var out []events.Name
	for _, e := range evs {
		out = append(out, e.What)
	}
	return out
}
