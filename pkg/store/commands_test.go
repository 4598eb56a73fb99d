package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func newCommand(id, scope, key, hash string) store.Command {
	return store.Command{
		ID: id, Scope: scope, Domain: "accounts", Action: "create",
		IdempotencyKey: key, RequestHash: hash, Payload: []byte(`{"id":"` + id + `"}`), CreatedAt: base,
	}
}

func complete(t *testing.T, s *store.Store, o store.CommandOutcome) {
	t.Helper()
	require.NoError(t, s.InTx(t.Context(), func(tx *store.Tx) error { return tx.CompleteCommand(t.Context(), o) }))
}

func TestCommandsIdempotencyKey(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		c, created, err := s.CreateCommand(ctx, newCommand("cmd_1", "account:acc_a", "k1", "h1"))
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, store.CommandQueued, c.Status)

		again, created, err := s.CreateCommand(ctx, newCommand("cmd_2", "account:acc_a", "k1", "h-other"))
		require.NoError(t, err)
		require.False(t, created, "the key was used before by this scope")
		require.Equal(t, "cmd_1", again.ID)
		require.Equal(t, "h1", again.RequestHash, "the caller compares hashes")
		_, err = s.GetCommand(ctx, "cmd_2")
		require.ErrorIs(t, err, store.ErrNotFound, "nothing written for the repeat")

		other, created, err := s.CreateCommand(ctx, newCommand("cmd_3", "account:acc_b", "k1", "h1"))
		require.NoError(t, err)
		require.True(t, created, "another account's key space is its own")
		require.Equal(t, "cmd_3", other.ID)

		for _, id := range []string{"cmd_4", "cmd_5"} {
			_, created, err := s.CreateCommand(ctx, newCommand(id, "account:acc_a", "", "h1"))
			require.NoError(t, err)
			require.True(t, created, "commands without a key never collide")
		}
	})
}

func TestCommandLifecycle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		get := func(id string) *store.Command {
			c, err := s.GetCommand(ctx, id)
			require.NoError(t, err)
			return c
		}

		t.Run("RunningThenSucceeded", func(t *testing.T) {
			_, _, err := s.CreateCommand(ctx, newCommand("cmd_ok", "operator", "", "h"))
			require.NoError(t, err)
			changed, err := s.MarkCommandRunning(ctx, "cmd_ok", time.Time{})
			require.NoError(t, err)
			require.True(t, changed)
			require.Equal(t, store.CommandRunning, get("cmd_ok").Status)
			require.True(t, get("cmd_ok").Pending())

			complete(t, s, store.CommandOutcome{ID: "cmd_ok", Status: store.CommandSucceeded, HTTPStatus: 201, Result: json.RawMessage(`{"id":"acc_x"}`)})
			c := get("cmd_ok")
			require.Equal(t, store.CommandSucceeded, c.Status)
			require.Equal(t, 201, c.HTTPStatus)
			require.JSONEq(t, `{"id":"acc_x"}`, string(c.Result))
			require.Nil(t, c.Error)
			require.False(t, c.Pending())

			changed, err = s.MarkCommandRunning(ctx, "cmd_ok", time.Time{})
			require.NoError(t, err)
			require.False(t, changed, "a committed outcome is never undone")
			changed, err = s.FailPendingCommand(ctx, store.CommandOutcome{ID: "cmd_ok", Status: store.CommandFailed, HTTPStatus: 503,
				Error: &store.CommandError{Code: store.CommandErrorDeadLettered, Message: "x"}})
			require.NoError(t, err)
			require.False(t, changed)
			require.Equal(t, store.CommandSucceeded, get("cmd_ok").Status)
		})

		t.Run("FailedByHandlerStaysFailed", func(t *testing.T) {
			_, _, err := s.CreateCommand(ctx, newCommand("cmd_bad", "operator", "", "h"))
			require.NoError(t, err)
			complete(t, s, store.CommandOutcome{ID: "cmd_bad", Status: store.CommandFailed, HTTPStatus: 422,
				Error: &store.CommandError{Code: "invalid", Message: "bad email", Field: "contact_email"}})
			c := get("cmd_bad")
			require.Equal(t, store.CommandFailed, c.Status)
			require.Equal(t, 422, c.HTTPStatus)
			require.Equal(t, &store.CommandError{Code: "invalid", Message: "bad email", Field: "contact_email"}, c.Error)
			require.Nil(t, c.Result)
			changed, err := s.MarkCommandRunning(ctx, "cmd_bad", time.Time{})
			require.NoError(t, err)
			require.False(t, changed)
			requeued, err := s.RequeueCommand(ctx, "cmd_bad", time.Time{})
			require.NoError(t, err)
			require.False(t, requeued)
		})

		t.Run("UnpublishedCanBeRequeued", func(t *testing.T) {
			_, _, err := s.CreateCommand(ctx, newCommand("cmd_pub", "operator", "", "h"))
			require.NoError(t, err)
			failed, err := s.FailUnpublishedCommand(ctx, "cmd_pub", time.Time{})
			require.NoError(t, err)
			require.True(t, failed)
			c := get("cmd_pub")
			require.Equal(t, store.CommandFailed, c.Status)
			require.Equal(t, 503, c.HTTPStatus)
			require.Equal(t, store.CommandErrorPublishFailed, c.Error.Code)

			requeued, err := s.RequeueCommand(ctx, "cmd_pub", time.Time{})
			require.NoError(t, err)
			require.True(t, requeued)
			c = get("cmd_pub")
			require.Equal(t, store.CommandQueued, c.Status)
			require.Nil(t, c.Error)
			require.Zero(t, c.HTTPStatus)
		})

		t.Run("PublishFailureNeverOverridesAWorker", func(t *testing.T) {
			_, _, err := s.CreateCommand(ctx, newCommand("cmd_race", "operator", "", "h"))
			require.NoError(t, err)
			_, err = s.MarkCommandRunning(ctx, "cmd_race", time.Time{})
			require.NoError(t, err)
			failed, err := s.FailUnpublishedCommand(ctx, "cmd_race", time.Time{})
			require.NoError(t, err)
			require.False(t, failed, "the publish reached JetStream after all: a worker has it")
			require.Equal(t, store.CommandRunning, get("cmd_race").Status)
		})

		t.Run("DeadLetteredCanRunAgainOnReplay", func(t *testing.T) {
			_, _, err := s.CreateCommand(ctx, newCommand("cmd_dlq", "operator", "", "h"))
			require.NoError(t, err)
			_, err = s.MarkCommandRunning(ctx, "cmd_dlq", time.Time{})
			require.NoError(t, err)
			failed, err := s.FailPendingCommand(ctx, store.CommandOutcome{ID: "cmd_dlq", Status: store.CommandFailed, HTTPStatus: 503,
				Error: &store.CommandError{Code: store.CommandErrorDeadLettered, Message: "operators notified"}})
			require.NoError(t, err)
			require.True(t, failed)
			require.Equal(t, store.CommandFailed, get("cmd_dlq").Status)
			changed, err := s.MarkCommandRunning(ctx, "cmd_dlq", time.Time{})
			require.NoError(t, err)
			require.True(t, changed, "a replayed dead letter runs again")
		})

		t.Run("RejectsIncoherentOutcomes", func(t *testing.T) {
			_, _, err := s.CreateCommand(ctx, newCommand("cmd_x", "operator", "", "h"))
			require.NoError(t, err)
			err = s.InTx(ctx, func(tx *store.Tx) error {
				return tx.CompleteCommand(ctx, store.CommandOutcome{ID: "cmd_x", Status: store.CommandFailed, HTTPStatus: 422})
			})
			require.Error(t, err, "a failure needs an error code")
			err = s.InTx(ctx, func(tx *store.Tx) error {
				return tx.CompleteCommand(ctx, store.CommandOutcome{ID: "cmd_x", Status: store.CommandQueued, HTTPStatus: 200})
			})
			require.Error(t, err)
			err = s.InTx(ctx, func(tx *store.Tx) error {
				return tx.CompleteCommand(ctx, store.CommandOutcome{ID: "cmd_none", Status: store.CommandSucceeded, HTTPStatus: 200})
			})
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	})
}

func TestPruneCommands(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		for _, id := range []string{"cmd_done_old", "cmd_failed_old", "cmd_pending_old", "cmd_done_new"} {
			_, _, err := s.CreateCommand(ctx, newCommand(id, "account:acc_a", id, "h"))
			require.NoError(t, err)
		}
		old, recent := base.Add(time.Hour), base.Add(48*time.Hour)
		complete(t, s, store.CommandOutcome{ID: "cmd_done_old", Status: store.CommandSucceeded, HTTPStatus: 200, Result: []byte(`{}`), At: old})
		_, err := s.FailPendingCommand(ctx, store.CommandOutcome{ID: "cmd_failed_old", Status: store.CommandFailed, HTTPStatus: 422,
			Error: &store.CommandError{Code: "invalid", Message: "no"}, At: old})
		require.NoError(t, err)
		complete(t, s, store.CommandOutcome{ID: "cmd_done_new", Status: store.CommandSucceeded, HTTPStatus: 200, Result: []byte(`{}`), At: recent})

		n, err := s.PruneCommands(ctx, base.Add(24*time.Hour))
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "the two commands that finished before the cutoff")
		for _, id := range []string{"cmd_done_old", "cmd_failed_old"} {
			_, err := s.GetCommand(ctx, id)
			require.ErrorIs(t, err, store.ErrNotFound, id)
		}
		for _, id := range []string{"cmd_pending_old", "cmd_done_new"} {
			_, err := s.GetCommand(ctx, id)
			require.NoError(t, err, "%s stays: pending commands are never pruned, recent ones are kept", id)
		}
		_, created, err := s.CreateCommand(ctx, newCommand("cmd_again", "account:acc_a", "cmd_done_old", "h"))
		require.NoError(t, err)
		require.True(t, created, "a pruned command's idempotency key is free again")
	})
}
