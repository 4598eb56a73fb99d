package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
)

type bundle struct {
	env  *bustest.Env
	pub  *bus.Publisher
	cfg  bus.RouterConfig
	spec bus.ConsumerSpec
	fail *failureLog
}

type failureLog struct {
	mu sync.Mutex
	fs []bus.Failure
}

func (f *failureLog) RecordFailure(_ context.Context, x bus.Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fs = append(f.fs, x)
	return nil
}

func (f *failureLog) all() []bus.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bus.Failure(nil), f.fs...)
}

func setup(t *testing.T) *bundle {
	t.Helper()
	env := bustest.Start(t)
	log, _ := test.NewNullLogger()
	fl := &failureLog{}
	return &bundle{
		env: env,
		pub: bus.NewPublisher(env.JS, env.Topo),
		cfg: bus.RouterConfig{
			Topology:        env.Topo,
			Logger:          log,
			MaxDeliver:      4,
			RetryAttempts:   1,
			NakBaseDelay:    150 * time.Millisecond,
			NakMaxDelay:     2 * time.Second,
			FetchWait:       200 * time.Millisecond,
			ShutdownTimeout: 2 * time.Second,
			Failures:        fl,
		},
		spec: bus.ConsumerSpec{Name: "test-cmd", Kind: bus.Commands, Filter: "test.>"},
		fail: fl,
	}
}

// run starts a router with h and returns a function that stops it and
// waits for Run to return.
func (b *bundle) run(t *testing.T, h bus.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait := b.runCtx(t, ctx, h)
	stop = func() {
		cancel()
		wait()
	}
	t.Cleanup(stop)
	return stop
}

// runCtx starts a router with h that runs until ctx ends, and returns a
// function that waits for Run to return.
func (b *bundle) runCtx(t *testing.T, ctx context.Context, h bus.Handler) (wait func()) {
	t.Helper()
	r, err := bus.NewRouter(b.env.JS, b.cfg)
	require.NoError(t, err)
	r.Handle(b.spec, h)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, r.Ready, 5*time.Second, 10*time.Millisecond)
	var once sync.Once
	return func() {
		once.Do(func() {
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("router did not stop")
			}
		})
	}
}

func (b *bundle) publish(t *testing.T, id string, data string) {
	t.Helper()
	h := nats.Header{}
	h.Set(bus.HeaderCorrelationID, "corr-"+id)
	_, err := b.pub.Publish(context.Background(), b.env.Topo.Subject(bus.Commands, "test.do"), id, h, []byte(data))
	require.NoError(t, err)
}

// consumerInfo reads the consumer's state. It returns its error rather
// than failing the test, for conditions polled by require.Eventually.
func (b *bundle) consumerInfo() (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := b.env.JS.Consumer(ctx, b.env.Topo.StreamName(bus.Commands), b.spec.Name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// settled waits until every message stored so far has been delivered and
// none awaits an ack: each was acked or terminated. It counts up to the
// stream's last sequence instead of trusting the consumer's NumPending,
// which JetStream updates asynchronously: just after a publish is
// acknowledged, the consumer may still report nothing pending.
func (b *bundle) settled(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.env.JS.Stream(ctx, b.env.Topo.StreamName(bus.Commands))
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	last := info.State.LastSeq
	require.Eventually(t, func() bool {
		i, err := b.consumerInfo()
		return err == nil && i.Delivered.Stream >= last && i.NumAckPending == 0
	}, 10*time.Second, 20*time.Millisecond, "every message acknowledged or terminated")
}

// watchAcks returns what the router tells JetStream about deliveries, in
// the order it was sent: the bodies of the messages on the ack subjects
// (+ACK, -NAK with its delay, +TERM, +WPI).
func (b *bundle) watchAcks(t *testing.T) <-chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 256)
	sub, err := b.env.NC.ChanSubscribe("$JS.ACK.>", ch)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, b.env.NC.Flush())
	return ch
}

// nakDelays reads acks up to the first +ACK and returns the delay asked by
// each -NAK before it (0 for a nak without one).
func nakDelays(t *testing.T, acks <-chan *nats.Msg) []time.Duration {
	t.Helper()
	var delays []time.Duration
	for {
		select {
		case m := <-acks:
			body := string(m.Data)
			if body == "+ACK" {
				return delays
			}
			arg, nak := strings.CutPrefix(body, "-NAK")
			if !nak {
				continue
			}
			var opts struct {
				Delay time.Duration `json:"delay"`
			}
			if arg = strings.TrimSpace(arg); arg != "" {
				require.NoError(t, json.Unmarshal([]byte(arg), &opts), "nak body %q", body)
			}
			delays = append(delays, opts.Delay)
		case <-time.After(5 * time.Second):
			t.Fatal("no +ACK reached JetStream")
		}
	}
}

func TestRouterAcksHandledMessages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	seen := map[string]int{}
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[m.ID()]++
		require.Equal(t, "corr-"+m.ID(), m.CorrelationID())
		return nil
	})
	for i := 0; i < 50; i++ {
		b.publish(t, "m"+strconv.Itoa(i), "{}")
	}
	b.settled(t)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 50)
	for id, n := range seen {
		require.Equal(t, 1, n, "message %s handled once", id)
	}
	require.Zero(t, b.env.StreamMsgs(t, bus.DLQ))
}

func TestRouterRetriesTransientFailuresWithGrowingDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acks := b.watchAcks(t)
	var mu sync.Mutex
	var times []time.Time
	var deliveries []uint64
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		deliveries = append(deliveries, m.Deliveries)
		if len(times) < 4 {
			return errors.New("database unavailable")
		}
		return nil
	})
	b.publish(t, "flaky", "{}")
	b.settled(t)
	delays := nakDelays(t, acks)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []uint64{1, 2, 3, 4}, deliveries, "each failure is a new delivery, and the fourth succeeds")
	// The delays are read from what JetStream was asked: the gaps between
	// deliveries also hold the scheduling of a busy machine, so they are
	// only held to be no shorter.
	gaps := []time.Duration{times[1].Sub(times[0]), times[2].Sub(times[1]), times[3].Sub(times[2])}
	t.Logf("delays asked: %v; redelivery gaps: %v", delays, gaps)
	require.Len(t, delays, 3, "every failure handed back to JetStream")
	require.GreaterOrEqual(t, delays[0], 100*time.Millisecond, "not redelivered at once")
	require.Greater(t, delays[1], delays[0])
	require.Greater(t, delays[2], delays[1])
	for i, d := range delays {
		require.GreaterOrEqual(t, gaps[i], d, "delivery %d came only after the delay asked", i+2)
	}
	require.Zero(t, b.env.StreamMsgs(t, bus.DLQ), "a message that eventually succeeds is not dead-lettered")
	fs := b.fail.all()
	require.Len(t, fs, 3, "every failed delivery is recorded for operators")
	require.Equal(t, "database unavailable", fs[2].Error)
	require.False(t, fs[2].DeadLettered)
}

func TestRouterRetriesInProcessBeforeNak(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.RetryAttempts = 3
	b.cfg.RetryInitial = 5 * time.Millisecond
	var calls atomic.Int32
	var lastDelivery atomic.Uint64
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		lastDelivery.Store(m.Deliveries)
		if calls.Add(1) < 3 {
			return errors.New("timeout")
		}
		return nil
	})
	b.publish(t, "blip", "{}")
	b.settled(t)
	require.EqualValues(t, 3, calls.Load())
	require.EqualValues(t, 1, lastDelivery.Load(), "short blips are absorbed within one delivery")
}

func TestRouterDeadLettersPermanentFailuresAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		calls.Add(1)
		return bus.Permanentf("malformed payload:\nline two")
	})
	b.publish(t, "poison-1", `{"bad":`)
	b.settled(t)
	require.EqualValues(t, 1, calls.Load(), "permanent failures are not retried")

	dl := b.env.Messages(t, bus.DLQ)
	require.Len(t, dl, 1)
	m := dl[0]
	require.Equal(t, "levqor.dlq.test-cmd", m.Subject)
	require.Equal(t, `{"bad":`, string(m.Data), "the original payload is kept byte for byte")
	require.Equal(t, "permanent: malformed payload: line two", m.Header.Get(bus.HeaderDlqReason))
	require.Equal(t, "test-cmd", m.Header.Get(bus.HeaderDlqConsumer))
	require.Equal(t, "COMMANDS", m.Header.Get(bus.HeaderDlqStream))
	require.Equal(t, "1", m.Header.Get(bus.HeaderDlqSeq))
	require.Equal(t, "levqor.cmd.test.do", m.Header.Get(bus.HeaderDlqSubject))
	require.Equal(t, "1", m.Header.Get(bus.HeaderDlqDeliveries))
	require.Equal(t, "poison-1", m.Header.Get(bus.HeaderOriginalMsgID))
	require.Equal(t, "corr-poison-1", m.Header.Get(bus.HeaderCorrelationID))
	_, err := time.Parse(time.RFC3339Nano, m.Header.Get(bus.HeaderDlqAt))
	require.NoError(t, err)
	fs := b.fail.all()
	require.Len(t, fs, 1)
	require.True(t, fs[0].DeadLettered)
}

// A handler that is not ready for a message defers it: it comes back
// after the delay asked, and nothing is recorded as a failure; the last
// delivery knows it is the last.
func TestRouterDefersWithoutRecordingAFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acks := b.watchAcks(t)
	var mu sync.Mutex
	var last []bool
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		last = append(last, m.LastAttempt())
		if m.Deliveries < 2 {
			return bus.Defer("quiet hours", 300*time.Millisecond)
		}
		return nil
	})
	b.publish(t, "later", "{}")
	b.settled(t)
	require.Equal(t, []time.Duration{300 * time.Millisecond}, nakDelays(t, acks), "handed back for the delay asked")
	require.Empty(t, b.fail.all(), "a deferral is no failure")
	require.Zero(t, b.env.StreamMsgs(t, bus.DLQ))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []bool{false, false}, last, "MaxDeliver is 4: neither delivery was the last")
}

func TestRouterDeadLettersAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.NakBaseDelay = 20 * time.Millisecond
	var calls, lastAt, lasts atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		n := calls.Add(1)
		if m.LastAttempt() {
			lastAt.Store(n)
			lasts.Add(1)
		}
		return errors.New("stripe answered 500")
	})
	b.publish(t, "poison-2", "{}")
	b.settled(t)
	require.EqualValues(t, 4, calls.Load(), "MaxDeliver deliveries, then no more")
	require.EqualValues(t, 4, lastAt.Load(), "the fourth delivery knew it was the last")
	require.EqualValues(t, 1, lasts.Load(), "and no other thought so")
	dl := b.env.Messages(t, bus.DLQ)
	require.Len(t, dl, 1)
	require.Equal(t, "4", dl[0].Header.Get(bus.HeaderDlqDeliveries))
	require.Contains(t, dl[0].Header.Get(bus.HeaderDlqReason), "stripe answered 500")
}

func TestRouterRecoversFromPanics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.NakBaseDelay = 10 * time.Millisecond
	var calls atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		if calls.Add(1) == 1 {
			var mp map[string]int
			mp["boom"] = 1 // nil map write
		}
		return nil
	})
	b.publish(t, "panicky", "{}")
	b.settled(t)
	require.EqualValues(t, 2, calls.Load(), "the worker survived and the retry succeeded")
	require.Contains(t, b.fail.all()[0].Error, "handler panicked")
}

func TestRouterNeverDropsWhenDLQPublishFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	require.NoError(t, b.env.JS.DeleteStream(ctx, b.env.Topo.StreamName(bus.DLQ)))
	var calls atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		calls.Add(1)
		return bus.Permanentf("bad")
	})
	b.publish(t, "poison-3", "{}")
	require.Eventually(t, func() bool { return calls.Load() >= 2 }, 10*time.Second, 10*time.Millisecond,
		"with no DLQ the message is redelivered, not dropped")
	_, err := b.env.JS.CreateStream(ctx, b.env.Topo.StreamConfig(bus.DLQ))
	require.NoError(t, err)
	b.settled(t)
	require.Len(t, b.env.Messages(t, bus.DLQ), 1)
}

func TestRouterDeadLettersMessagesThatKeepKillingWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.spec.AckWait = 200 * time.Millisecond
	ctx := context.Background()
	cons, err := b.env.Topo.EnsureConsumer(ctx, b.env.JS, b.spec)
	require.NoError(t, err)
	b.publish(t, "killer", "{}")
	// Workers that crash mid-handler: they fetch and never ack.
	for i := 0; i < b.cfg.MaxDeliver; i++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		n := 0
		for range batch.Messages() {
			n++
		}
		require.Equal(t, 1, n)
	}
	var calls atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error { calls.Add(1); return nil })
	b.settled(t)
	require.Zero(t, calls.Load(), "the handler is not run again once the limit is passed")
	dl := b.env.Messages(t, bus.DLQ)
	require.Len(t, dl, 1)
	require.Contains(t, dl[0].Header.Get(bus.HeaderDlqReason), "crashed or timed out")
}

func TestRouterKeepsLongHandlersAlive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.spec.AckWait = 300 * time.Millisecond
	var calls atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		calls.Add(1)
		time.Sleep(1200 * time.Millisecond) // four ack waits
		return nil
	})
	b.publish(t, "slow", "{}")
	b.settled(t)
	time.Sleep(400 * time.Millisecond)
	require.EqualValues(t, 1, calls.Load(), "not redelivered while the handler works")
}

func TestRouterShutdownFinishesInFlightWork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Concurrency = 2
	// Far longer than settled waits: a message the first worker kept
	// without releasing it would not reach the second in time.
	b.spec.AckWait = time.Minute
	started := make(chan struct{}, 10)
	var finished atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	stop := b.run(t, func(ctx context.Context, m *bus.Message) error {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		seen[m.ID()]++
		mu.Unlock()
		finished.Add(1)
		return nil
	})
	for i := 0; i < 6; i++ {
		b.publish(t, fmt.Sprintf("s%d", i), "{}")
	}
	<-started
	stop()
	handled := finished.Load()
	require.GreaterOrEqual(t, handled, int32(1), "in-flight work finished before Run returned")

	// A new worker picks up the rest at once: the first acked what it
	// finished and released the rest (released messages still count as
	// ack pending until redelivered, so the consumer's state says nothing
	// here). Every message is handled exactly once.
	deliveries := map[string]uint64{}
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		seen[m.ID()]++
		deliveries[m.ID()] = m.Deliveries
		mu.Unlock()
		finished.Add(1)
		return nil
	})
	b.settled(t)
	require.EqualValues(t, 6, finished.Load())
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		require.Equal(t, 1, n, "message %s handled once across the two workers", id)
	}
	for id, n := range deliveries {
		require.LessOrEqual(t, n, uint64(2), "message %s: the stop cost it at most one delivery", id)
	}
}

// TestRouterReleasesAMessageFetchedWhileStoppingOnce: a message that a
// pull still open at the stop delivers is released for the next worker
// at the cost of that one delivery. Released into the open pull, it would
// come straight back, again and again, until its deliveries were spent and
// the next worker dead-lettered it unrun.
func TestRouterReleasesAMessageFetchedWhileStoppingOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.FetchWait = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	var handled atomic.Int32
	wait := b.runCtx(t, ctx, func(ctx context.Context, m *bus.Message) error {
		handled.Add(1)
		return nil
	})
	t.Cleanup(func() { cancel(); wait() })
	require.Eventually(t, func() bool {
		i, err := b.consumerInfo()
		return err == nil && i.NumWaiting > 0
	}, 5*time.Second, 5*time.Millisecond, "the router waits on a pull")
	cancel()
	b.publish(t, "late", "{}")
	wait()
	require.Zero(t, handled.Load(), "a stopping router starts no new work")

	b.cfg.FetchWait = 200 * time.Millisecond
	var deliveries atomic.Uint64
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		deliveries.Store(m.Deliveries)
		return nil
	})
	b.settled(t)
	require.Zero(t, b.env.StreamMsgs(t, bus.DLQ), "not dead-lettered")
	require.NotZero(t, deliveries.Load(), "handled by the next worker")
	require.LessOrEqual(t, deliveries.Load(), uint64(2), "the stop cost it at most one delivery")
}

func TestRouterCancelsHandlersPastShutdownTimeoutAndReleasesThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.ShutdownTimeout = 200 * time.Millisecond
	started := make(chan struct{}, 1)
	stop := b.run(t, func(ctx context.Context, m *bus.Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	b.publish(t, "stuck", "{}")
	<-started
	begin := time.Now()
	stop()
	require.Less(t, time.Since(begin), 3*time.Second)
	var got atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		require.EqualValues(t, 2, m.Deliveries)
		got.Add(1)
		return nil
	})
	b.settled(t)
	require.EqualValues(t, 1, got.Load(), "the released message went to the next worker at once")
	require.Zero(t, b.env.StreamMsgs(t, bus.DLQ))
	require.Empty(t, b.fail.all(), "a shutdown is not a failure")
}

func TestRouterSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	seen := map[string]int{}
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[m.ID()]++
		return nil
	})
	b.publish(t, "before", "{}")
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return seen["before"] == 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, b.env.Server.Restart())
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := b.pub.Publish(ctx, b.env.Topo.Subject(bus.Commands, "test.do"), "after", nil, []byte("{}"))
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return seen["after"] == 1 }, 15*time.Second, 20*time.Millisecond,
		"the router resumed without being restarted itself")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, seen["before"])
}

func TestLoggingMiddlewareCarriesMessageFields(t *testing.T) {
	t.Parallel()
	log, hook := test.NewNullLogger()
	h := bus.Logging(log)(func(ctx context.Context, m *bus.Message) error {
		bus.Logger(ctx).Info("inside")
		return nil
	})
	m := &bus.Message{Subject: "levqor.cmd.x", Consumer: "c", Header: nats.Header{bus.HeaderCorrelationID: {"abc"}, bus.HeaderMsgID: {"id1"}}}
	require.NoError(t, h(context.Background(), m))
	e := hook.LastEntry()
	require.Equal(t, logrus.InfoLevel, e.Level)
	require.Equal(t, "abc", e.Data["correlation_id"])
	require.Equal(t, "id1", e.Data["msg_id"])
	require.Equal(t, "c", e.Data["consumer"])
}

func TestNakDelayGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	log, _ := test.NewNullLogger()
	r, err := bus.NewRouter(nil, bus.RouterConfig{Topology: bus.Topology{}.WithDefaults(), Logger: log, NakBaseDelay: time.Second, NakMaxDelay: 30 * time.Second})
	require.NoError(t, err)
	prevMax := time.Duration(0)
	for n := 1; n <= 5; n++ {
		d := r.NakDelay(n)
		base := time.Second << (n - 1)
		require.GreaterOrEqual(t, d, time.Duration(float64(base)*0.8))
		require.LessOrEqual(t, d, time.Duration(float64(base)*1.2))
		require.Greater(t, time.Duration(float64(base)*1.2), prevMax)
		prevMax = time.Duration(float64(base) * 1.2)
	}
	for n := 6; n < 100; n++ {
		require.LessOrEqual(t, r.NakDelay(n), 30*time.Second)
	}
}
