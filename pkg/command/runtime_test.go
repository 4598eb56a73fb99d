package command_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestOnlyRecordedCommandsRun: a command's authority is the row the API
// wrote. A message naming no recorded command, or differing from the
// recorded one (here: claiming the operator flag), is refused for good
// without running; the recorded message runs.
func TestOnlyRecordedCommandsRun(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	envelope := func(params string) []byte {
		b, err := json.Marshal(command.Envelope{ID: id, Domain: "backup", Action: "place_hold", AccountID: "acc_1", KeyID: "key_1",
			Params: json.RawMessage(params), CreatedAt: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)})
		require.NoError(t, err)
		return b
	}
	recordedPayload := envelope(`{"by_operator":false}`)
	var ran int
	rt := &command.Runtime{Store: st}
	h := rt.Handler(func(context.Context, *command.Envelope) (command.Effect, error) {
		ran++
		return func(context.Context, *store.Tx) (command.Outcome, error) { return command.Outcome{}, nil }, nil
	})
	deliver := func(data []byte) error {
		return h(ctx, &bus.Message{Subject: "levqor.cmd.backup.place_hold", Header: nats.Header{bus.HeaderMsgID: {id}}, Data: data,
			Stream: "COMMANDS", Consumer: "backup-cmd", StreamSeq: 1, Deliveries: 1})
	}

	err = deliver(recordedPayload)
	require.True(t, bus.IsPermanent(err), "never recorded: %v", err)
	require.ErrorContains(t, err, command.ForgedReason)
	require.Zero(t, ran)

	_, _, err = st.CreateCommand(ctx, store.Command{ID: id, Scope: "account:acc_1", AccountID: "acc_1", Domain: "backup", Action: "place_hold",
		RequestHash: "h", Payload: recordedPayload})
	require.NoError(t, err)
	err = deliver(envelope(`{"by_operator":true}`))
	require.True(t, bus.IsPermanent(err), "tampered: %v", err)
	require.ErrorContains(t, err, "differs from command "+id+" as recorded")
	require.Zero(t, ran)

	require.NoError(t, deliver(recordedPayload))
	require.Equal(t, 1, ran, "the recorded command runs")

	// A command of an erased account (erasure blanks its payload) is
	// failed as such, not taken for a forgery.
	erased, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	_, _, err = st.CreateCommand(ctx, store.Command{ID: erased, Scope: "account:acc_1", AccountID: "acc_1", Domain: "backup", Action: "place_hold",
		RequestHash: "h", Payload: []byte("{}")})
	require.NoError(t, err)
	late, err := json.Marshal(command.Envelope{ID: erased, Domain: "backup", Action: "place_hold", AccountID: "acc_1", Params: json.RawMessage(`{}`)})
	require.NoError(t, err)
	err = h(ctx, &bus.Message{Subject: "levqor.cmd.backup.place_hold", Header: nats.Header{bus.HeaderMsgID: {erased}}, Data: late,
		Stream: "COMMANDS", Consumer: "backup-cmd", StreamSeq: 2, Deliveries: 1})
	require.True(t, bus.IsPermanent(err))
	require.ErrorContains(t, err, "erased account")
	require.NotContains(t, err.Error(), command.ForgedReason, "its dead letter fails the command")
	cmd, err := st.GetCommand(ctx, id)
	require.NoError(t, err)
	require.Equal(t, store.CommandSucceeded, cmd.Status)
}

// TestAForgedDeadLetterFailsNoCommand: the dead letter of a forged message
// naming a real command leaves that command alone; a real command's dead
// letter marks it failed.
func TestAForgedDeadLetterFailsNoCommand(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	rt := &command.Runtime{Store: st}
	_, h := rt.DeadLetters("backup-dlq", "backup-cmd")
	dead := func(id, reason string) {
		require.NoError(t, h(ctx, &bus.Message{Subject: "levqor.dlq.backup-cmd", Data: []byte("{}"),
			Header: nats.Header{bus.HeaderOriginalMsgID: {id}, bus.HeaderDlqReason: {reason}}}))
	}
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	_, _, err = st.CreateCommand(ctx, store.Command{ID: id, Scope: "account:acc_1", AccountID: "acc_1", Domain: "backup", Action: "run",
		RequestHash: "h", Payload: []byte("{}")})
	require.NoError(t, err)

	dead(id, "permanent: "+command.ForgedReason+": the message differs from command "+id+" as recorded")
	cmd, err := st.GetCommand(ctx, id)
	require.NoError(t, err)
	require.Equal(t, store.CommandQueued, cmd.Status, "a forgery decides nothing about the real command")

	dead(id, "failed 5 deliveries, last error: database unavailable")
	cmd, err = st.GetCommand(ctx, id)
	require.NoError(t, err)
	require.Equal(t, store.CommandFailed, cmd.Status)
}
