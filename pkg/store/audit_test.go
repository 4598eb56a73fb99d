package store_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestAudit(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		first, err := s.RecordAudit(ctx, store.AuditEntry{
			At: base, Actor: "alice", Action: "dlq.replay",
			Params:  json.RawMessage(`{"seqs":[4,7],"dry_run":false}`),
			Counts:  json.RawMessage(`{"selected":2,"replayed":1,"failed":1}`),
			Outcome: store.AuditOutcomePartial,
		})
		require.NoError(t, err)
		second, err := s.RecordAudit(ctx, store.AuditEntry{At: base.Add(time.Minute), Actor: "bob", Action: "dlq.purge", Outcome: store.AuditOutcomeOK})
		require.NoError(t, err)
		require.Greater(t, second, first)

		all, err := s.ListAudit(ctx, store.ListAuditParams{})
		require.NoError(t, err)
		require.Len(t, all, 2)
		require.Equal(t, "bob", all[0].Actor, "newest first")
		require.JSONEq(t, `{}`, string(all[0].Params), "empty params stored as an empty object")
		got := all[1]
		require.Equal(t, first, got.ID)
		require.Equal(t, base.UTC().Truncate(time.Microsecond), got.At)
		require.Equal(t, "dlq.replay", got.Action)
		require.JSONEq(t, `{"seqs":[4,7],"dry_run":false}`, string(got.Params))
		require.JSONEq(t, `{"selected":2,"replayed":1,"failed":1}`, string(got.Counts))
		require.Equal(t, store.AuditOutcomePartial, got.Outcome)

		t.Run("Filters", func(t *testing.T) {
			byAction, err := s.ListAudit(ctx, store.ListAuditParams{Action: "dlq.purge"})
			require.NoError(t, err)
			require.Len(t, byAction, 1)
			require.Equal(t, second, byAction[0].ID)
			byActor, err := s.ListAudit(ctx, store.ListAuditParams{Actor: "alice"})
			require.NoError(t, err)
			require.Len(t, byActor, 1)
			require.Equal(t, first, byActor[0].ID)
			since, err := s.ListAudit(ctx, store.ListAuditParams{Since: base.Add(30 * time.Second)})
			require.NoError(t, err)
			require.Len(t, since, 1)
			require.Equal(t, second, since[0].ID)
			limited, err := s.ListAudit(ctx, store.ListAuditParams{Limit: 1})
			require.NoError(t, err)
			require.Len(t, limited, 1)
		})

		t.Run("RejectsIncompleteEntries", func(t *testing.T) {
			_, err := s.RecordAudit(ctx, store.AuditEntry{Action: "dlq.purge"})
			require.ErrorContains(t, err, "actor and action are required")
			_, err = s.RecordAudit(ctx, store.AuditEntry{Actor: "a", Action: "x", Params: json.RawMessage(`[1]`)})
			require.ErrorContains(t, err, "params")
			_, err = s.RecordAudit(ctx, store.AuditEntry{Actor: strings.Repeat("a", store.MaxAuditFieldLength+1), Action: "x"})
			require.Error(t, err)
			n, err := s.ListAudit(ctx, store.ListAuditParams{})
			require.NoError(t, err)
			require.Len(t, n, 2, "nothing written")
		})
	})
}
