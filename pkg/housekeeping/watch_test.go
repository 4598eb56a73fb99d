package housekeeping_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/housekeeping"
	"github.com/levqor/levqor/pkg/outbox"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// watchEnv is a NATS server with a consumer in trouble, a store and a
// watcher exporting to its own registry.
type watchEnv struct {
	nats *bustest.Env
	st   *store.Store
	w    *housekeeping.Watcher
	reg  *prometheus.Registry
	pub  *bus.Publisher
	cons jetstream.Consumer
	dlqN atomic.Int64
}

func newWatchEnv(t *testing.T, st *store.Store) *watchEnv {
	t.Helper()
	env := bustest.Start(t)
	reg := prometheus.NewRegistry()
	w := &housekeeping.Watcher{Store: st, JS: env.JS, Topology: env.Topo}
	w.Register(reg)
	cons, err := env.Topo.EnsureConsumer(context.Background(), env.JS, bus.ConsumerSpec{
		Name: "test-cmd", Kind: bus.Commands, Filter: "test.>", AckWait: time.Hour,
	})
	require.NoError(t, err)
	return &watchEnv{nats: env, st: st, w: w, reg: reg, pub: bus.NewPublisher(env.JS, env.Topo), cons: cons}
}

func (e *watchEnv) publishCommands(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, err := e.pub.Publish(context.Background(), e.nats.Topo.Subject(bus.Commands, "test.do"), fmt.Sprintf("cmd-%d-%d", time.Now().UnixNano(), i), nil, []byte("{}"))
		require.NoError(t, err)
	}
}

func (e *watchEnv) fetch(t *testing.T, n int) []jetstream.Msg {
	t.Helper()
	batch, err := e.cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
	require.NoError(t, err)
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	require.Len(t, out, n)
	return out
}

// deadLetter adds one dead letter of consumer to the DLQ.
func (e *watchEnv) deadLetter(t *testing.T, consumer string) {
	t.Helper()
	require.NoError(t, e.publishDeadLetter(consumer))
}

func (e *watchEnv) publishDeadLetter(consumer string) error {
	id := fmt.Sprintf("dlq:%s:%d", consumer, e.dlqN.Add(1))
	_, err := e.pub.Publish(context.Background(), e.nats.Topo.Subject(bus.DLQ, consumer), id, nil, []byte("{}"))
	return err
}

// gauge returns the value of a gauge for consumer, and whether the series
// exists.
func (e *watchEnv) gauge(t *testing.T, name, consumer string) (float64, bool) {
	t.Helper()
	return gauge(t, e.reg, name, consumer)
}

func gauge(t *testing.T, reg prometheus.Gatherer, name, consumer string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == consumer {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

type event struct {
	subject string
	corr    string
	body    map[string]any
}

// events returns the outbox rows so far, oldest first.
func (e *watchEnv) events(t *testing.T) []event {
	t.Helper()
	msgs, err := e.st.UnpublishedOutbox(context.Background(), 1000)
	require.NoError(t, err)
	var out []event
	for _, m := range msgs {
		var body map[string]any
		require.NoError(t, json.Unmarshal(m.Payload, &body))
		out = append(out, event{subject: m.Subject, corr: m.Headers[bus.HeaderCorrelationID], body: body})
	}
	return out
}

func (e *watchEnv) watch(t *testing.T, m *bus.Message) {
	t.Helper()
	require.NoError(t, e.w.Handle(context.Background(), m))
}

func TestWatch(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newWatchEnv(t, st)
		// Four commands delivered twice and never acknowledged: stuck.
		e.publishCommands(t, 4)
		for _, m := range e.fetch(t, 4) {
			require.NoError(t, m.Nak())
		}
		unacked := e.fetch(t, 4)
		e.publishCommands(t, 2) // waiting behind them
		e.deadLetter(t, "test-cmd")
		e.deadLetter(t, "test-cmd")
		e.deadLetter(t, "gone-cmd") // a consumer known only from its dead letters
		_, err := e.nats.Topo.EnsureConsumer(context.Background(), e.nats.JS, bus.ConsumerSpec{Name: "test-dlq", Kind: bus.DLQ})
		require.NoError(t, err, "a worker that consumes dead letters")

		slot := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		first := tick(t, scheduler.JobHousekeepingWatch, slot)
		e.watch(t, first)

		evs := e.events(t)
		require.Len(t, evs, 3, "two DLQs that grew from nothing and one stuck consumer: %+v", evs)
		bySubject := map[string][]event{}
		for _, ev := range evs {
			bySubject[ev.subject] = append(bySubject[ev.subject], ev)
			require.Equal(t, slot.Format(time.RFC3339), ev.body["slot"], "events carry the slot")
			require.Equal(t, first.Header.Get(bus.HeaderMsgID), ev.corr, "and the tick's correlation id")
		}
		growing := bySubject["levqor.event.ops.dlq_growing"]
		require.Len(t, growing, 2)
		require.Equal(t, "gone-cmd", growing[0].body["consumer"])
		require.Equal(t, "test-cmd", growing[1].body["consumer"])
		require.EqualValues(t, 2, growing[1].body["dlq_messages"])
		require.EqualValues(t, 0, growing[1].body["previous_dlq_messages"])
		require.Equal(t, "COMMANDS", growing[1].body["stream"])
		stuck := bySubject["levqor.event.ops.consumer_stuck"]
		require.Len(t, stuck, 1)
		require.Equal(t, "test-cmd", stuck[0].body["consumer"])
		require.EqualValues(t, 4, stuck[0].body["ack_pending_messages"])
		require.EqualValues(t, 4, stuck[0].body["redelivered_messages"])
		require.EqualValues(t, 2, stuck[0].body["pending_messages"])
		stored := e.nats.Messages(t, bus.Commands)[0].Time.UTC().Format(time.RFC3339Nano)
		require.Equal(t, stored, stuck[0].body["oldest_unacked_stored_at"], "the oldest unacknowledged message is the first one")

		for name, want := range map[string]float64{
			"levqor_consumer_pending_messages":     2,
			"levqor_consumer_ack_pending_messages": 4,
			"levqor_consumer_redelivered_messages": 4,
			"levqor_consumer_stuck":                1,
			"levqor_dlq_messages":                  2,
		} {
			v, ok := e.gauge(t, name, "test-cmd")
			require.True(t, ok, name)
			require.Equal(t, want, v, name)
		}
		age, _ := e.gauge(t, "levqor_consumer_oldest_unacked_age_seconds", "test-cmd")
		require.Greater(t, age, 0.0)
		v, _ := e.gauge(t, "levqor_dlq_messages", "gone-cmd")
		require.Equal(t, 1.0, v)
		v, ok := e.gauge(t, "levqor_consumer_pending_messages", "test-dlq")
		require.True(t, ok, "consumers of the DLQ stream are watched too")
		require.Equal(t, 3.0, v)

		t.Run("RedeliveredTickHasOneEffect", func(t *testing.T) {
			e.deadLetter(t, "test-cmd") // would be an event if the tick ran again
			e.watch(t, first)
			require.Len(t, e.events(t), 3)
		})
		t.Run("NothingNewNothingRaised", func(t *testing.T) {
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(time.Minute)))
			evs := e.events(t)
			require.Len(t, evs, 4, "the DLQ grew once since the last watch; the consumer was already reported stuck")
			require.Equal(t, "levqor.event.ops.dlq_growing", evs[3].subject)
			require.EqualValues(t, 3, evs[3].body["dlq_messages"])
			require.EqualValues(t, 2, evs[3].body["previous_dlq_messages"])
			require.Equal(t, slot.Format(time.RFC3339), evs[3].body["previous_slot"])
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(2*time.Minute)))
			require.Len(t, e.events(t), 4)
		})
		t.Run("OlderSlotChangesNothing", func(t *testing.T) {
			e.deadLetter(t, "test-cmd")
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(30*time.Second)))
			require.Len(t, e.events(t), 4, "a late tick for a slot already passed raises nothing")
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(3*time.Minute)))
			require.Len(t, e.events(t), 5, "the next slot sees the growth")
		})
		t.Run("RecoveryAndRelapse", func(t *testing.T) {
			for _, m := range unacked {
				// Acknowledged and confirmed: the watch below reads the
				// consumer's state, which a plain ack may not have reached.
				require.NoError(t, m.DoubleAck(context.Background()))
			}
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(4*time.Minute)))
			v, _ := e.gauge(t, "levqor_consumer_stuck", "test-cmd")
			require.Zero(t, v)
			v, _ = e.gauge(t, "levqor_consumer_oldest_unacked_age_seconds", "test-cmd")
			require.Zero(t, v)
			require.Len(t, e.events(t), 5)

			for _, m := range e.fetch(t, 2) {
				require.NoError(t, m.Nak())
			}
			e.publishCommands(t, 1)
			for _, m := range e.fetch(t, 3) {
				require.NoError(t, m.Nak())
			}
			e.fetch(t, 3)
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(5*time.Minute)))
			evs := e.events(t)
			require.Len(t, evs, 6, "stuck again after recovering: reported again")
			require.Equal(t, "levqor.event.ops.consumer_stuck", evs[5].subject)
		})
		t.Run("GoneConsumersLeaveTheGauges", func(t *testing.T) {
			require.NoError(t, e.nats.JS.DeleteConsumer(context.Background(), "COMMANDS", "test-cmd"))
			dlq, err := e.nats.JS.Stream(context.Background(), "DLQ")
			require.NoError(t, err)
			require.NoError(t, dlq.Purge(context.Background()))
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(6*time.Minute)))
			_, ok := e.gauge(t, "levqor_consumer_pending_messages", "test-cmd")
			require.False(t, ok, "no series for a consumer that no longer exists")
			e.deadLetter(t, "gone-cmd")
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(7*time.Minute)))
			evs := e.events(t)
			require.Len(t, evs, 7, "after a purge, growth counts from zero")
			require.EqualValues(t, 1, evs[6].body["dlq_messages"])
			require.EqualValues(t, 0, evs[6].body["previous_dlq_messages"])
		})
	})
}

func TestWatchNeedsNATS(t *testing.T) {
	t.Parallel()
	e := newWatchEnv(t, storetest.SQLite(t))
	e.nats.Server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := e.w.Handle(ctx, tick(t, scheduler.JobHousekeepingWatch, time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)))
	require.Error(t, err)
	require.False(t, bus.IsPermanent(err), "NATS being down is transient: the tick is retried")
	require.Empty(t, e.events(t))
}

// failAfterCommitOnce makes each message's first successful handling look
// failed to the router, as when a worker dies between commit and ack, so
// that JetStream redelivers it. Before failing it calls between, which
// changes the world so that a handler running twice would show.
type failAfterCommitOnce struct {
	between    func(m *bus.Message)
	mu         sync.Mutex
	seen       map[string]bool
	redelivery map[string]uint64
}

func (f *failAfterCommitOnce) middleware(next bus.Handler) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		if err := next(ctx, m); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.seen[m.ID()] {
			f.seen[m.ID()] = true
			f.between(m)
			return fmt.Errorf("worker lost its connection before acknowledging")
		}
		f.redelivery[m.ID()] = m.Deliveries
		return nil
	}
}

func TestHousekeepingWorkerEndToEnd(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newWatchEnv(t, st)
		ctx := context.Background()
		log := logrus.New()
		log.Out = io.Discard

		// An inbox row past the retention of the prune slot below, and one
		// still within it.
		pruneSlot := time.Date(2026, 6, 1, 3, 17, 0, 0, time.UTC)
		inRet := housekeeping.InboxRetention(e.nats.Topo)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			for id, at := range map[string]time.Time{"old": pruneSlot.Add(-inRet - time.Minute), "kept": pruneSlot.Add(-inRet + time.Minute)} {
				if _, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: id, Subject: "s", ProcessedAt: at}); err != nil {
					return err
				}
			}
			return nil
		}))

		e.deadLetter(t, "test-cmd")

		// The workers: housekeeping behind the real router, the outbox relay.
		r, err := bus.NewRouter(e.nats.JS, bus.RouterConfig{Topology: e.nats.Topo, Logger: log, NakBaseDelay: 20 * time.Millisecond, RetryAttempts: 1})
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		(&housekeeping.Worker{Store: st, JS: e.nats.JS, Topology: e.nats.Topo, Registerer: reg}).Register(r)
		// Each watch tick's first delivery is followed by a new dead letter
		// and a redelivery: a second run of the same tick would report it
		// under the same slot.
		fail := &failAfterCommitOnce{seen: map[string]bool{}, redelivery: map[string]uint64{}, between: func(m *bus.Message) {
			if m.Subject == e.nats.Topo.Subject(bus.Ticks, scheduler.JobHousekeepingWatch) {
				if err := e.publishDeadLetter("test-cmd"); err != nil {
					t.Errorf("adding a dead letter: %v", err)
				}
			}
		}}
		r.Use(fail.middleware)
		relay := &outbox.Relay{Store: st, Publisher: e.pub, Log: log, Interval: 20 * time.Millisecond}
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = r.Run(wctx) }()
		go func() { defer wg.Done(); _ = relay.Run(wctx) }()
		t.Cleanup(func() { stop(); wg.Wait() })

		// The scheduler, with the catalog, on a clock the test moves. The
		// prune slot and the first watch slot were published by an
		// earlier run.
		seedTick(t, e, scheduler.JobHousekeepingPrune, pruneSlot)
		seedTick(t, e, scheduler.JobHousekeepingWatch, time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC))
		clk := &clock{t: time.Date(2026, 6, 1, 10, 0, 30, 0, time.UTC)}
		s, err := scheduler.New(e.nats.JS, scheduler.Config{Topology: e.nats.Topo, Jobs: scheduler.Catalog(), CatchUpWindow: time.Hour, Logger: log, Now: clk.Now})
		require.NoError(t, err)
		go func() { _ = s.Run(wctx) }()

		waitEvents(t, e, []string{"dlq_growing test-cmd 1 10:00:00"})
		clk.set(time.Date(2026, 6, 1, 10, 1, 0, 0, time.UTC))
		s.Nudge()
		waitEvents(t, e, []string{"dlq_growing test-cmd 1 10:00:00", "dlq_growing test-cmd 2 10:01:00"})
		clk.set(time.Date(2026, 6, 1, 10, 2, 0, 0, time.UTC))
		s.Nudge()
		waitEvents(t, e, []string{"dlq_growing test-cmd 1 10:00:00", "dlq_growing test-cmd 2 10:01:00", "dlq_growing test-cmd 3 10:02:00"})

		require.Eventually(t, func() bool { return len(fail.redeliveries()) == 4 }, 15*time.Second, 20*time.Millisecond,
			"the prune tick and the three watch ticks were each delivered twice")
		for id, n := range fail.redeliveries() {
			require.EqualValues(t, 2, n, "%s was redelivered by JetStream", id)
		}
		time.Sleep(200 * time.Millisecond) // give a wrongly repeated effect time to show
		waitEvents(t, e, []string{"dlq_growing test-cmd 1 10:00:00", "dlq_growing test-cmd 2 10:01:00", "dlq_growing test-cmd 3 10:02:00"})

		err = st.InTx(ctx, func(tx *store.Tx) error {
			claimed, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "old", Subject: "s"})
			require.NoError(t, err)
			require.True(t, claimed, "the prune tick pruned relative to its slot")
			claimed, err = tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "kept", Subject: "s"})
			require.NoError(t, err)
			require.False(t, claimed)
			return nil
		})
		require.NoError(t, err)
		v, ok := gauge(t, reg, "levqor_dlq_messages", "test-cmd")
		require.True(t, ok, "the worker exports the gauges on the registry it was given")
		require.Equal(t, 4.0, v)
	})
}

func (f *failAfterCommitOnce) redeliveries() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range f.redelivery {
		out[k] = v
	}
	return out
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func seedTick(t *testing.T, e *watchEnv, job string, slot time.Time) {
	t.Helper()
	b, err := json.Marshal(scheduler.Tick{Job: job, Slot: slot})
	require.NoError(t, err)
	h := nats.Header{}
	h.Set(bus.HeaderCorrelationID, scheduler.MsgID(job, slot))
	_, err = e.pub.Publish(context.Background(), e.nats.Topo.Subject(bus.Ticks, job), scheduler.MsgID(job, slot), h, b)
	require.NoError(t, err)
}

// waitEvents waits until the EVENTS stream holds exactly want, each
// "<event> <consumer> <dead letters> <slot time>".
func waitEvents(t *testing.T, e *watchEnv, want []string) {
	t.Helper()
	var got []string
	require.Eventually(t, func() bool {
		got = nil
		for _, m := range e.nats.Messages(t, bus.Events) {
			var body struct {
				Consumer string    `json:"consumer"`
				DLQ      int       `json:"dlq_messages"`
				Slot     time.Time `json:"slot"`
			}
			require.NoError(t, json.Unmarshal(m.Data, &body))
			name, _ := e.nats.Topo.Unprefixed(bus.Events, m.Subject)
			got = append(got, fmt.Sprintf("%s %s %d %s", name[len("ops."):], body.Consumer, body.DLQ, body.Slot.Format("15:04:05")))
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, 15*time.Second, 20*time.Millisecond, "events on the bus: want %v", want)
	require.Equal(t, want, got)
}
