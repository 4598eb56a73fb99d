package loadgen

import (
	"context"
	"time"
)

// LedgerTimes reports when events were committed to the ledger (the store's
// StripeEventsRecordedAt).
type LedgerTimes interface {
	StripeEventsRecordedAt(ctx context.Context, ids []string) (map[string]time.Time, error)
}

// EndToEnd is what happened after ingest acknowledged: how long until each
// event's effect was committed, and how fast the workers got through them.
type EndToEnd struct {
	Expected  int     `json:"expected"`
	Committed int     `json:"committed"`
	Latency   Latency `json:"latency"`
	// Throughput is events committed per second, from the first
	// acceptance to the last commit.
	Throughput float64 `json:"throughput_per_second"`
	// TimedOut is true when not every event was committed within the wait.
	TimedOut bool `json:"timed_out"`
}

// WaitCommitted polls the ledger until every accepted event is committed or
// timeout passes, then reports end-to-end latency (accepted → committed).
func WaitCommitted(ctx context.Context, ledger LedgerTimes, accepted map[string]time.Time, timeout time.Duration) (EndToEnd, error) {
	ids := make([]string, 0, len(accepted))
	first := time.Time{}
	for id, at := range accepted {
		ids = append(ids, id)
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	e := EndToEnd{Expected: len(ids)}
	committed := map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	pending := ids
	for len(pending) > 0 {
		got, err := ledger.StripeEventsRecordedAt(ctx, pending)
		if err != nil {
			return e, err
		}
		next := pending[:0:0]
		for _, id := range pending {
			if at, ok := got[id]; ok {
				committed[id] = at
			} else {
				next = append(next, id)
			}
		}
		pending = next
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			e.TimedOut = true
			break
		}
		select {
		case <-ctx.Done():
			return e, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	e.Committed = len(committed)
	lat := make([]time.Duration, 0, len(committed))
	last := time.Time{}
	for id, at := range committed {
		d := at.Sub(accepted[id])
		if d < 0 {
			// Committed before the HTTP answer reached us: the effect was
			// as fast as the acknowledgement.
			d = 0
		}
		lat = append(lat, d)
		if at.After(last) {
			last = at
		}
	}
	e.Latency = summarise(lat)
	if span := last.Sub(first); span > 0 {
		e.Throughput = float64(len(committed)) / span.Seconds()
	}
	return e, nil
}
