package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

const consumer = "billing-stripe"

func message(id string, seq uint64) *bus.Message {
	return &bus.Message{
		Subject: "levqor.stripe.invoice.paid", Header: nats.Header{bus.HeaderMsgID: {id}},
		Stream: "STRIPE", Consumer: consumer, StreamSeq: seq, Deliveries: 1,
	}
}

// effect is a handler's write: a dunning row keyed by the message id, so
// a test can see which messages' effects committed.
func effect(ctx context.Context, tx *store.Tx, id string) error {
	now := time.Now().UTC()
	return tx.PutDunning(ctx, store.Dunning{AccountID: id, State: store.DunningPastDue, InvoiceID: "in_" + id,
		PastDueSince: now, GraceUntil: now, EventCreated: now}, now)
}

func hasEffect(t *testing.T, s *store.Store, id string) bool {
	t.Helper()
	_, err := s.GetDunning(t.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	return true
}

func processed(t *testing.T, s *store.Store, id string) bool {
	t.Helper()
	states, err := s.ConsumerStates(t.Context(), id)
	require.NoError(t, err)
	for _, st := range states {
		if st.Consumer == consumer && st.State == store.ConsumerStateProcessed {
			return true
		}
	}
	return false
}

// runSteps runs a batch handler as the router would, without middleware,
// and returns each message's result.
func runSteps(ctx context.Context, h bus.BatchHandler, msgs []*bus.Message) ([]error, error) {
	res := make([]error, len(msgs))
	idx := map[*bus.Message]int{}
	for i, m := range msgs {
		idx[m] = i
		res[i] = bus.ErrNotStepped
	}
	err := h(ctx, msgs, func(ctx context.Context, m *bus.Message, fn bus.Handler) error {
		err := fn(ctx, m)
		res[idx[m]] = err
		return err
	})
	return res, err
}

func TestBatchHandlerUndoesOnlyTheFailingMessage(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		fail := true
		h := inbox.BatchHandler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			if err := effect(ctx, tx, m.ID()); err != nil {
				return err
			}
			if m.ID() == "evt_2" && fail {
				// A statement the database rejects after the message
				// wrote: on PostgreSQL it aborts the transaction until
				// the rollback to the savepoint.
				now := time.Now()
				return tx.PutDunning(ctx, store.Dunning{AccountID: "x", State: "bogus", PastDueSince: now, GraceUntil: now, EventCreated: now}, now)
			}
			return nil
		})
		var msgs []*bus.Message
		for i := 0; i < 5; i++ {
			msgs = append(msgs, message("evt_"+strconv.Itoa(i), uint64(i+1)))
		}
		res, err := runSteps(ctx, h, msgs)
		require.NoError(t, err, "the batch commits")
		for i, r := range res {
			if i == 2 {
				require.Error(t, r)
				continue
			}
			require.NoError(t, r)
		}
		for i, m := range msgs {
			require.Equal(t, i != 2, hasEffect(t, s, m.ID()), "effects of %s", m.ID())
			require.Equal(t, i != 2, processed(t, s, m.ID()), "inbox row of %s", m.ID())
		}

		// Retried alone, it succeeds; the others are not run again.
		fail = false
		res, err = runSteps(ctx, h, []*bus.Message{msgs[2]})
		require.NoError(t, err)
		require.NoError(t, res[0])
		require.True(t, hasEffect(t, s, "evt_2"))
		require.True(t, processed(t, s, "evt_2"))
	})
}

func TestBatchHandlerAppliesDuplicatesOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		var mu sync.Mutex
		runs := map[string]int{}
		h := inbox.BatchHandler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			mu.Lock()
			runs[m.ID()]++
			mu.Unlock()
			_, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: "levqor.event.test." + m.ID(), Payload: []byte(`{}`)})
			return err
		})
		// Stripe resent evt_a after the dedupe window: two stream
		// messages with one id, in one batch.
		res, err := runSteps(ctx, h, []*bus.Message{message("evt_a", 1), message("evt_b", 2), message("evt_a", 3)})
		require.NoError(t, err)
		for _, r := range res {
			require.NoError(t, r, "a duplicate is acknowledged")
		}
		// And again in a later batch.
		res, err = runSteps(ctx, h, []*bus.Message{message("evt_b", 2), message("evt_c", 4)})
		require.NoError(t, err)
		require.NoError(t, errors.Join(res...))

		require.Equal(t, map[string]int{"evt_a": 1, "evt_b": 1, "evt_c": 1}, runs)
		out, err := s.UnpublishedOutbox(ctx, 100)
		require.NoError(t, err)
		require.Len(t, out, 3, "one effect per event")
	})
}

func TestBatchHandlerMessagesSeeEarlierMessagesOfTheirBatch(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		var seen []string
		h := inbox.BatchHandler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			d, err := tx.GetDunning(ctx, "acct")
			switch {
			case errors.Is(err, store.ErrNotFound):
				seen = append(seen, "none")
			case err != nil:
				return err
			default:
				seen = append(seen, d.InvoiceID)
			}
			now := time.Now().UTC()
			return tx.PutDunning(ctx, store.Dunning{AccountID: "acct", State: store.DunningPastDue, InvoiceID: m.ID(),
				PastDueSince: now, GraceUntil: now, EventCreated: now}, now)
		})
		res, err := runSteps(ctx, h, []*bus.Message{message("evt_1", 1), message("evt_2", 2), message("evt_3", 3)})
		require.NoError(t, err)
		require.NoError(t, errors.Join(res...))
		require.Equal(t, []string{"none", "evt_1", "evt_2"}, seen, "in stream order, each after the one before")
		d, err := s.GetDunning(ctx, "acct")
		require.NoError(t, err)
		require.Equal(t, "evt_3", d.InvoiceID)
	})
}

func TestBatchHandlerOfOneHonoursForcedReplays(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		runs := 0
		h := bus.SingleHandler(inbox.BatchHandler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			runs++
			return effect(ctx, tx, m.ID())
		}))
		forced := message("evt_1", 1)
		forced.Header.Set(bus.HeaderOriginalMsgID, "evt_1")
		forced.Header.Set(bus.HeaderMsgID, "replay:evt_1")
		forced.Header.Set(bus.HeaderReplayFor, consumer)
		forced.Header.Set(bus.HeaderReplayForce, "true")
		require.NoError(t, h(ctx, message("evt_1", 1)))
		require.NoError(t, h(ctx, message("evt_1", 1)))
		require.Equal(t, 1, runs, "a redelivery changes nothing")
		require.NoError(t, h(ctx, forced))
		require.Equal(t, 2, runs, "a forced replay runs again")
		require.NoError(t, h(ctx, forced))
		require.Equal(t, 2, runs, "once: a redelivery of the replay is a duplicate")
		forced.Header.Set(bus.HeaderReplayForce, "false")
		require.NoError(t, h(ctx, forced))
		require.Equal(t, 2, runs, "an unforced replay is a duplicate")

		boom := errors.New("stripe answered 500")
		failing := bus.SingleHandler(inbox.BatchHandler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			if err := effect(ctx, tx, m.ID()); err != nil {
				return err
			}
			return boom
		}))
		require.ErrorIs(t, failing(ctx, message("evt_9", 9)), boom)
		require.False(t, hasEffect(t, s, "evt_9"), "rolled back")
		require.False(t, processed(t, s, "evt_9"))
	})
}

// TestBatchRouteOnTheStore runs the batch route end to end: JetStream, the
// router, the inbox and the database.
func TestBatchRouteOnTheStore(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		env := bustest.Start(t)
		log, _ := test.NewNullLogger()
		fl := &failures{}
		pub := bus.NewPublisher(env.JS, env.Topo)
		var ids []string
		for i := 0; i < 40; i++ {
			id := fmt.Sprintf("evt_%02d", i)
			ids = append(ids, id)
			_, err := pub.Publish(t.Context(), env.Topo.Subject(bus.Stripe, "invoice.paid"), id, nil, []byte(`{}`))
			require.NoError(t, err)
		}
		_, err := pub.Publish(t.Context(), env.Topo.Subject(bus.Stripe, "invoice.paid"), "evt_poison", nil, []byte(`{}`))
		require.NoError(t, err)

		var calls atomic.Int32
		var lost atomic.Int32
		txh := inbox.BatchHandler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			calls.Add(1)
			if err := effect(ctx, tx, m.ID()); err != nil {
				return err
			}
			switch {
			case m.ID() == "evt_poison":
				return bus.Permanentf("not a Stripe event")
			case m.ID() == "evt_07" && m.Deliveries == 1:
				return errors.New("stripe answered 503")
			}
			return nil
		})
		// The transaction of the batch holding evt_30 is lost before it
		// commits, the first time: its context ends, so database/sql
		// rolls it back and every later statement, the commit included,
		// fails.
		h := func(ctx context.Context, msgs []*bus.Message, step bus.Step) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			return txh(ctx, msgs, func(ctx context.Context, m *bus.Message, fn bus.Handler) error {
				err := step(ctx, m, fn)
				if m.ID() == "evt_30" && lost.Add(1) == 1 {
					cancel()
				}
				return err
			})
		}
		r, err := bus.NewRouter(env.JS, bus.RouterConfig{
			Topology: env.Topo, Logger: log, Concurrency: 2, MaxDeliver: 4, RetryAttempts: 1,
			NakBaseDelay: 50 * time.Millisecond, FetchWait: 200 * time.Millisecond, Failures: fl,
			BatchSize: 16, BatchWait: 50 * time.Millisecond,
		})
		require.NoError(t, err)
		r.HandleBatch(bus.ConsumerSpec{Name: consumer, Kind: bus.Stripe, Filter: ">"}, h, bus.BatchOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })

		require.Eventually(t, func() bool {
			c, err := env.JS.Consumer(t.Context(), env.Topo.StreamName(bus.Stripe), consumer)
			if err != nil {
				return false
			}
			i, err := c.Info(t.Context())
			// Delivered first: on a busy machine a consumer just created
			// can report nothing pending before the server has counted
			// the stream's messages.
			return err == nil && i.Delivered.Stream >= 41 && i.NumPending == 0 && i.NumAckPending == 0
		}, 20*time.Second, 20*time.Millisecond, "every message acknowledged or terminated")

		for _, id := range ids {
			require.True(t, processed(t, s, id), "%s processed", id)
			require.True(t, hasEffect(t, s, id), "%s applied", id)
		}
		require.False(t, processed(t, s, "evt_poison"))
		require.False(t, hasEffect(t, s, "evt_poison"), "the poison's effects were rolled back")
		dl := env.Messages(t, bus.DLQ)
		require.Len(t, dl, 1)
		require.Equal(t, "evt_poison", dl[0].Header.Get(bus.HeaderOriginalMsgID))
		require.Equal(t, "permanent: not a Stripe event", dl[0].Header.Get(bus.HeaderDlqReason))
		require.GreaterOrEqual(t, lost.Load(), int32(2), "the lost batch ran again")
		retried := map[string]bool{}
		for _, f := range fl.all() {
			retried[f.MsgID] = true
		}
		require.False(t, retried["evt_30"], "the lost batch's messages ran again alone and committed, not handed back: %v", retried)
		require.True(t, retried["evt_07"], "the failing message was retried")
		require.Greater(t, calls.Load(), int32(len(ids)+1), "some messages ran more than once, and committed once")
	})
}

type failures struct {
	mu sync.Mutex
	fs []bus.Failure
}

func (f *failures) RecordFailure(_ context.Context, x bus.Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fs = append(f.fs, x)
	return nil
}

func (f *failures) all() []bus.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bus.Failure(nil), f.fs...)
}
