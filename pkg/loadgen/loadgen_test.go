package loadgen_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/levqor/levqor/pkg/loadgen"
)

// fakeIngest verifies signatures like ingest and remembers what it saw.
type fakeIngest struct {
	mu    sync.Mutex
	seen  map[string]int
	order []string
	bad   int
}

func (f *fakeIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if err := webhook.ValidatePayload(b, r.Header.Get("Stripe-Signature"), "whsec_load"); err != nil {
		f.mu.Lock()
		f.bad++
		f.mu.Unlock()
		w.WriteHeader(400)
		return
	}
	var e struct {
		ID, Type string
		Data     struct{ Object struct{ Customer string } }
	}
	_ = json.Unmarshal(b, &e)
	f.mu.Lock()
	f.seen[e.ID]++
	dup := f.seen[e.ID] > 1
	f.order = append(f.order, e.Type)
	f.mu.Unlock()
	if dup {
		_, _ = w.Write([]byte(`{"received":true,"duplicate":true}`))
		return
	}
	_, _ = w.Write([]byte(`{"received":true,"duplicate":false}`))
}

func TestRunSendsSignedEventsWithDuplicates(t *testing.T) {
	t.Parallel()
	f := &fakeIngest{seen: map[string]int{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.URL, Secret: "whsec_load", Connections: 4, Count: 400, Accounts: 10,
		Duplicates: 0.2, OutOfOrder: 0.2, Seed: 7,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, 400, rep.Sent)
	require.Equal(t, 400, rep.Accepted)
	require.Equal(t, 400, rep.Status["200"])
	require.Zero(t, f.bad, "every event correctly signed")
	require.InDelta(t, 80, rep.Duplicates, 40, "about a fifth resent")
	require.Equal(t, len(f.seen), len(rep.Unique), "unique ids as the server saw them")
	require.Greater(t, rep.Latency.Max, time.Duration(0))
	require.LessOrEqual(t, rep.Latency.P50, rep.Latency.P99)
}

func TestRunHoldsAFixedRate(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&fakeIngest{seen: map[string]int{}})
	defer srv.Close()
	start := time.Now()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.URL, Secret: "whsec_load", Connections: 2, Count: 50, Accounts: 3, Rate: 100,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, 50, rep.Accepted)
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "50 requests at 100/s take about half a second")
}

func TestValidateNamesTheFlag(t *testing.T) {
	t.Parallel()
	_, err := loadgen.Run(context.Background(), loadgen.Config{URL: "http://x", Secret: "s", Connections: 1, Accounts: 1}, nil)
	require.ErrorContains(t, err, "--count or --duration")
	_, err = loadgen.Run(context.Background(), loadgen.Config{URL: "http://x", Secret: "s", Connections: 1, Accounts: 1, Count: 1, Mix: map[string]float64{"refund": 1}}, nil)
	require.ErrorContains(t, err, "--mix")
}

type ledger map[string]time.Time

func (l ledger) StripeEventsRecordedAt(_ context.Context, ids []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, id := range ids {
		if at, ok := l[id]; ok {
			out[id] = at
		}
	}
	return out, nil
}

func TestWaitCommittedMeasuresAcceptedToCommitted(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	accepted := map[string]time.Time{"a": t0, "b": t0.Add(time.Second)}
	e, err := loadgen.WaitCommitted(context.Background(), ledger{"a": t0.Add(10 * time.Millisecond), "b": t0.Add(time.Second + 30*time.Millisecond)}, accepted, time.Second)
	require.NoError(t, err)
	require.Equal(t, 2, e.Committed)
	require.False(t, e.TimedOut)
	require.Equal(t, 30*time.Millisecond, e.Latency.Max)
	e, err = loadgen.WaitCommitted(context.Background(), ledger{"a": t0}, accepted, 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, e.TimedOut, "an event never committed is reported, not waited for forever")
	require.Equal(t, 1, e.Committed)
}

func TestRunPreparesEventsBeforeTheClock(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ prepare, want int }{
		"All":     {0, 300},
		"Some":    {120, 120},
		"None":    {-1, 0},
		"Clamped": {1000, 300},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &fakeIngest{seen: map[string]int{}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			rep, err := loadgen.Run(context.Background(), loadgen.Config{
				URL: srv.URL, Secret: "whsec_load", Connections: 8, Count: 300, Accounts: 20,
				Duplicates: 0.1, OutOfOrder: 0.1, Seed: 11, Prepare: tc.prepare,
			}, nil)
			require.NoError(t, err)
			require.Equal(t, tc.want, rep.Prepared)
			require.Equal(t, 300, rep.Accepted)
			require.Zero(t, f.bad, "prepared and live events are all correctly signed")
			require.Equal(t, len(f.seen), len(rep.Unique))
			require.Greater(t, rep.CPUSeconds, 0.0, "the load generator reports its own CPU time")
		})
	}
}

func TestPreparedRunSendsTheSameEventsAsALiveOne(t *testing.T) {
	t.Parallel()
	run := func(prepare int) map[string]int {
		f := &fakeIngest{seen: map[string]int{}}
		srv := httptest.NewServer(f)
		defer srv.Close()
		_, err := loadgen.Run(context.Background(), loadgen.Config{
			URL: srv.URL, Secret: "whsec_load", Connections: 1, Count: 200, Accounts: 5,
			Duplicates: 0.2, OutOfOrder: 0.2, Seed: 42, Prepare: prepare,
		}, nil)
		require.NoError(t, err)
		return f.seen
	}
	require.Equal(t, run(-1), run(0), "preparing changes when events are built, not which")
}
