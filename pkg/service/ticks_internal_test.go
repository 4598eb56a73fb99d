package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
)

func TestTheTickWatchDegradesWhenTheSchedulerFallsSilent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	w := newTickWatch(time.Minute, clock)
	check := w.check()
	require.True(t, check.Degrades)
	require.NoError(t, check.Fn(t.Context()), "a process just started is not late")

	advance(3 * time.Minute)
	require.NoError(t, check.Fn(t.Context()), "three periods are allowed")
	advance(time.Second)
	require.EqualError(t, check.Fn(t.Context()), "no tick for 3m1s, while the most frequent job runs every 1m0s: is the scheduler running?")

	h := w.middleware("TICKS")(func(context.Context, *bus.Message) error { return nil })
	require.NoError(t, h(t.Context(), &bus.Message{Stream: "STRIPE"}))
	require.Error(t, check.Fn(t.Context()), "only ticks count")
	require.NoError(t, h(t.Context(), &bus.Message{Stream: "TICKS"}))
	require.NoError(t, check.Fn(t.Context()))
}

func TestMostFrequentJob(t *testing.T) {
	t.Parallel()
	now := time.Now()
	every, ok := scheduler.MostFrequent(scheduler.Catalog(), now)
	require.True(t, ok)
	require.Equal(t, time.Minute, every)
	jobs, _, err := scheduler.Override(scheduler.Catalog(), "housekeeping.watch=off;backup.due=off")
	require.NoError(t, err)
	every, ok = scheduler.MostFrequent(jobs, now)
	require.True(t, ok)
	require.Equal(t, 2*time.Minute, every, "support.sla_check")
	for i := range jobs {
		jobs[i].Disabled = true
	}
	_, ok = scheduler.MostFrequent(jobs, now)
	require.False(t, ok)
}
