package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
)

func TestDispatch(t *testing.T) {
	t.Parallel()
	slot := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	var ran []scheduler.Tick
	failing := errors.New("database down")
	h := scheduler.Dispatch("billing", scheduler.Jobs{
		"billing.dunning": func(_ context.Context, _ *bus.Message, tk scheduler.Tick) error {
			ran = append(ran, tk)
			return nil
		},
		"billing.reconcile": func(context.Context, *bus.Message, scheduler.Tick) error { return failing },
	})
	msg := func(data []byte) *bus.Message {
		return &bus.Message{Subject: "levqor.tick.x", Header: nats.Header{}, Data: data}
	}
	tickOf := func(job string) *bus.Message {
		b, err := json.Marshal(scheduler.Tick{Job: job, Slot: slot})
		require.NoError(t, err)
		return msg(b)
	}

	require.NoError(t, h(context.Background(), tickOf("billing.dunning")))
	require.Len(t, ran, 1, "the job's function ran")
	require.Equal(t, slot, ran[0].Slot, "with the tick's slot")

	err := h(context.Background(), tickOf("billing.reconcile"))
	require.ErrorIs(t, err, failing)
	require.False(t, bus.IsPermanent(err), "a job's own failure keeps the bus's retry rules")

	err = h(context.Background(), tickOf("support.sla_check"))
	require.True(t, bus.IsPermanent(err), "a job the worker lacks is dead-lettered: %v", err)
	require.ErrorContains(t, err, `billing has no job "support.sla_check" (it runs billing.dunning, billing.reconcile)`)

	err = h(context.Background(), msg([]byte(`{"job": "billing.dunning"}`)))
	require.True(t, bus.IsPermanent(err), "a tick without a slot is dead-lettered: %v", err)
	require.Len(t, ran, 1, "nothing ran for the bad ticks")
}
