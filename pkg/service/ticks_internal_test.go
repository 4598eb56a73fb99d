package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/scheduler"
)

func TestTheTickWatchDegradesWhenTheSchedulerFallsSilent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var last time.Time // the TICKS stream is empty
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tick := func() { mu.Lock(); last = now; mu.Unlock() }
	w := &tickWatch{every: time.Minute, now: clock, started: clock(), lastTick: func(context.Context) (time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		return last, nil
	}}
	check := w.check()
	require.True(t, check.Degrades)
	require.NoError(t, check.Fn(t.Context()), "a process just started is not late")

	advance(3 * time.Minute)
	require.NoError(t, check.Fn(t.Context()), "three periods are allowed")
	advance(time.Second)
	require.EqualError(t, check.Fn(t.Context()), "no tick for 3m1s, while the most frequent job runs every 1m0s: is the scheduler running?")

	tick()
	require.NoError(t, check.Fn(t.Context()), "a tick in the stream, whoever consumed it")
	advance(3*time.Minute + time.Second)
	require.Error(t, check.Fn(t.Context()))

	w.lastTick = func(context.Context) (time.Time, error) { return time.Time{}, errors.New("nats: timeout") }
	require.ErrorContains(t, check.Fn(t.Context()), "reading the TICKS stream")
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
