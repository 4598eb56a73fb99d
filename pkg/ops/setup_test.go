package ops_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

const (
	billingC = "billing-stripe"
	supportC = "support-stripe"
)

// worker is a consumer with a transactional handler that records each
// message's effect in the Stripe ledger (its id, so the effect is visible
// in the database) and counts how often its effects ran per message.
type worker struct {
	name string
	// broken makes the handler fail: permanently on payloads containing
	// "poison", or transiently on everything when transient is set.
	broken    atomic.Bool
	transient atomic.Bool

	mu      sync.Mutex
	effects map[string]int
}

func (w *worker) handle(ctx context.Context, tx *store.Tx, m *bus.Message) error {
	if w.broken.Load() {
		if w.transient.Load() {
			return fmt.Errorf("stripe API answered 502 for %s", m.ID())
		}
		if strings.Contains(string(m.Data), "poison") {
			return bus.Permanentf("amount_due is missing from invoice %s", m.ID())
		}
	}
	if _, err := tx.InsertStripeEvent(ctx, store.StripeEvent{
		ID: w.name + ":" + m.ID(), Type: "test", Payload: m.Data, StreamSeq: m.StreamSeq,
	}); err != nil {
		return err
	}
	w.mu.Lock()
	w.effects[m.ID()]++
	w.mu.Unlock()
	return nil
}

func (w *worker) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.effects[id]
}

type bundle struct {
	t       *testing.T
	nats    *bustest.Env
	st      *store.Store
	pub     *bus.Publisher
	ops     *ops.Ops
	workers map[string]*worker
	routes  []bus.Route
	clock   atomic.Int64 // offset added to the real time, in ns
}

type failures struct{ s *store.Store }

func (f failures) RecordFailure(ctx context.Context, x bus.Failure) error {
	return f.s.RecordFailure(ctx, store.Failure{
		Consumer: x.Consumer, MsgID: x.MsgID, Subject: x.Subject, Stream: x.Stream,
		StreamSeq: x.StreamSeq, Deliveries: x.Deliveries, Error: x.Error,
		DeadLettered: x.DeadLettered, At: x.At,
	})
}

func quietLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(t.Output())
	l.SetLevel(logrus.ErrorLevel)
	return l
}

// setup starts NATS and builds Ops, with two Stripe consumers whose
// handlers are the test workers (b.run starts them).
func setup(t *testing.T, st *store.Store, settings ops.Settings) *bundle {
	t.Helper()
	b := &bundle{t: t, nats: bustest.Start(t), st: st, workers: map[string]*worker{}}
	b.pub = bus.NewPublisher(b.nats.JS, b.nats.Topo)
	for _, name := range []string{billingC, supportC} {
		w := &worker{name: name, effects: map[string]int{}}
		b.workers[name] = w
		b.routes = append(b.routes, bus.Route{
			Consumer: bus.ConsumerSpec{Name: name, Kind: bus.Stripe, Filter: ">"},
			Handler:  inbox.Handler(st, w.handle),
		})
	}
	o, err := ops.New(ops.Config{
		JS: b.nats.JS, Topology: b.nats.Topo, Store: st, Log: quietLogger(t),
		Settings: settings,
		Now:      func() time.Time { return time.Now().Add(time.Duration(b.clock.Load())) },
	})
	require.NoError(t, err)
	b.ops = o
	return b
}

// ensureConsumers creates the durable consumers without running workers.
func (b *bundle) ensureConsumers() {
	b.t.Helper()
	for _, r := range b.routes {
		_, err := b.nats.Topo.EnsureConsumer(b.t.Context(), b.nats.JS, r.Consumer)
		require.NoError(b.t, err)
	}
}

// run starts a router with the named consumers' routes until the test
// ends or stop is called.
func (b *bundle) run(names ...string) (stop func()) {
	b.t.Helper()
	r, err := bus.NewRouter(b.nats.JS, bus.RouterConfig{
		Topology: b.nats.Topo, Logger: quietLogger(b.t), MaxDeliver: 10000,
		RetryAttempts: 1, NakBaseDelay: 10 * time.Millisecond, NakMaxDelay: 50 * time.Millisecond,
		FetchWait: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		Failures: failures{b.st},
	})
	require.NoError(b.t, err)
	for _, rt := range b.routes {
		for _, n := range names {
			if rt.Consumer.Name == n {
				r.Handle(rt.Consumer, rt.Handler)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(b.t, r.Ready, 10*time.Second, 10*time.Millisecond)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(b.t, <-done)
		})
	}
	b.t.Cleanup(stop)
	return stop
}

// publish stores a Stripe-like event on levqor.stripe.<typ> with id.
func (b *bundle) publish(typ, id, data string) uint64 {
	b.t.Helper()
	h := nats.Header{}
	h.Set(bus.HeaderCorrelationID, "corr-"+id)
	res, err := b.pub.Publish(b.t.Context(), b.nats.Topo.Subject(bus.Stripe, typ), id, h, []byte(data))
	require.NoError(b.t, err)
	require.False(b.t, res.Duplicate)
	return res.Seq
}

// waitAcked waits until consumer has nothing pending or unacknowledged.
func (b *bundle) waitAcked(consumer string) {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		c, err := b.nats.JS.Consumer(b.t.Context(), b.nats.Topo.StreamName(bus.Stripe), consumer)
		if err != nil {
			return false
		}
		info, err := c.Info(b.t.Context())
		if err != nil {
			return false
		}
		// Delivered too: a consumer just created can report nothing
		// pending before the server has counted the stream's messages.
		s, err := b.nats.JS.Stream(b.t.Context(), b.nats.Topo.StreamName(bus.Stripe))
		return err == nil && info.Delivered.Stream >= s.CachedInfo().State.LastSeq && info.NumPending == 0 && info.NumAckPending == 0
	}, 15*time.Second, 20*time.Millisecond, "%s caught up", consumer)
}

// deadLetter publishes a dead letter as the router would, for consumer,
// of a message on subject, dead-lettered at at.
func (b *bundle) deadLetter(consumer, typ, id, reason string, seq uint64, at time.Time) uint64 {
	b.t.Helper()
	m := &bus.Message{
		Subject: b.nats.Topo.Subject(bus.Stripe, typ), Header: nats.Header{bus.HeaderMsgID: {id}},
		Data: []byte(`{"id":"` + id + `"}`), Stream: b.nats.Topo.StreamName(bus.Stripe),
		Consumer: consumer, StreamSeq: seq, Deliveries: 1,
	}
	h := bus.DeadLetterHeaders(m, reason, at)
	res, err := b.pub.Publish(b.t.Context(), b.nats.Topo.Subject(bus.DLQ, consumer),
		fmt.Sprintf("dlq:%s:%s:%d", consumer, m.Stream, seq), h, m.Data)
	require.NoError(b.t, err)
	return res.Seq
}

func (b *bundle) audit(action string) []store.AuditEntry {
	b.t.Helper()
	entries, err := b.st.ListAudit(b.t.Context(), store.ListAuditParams{Action: action})
	require.NoError(b.t, err)
	return entries
}

func eachStore(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	storetest.Each(t, fn)
}

func storeSQLite(t *testing.T) *store.Store { return storetest.SQLite(t) }

// waitCtx bounds a wait for the workers in a test.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}
