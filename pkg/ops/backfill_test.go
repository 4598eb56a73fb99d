package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
)

// stripeMockEvent is the event stripe-mock's fixtures list for /v1/events.
const stripeMockEvent = "evt_1Pgc76B7WZ01zgkWwyRHS12y"

func TestBackfillAgainstStripeMockPublishesOnlyUnseenEvents(t *testing.T) {
	t.Parallel()
	url := stripemock.Start(t)
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{Stripe: ops.StripeAPI{BaseURL: url, SecretKey: stripemock.TestKey}, BusKey: testBusKey(t)})
		ctx := t.Context()
		since := time.Now().Add(-7 * 24 * time.Hour)

		dry, err := b.ops.Backfill(ctx, "erin", ops.BackfillRequest{Since: since, DryRun: true}, nil)
		require.NoError(t, err)
		require.Equal(t, 1, dry.Listed)
		require.Equal(t, 1, dry.Published)
		require.Equal(t, ops.BackfillWouldPublish, dry.Items[0].Status)
		require.Zero(t, b.nats.StreamMsgs(t, bus.Stripe), "a dry run publishes nothing")

		res, err := b.ops.Backfill(ctx, "erin", ops.BackfillRequest{Since: since}, nil)
		require.NoError(t, err)
		require.Equal(t, [3]int{1, 1, 0}, [3]int{res.Listed, res.Published, res.Recorded})
		require.Equal(t, stripeMockEvent, res.Items[0].ID)
		require.Equal(t, "plan.created", res.Items[0].Type)
		msgs := b.nats.Messages(t, bus.Stripe)
		require.Len(t, msgs, 1)
		require.Equal(t, "levqor.stripe.plan.created", msgs[0].Subject)
		require.Equal(t, stripeMockEvent, msgs[0].Header.Get(bus.HeaderMsgID))
		require.True(t, strings.HasPrefix(msgs[0].Header.Get(bus.HeaderCorrelationID), "backfill-"))
		require.NoError(t, testBusKey(t).CheckMessage(msgs[0].Header.Get(keys.HeaderBusProof), msgs[0].Data), "proved as ingest proves a webhook")
		var env struct{ ID, Object, Type string }
		require.NoError(t, json.Unmarshal(msgs[0].Data, &env))
		require.Equal(t, stripeMockEvent, env.ID)

		// Not recorded yet, but JetStream has it: not published twice.
		again, err := b.ops.Backfill(ctx, "erin", ops.BackfillRequest{Since: since}, nil)
		require.NoError(t, err)
		require.Equal(t, [3]int{0, 1, 0}, [3]int{again.Published, again.InStream, again.Recorded})
		require.EqualValues(t, 1, b.nats.StreamMsgs(t, bus.Stripe))

		// The billing worker records it in the ledger.
		runBilling(t, b, st)
		require.Eventually(t, func() bool {
			_, err := st.GetStripeEvent(ctx, stripeMockEvent)
			return err == nil
		}, 15*time.Second, 20*time.Millisecond)
		seen, err := b.ops.Backfill(ctx, "erin", ops.BackfillRequest{Since: since}, nil)
		require.NoError(t, err)
		require.Equal(t, [3]int{1, 0, 1}, [3]int{seen.Listed, seen.Published, seen.Recorded})
		require.Empty(t, seen.Items)

		entries := b.audit(ops.ActionStripeBackfill)
		require.Len(t, entries, 4)
		require.JSONEq(t, `{"listed":1,"recorded":1,"published":0,"in_stream":0,"invalid":0,"failed":0}`, string(entries[0].Counts))
	})
}

// runBilling runs the real billing worker, as `levqor workers` builds it.
func runBilling(t *testing.T, b *bundle, st *store.Store) {
	t.Helper()
	cfg, err := config.FromEnv(func(string) string { return "" })
	require.NoError(t, err)
	cfg.Topology = b.nats.Topo
	cfg.BusKey = strings.Repeat("ab", 32) // billing checks the backfill's proof
	env := &service.Env{Cfg: cfg, Log: quietLogger(t), Reg: prometheus.NewRegistry(), NC: b.nats.NC, JS: b.nats.JS, Store: st}
	r, err := env.Router([]string{"billing"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// stripeLike answers GET /v1/events like Stripe does, newest first in
// pages with has_more and starting_after. stripe-mock always answers a
// single page, so pagination and the created filter are checked here.
type stripeLike struct {
	t      *testing.T
	events [][]byte // newest first
	mu     sync.Mutex
	calls  []string
}

func (s *stripeLike) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls = append(s.calls, r.URL.RawQuery)
	s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer sk_test_paging" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`))
		return
	}
	q := r.URL.Query()
	gte, err := strconv.ParseInt(q.Get("created[gte]"), 10, 64)
	require.NoError(s.t, err)
	limit, err := strconv.Atoi(q.Get("limit"))
	require.NoError(s.t, err)
	start := 0
	if after := q.Get("starting_after"); after != "" {
		for i, e := range s.events {
			var env struct{ ID string }
			require.NoError(s.t, json.Unmarshal(e, &env))
			if env.ID == after {
				start = i + 1
			}
		}
	}
	var page []json.RawMessage
	i := start
	for ; i < len(s.events) && len(page) < limit; i++ {
		var env struct{ Created int64 }
		require.NoError(s.t, json.Unmarshal(s.events[i], &env))
		if env.Created >= gte {
			page = append(page, s.events[i])
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": page, "has_more": i < len(s.events)})
}

func TestBackfillPagesThroughEveryEventAndSkipsTheLedger(t *testing.T) {
	t.Parallel()
	st := storeSQLite(t)
	now := time.Now()
	api := &stripeLike{t: t}
	var ids []string
	for i := range 250 { // three pages
		id := fmt.Sprintf("evt_page%03d", i)
		ev, err := stripesim.NewEvent("invoice.paid", stripesim.EventOptions{ID: id, Created: now.Add(-time.Duration(i) * time.Minute)})
		require.NoError(t, err)
		api.events = append(api.events, ev)
		ids = append(ids, id)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := setup(t, st, ops.Settings{Stripe: ops.StripeAPI{BaseURL: srv.URL, SecretKey: "sk_test_paging"}, BusKey: testBusKey(t)})
	ctx := t.Context()
	// Every tenth event reached the ledger through the webhook.
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		for i := 0; i < len(ids); i += 10 {
			if _, err := tx.InsertStripeEvent(ctx, store.StripeEvent{ID: ids[i], Type: "invoice.paid", Payload: api.events[i]}); err != nil {
				return err
			}
		}
		return nil
	}))

	var last [2]int
	res, err := b.ops.Backfill(ctx, "frank", ops.BackfillRequest{Since: now.Add(-60 * 24 * time.Hour)}, func(done, total int) { last = [2]int{done, total} })
	require.NoError(t, err)
	require.True(t, res.Clamped, "Stripe keeps 30 days")
	require.WithinDuration(t, now.Add(-ops.StripeEventRetention), res.Since, 5*time.Second)
	require.Equal(t, [4]int{250, 25, 225, 0}, [4]int{res.Listed, res.Recorded, res.Published, res.Failed})
	require.Equal(t, [2]int{250, 250}, last)
	require.Len(t, api.calls, 3)
	require.Contains(t, api.calls[1], "starting_after=evt_page099")
	require.Contains(t, api.calls[0], "created%5Bgte%5D="+strconv.FormatInt(res.Since.Unix(), 10))

	msgs := b.nats.Messages(t, bus.Stripe)
	require.Len(t, msgs, 225)
	require.Equal(t, "evt_page249", msgs[0].Header.Get(bus.HeaderMsgID), "oldest first")
	require.Equal(t, "evt_page001", msgs[224].Header.Get(bus.HeaderMsgID))
	for _, m := range msgs {
		require.NotEqual(t, "evt_page010", m.Header.Get(bus.HeaderMsgID), "recorded events are not published")
	}

	t.Run("BadKeyIsAClearError", func(t *testing.T) {
		bad := setup(t, storeSQLite(t), ops.Settings{Stripe: ops.StripeAPI{BaseURL: srv.URL, SecretKey: "sk_test_wrong"}, BusKey: testBusKey(t)})
		_, err := bad.ops.Backfill(ctx, "frank", ops.BackfillRequest{Since: now.Add(-time.Hour)}, nil)
		require.ErrorContains(t, err, "401 Invalid API Key provided")
		require.NotContains(t, err.Error(), "sk_test_wrong", "keys never appear in errors")
		require.Zero(t, bad.nats.StreamMsgs(t, bus.Stripe))
	})
	t.Run("NoKeyNamesTheVariable", func(t *testing.T) {
		none := setup(t, storeSQLite(t), ops.Settings{Stripe: ops.StripeAPI{BaseURL: srv.URL}})
		_, err := none.ops.Backfill(ctx, "frank", ops.BackfillRequest{Since: now.Add(-time.Hour)}, nil)
		require.ErrorContains(t, err, "STRIPE_API_KEY")
	})
}

func testBusKey(t *testing.T) *keys.BusKey {
	t.Helper()
	k, err := keys.ParseBusKey(strings.Repeat("ab", 32))
	require.NoError(t, err)
	return k
}
