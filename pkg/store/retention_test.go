package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// retentionFixture inserts an account with one source and returns them.
func retentionFixture(t *testing.T, s *store.Store, acc, src string) store.BackupSource {
	t.Helper()
	insertAccount(t, s, store.Account{ID: acc, Name: "N " + acc, ContactEmail: "ops@x.example", StripeCustomerID: "cus_" + acc})
	source := store.BackupSource{ID: src, AccountID: acc, Name: "db-" + src, Kind: "postgres", Schedule: "0 2 * * *", TimeZone: "Europe/London", CreatedAt: base}
	inTx(t, s, func(tx *store.Tx) error {
		ok, err := tx.InsertSource(t.Context(), source)
		require.True(t, ok)
		return err
	})
	return source
}

func inTx(t *testing.T, s *store.Store, fn func(tx *store.Tx) error) {
	t.Helper()
	require.NoError(t, s.InTx(t.Context(), fn))
}

func snap(id, acc, src string, taken time.Time, tags ...string) store.Snapshot {
	return store.Snapshot{ID: id, AccountID: acc, SourceID: src, TakenAt: taken, SizeBytes: 42, SHA256: "ab12",
		BlobKey: acc + "/" + src + "/" + id, Tags: tags, RecordedBy: "key_1"}
}

func TestSources(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		src := retentionFixture(t, s, "acc_a", "src_1")
		got, err := s.GetSource(ctx, "src_1")
		require.NoError(t, err)
		require.Equal(t, "db-src_1", got.Name)
		require.Equal(t, "Europe/London", got.TimeZone)
		require.Nil(t, got.Policy, "no policy of its own: follows the tier")
		require.Nil(t, got.BlockedSince)
		require.True(t, got.CreatedAt.Equal(base.Truncate(time.Microsecond)))

		inTx(t, s, func(tx *store.Tx) error {
			dup := src
			dup.ID = "src_2"
			ok, err := tx.InsertSource(ctx, dup)
			require.NoError(t, err)
			require.False(t, ok, "a name is unique within its account")
			require.NoError(t, tx.LockAccountForSources(ctx, "acc_a"))
			require.ErrorIs(t, tx.LockAccountForSources(ctx, "acc_nope"), store.ErrNotFound)
			n, err := tx.CountSources(ctx, "acc_a")
			require.NoError(t, err)
			require.Equal(t, 1, n)
			byName, err := tx.SourceByName(ctx, "acc_a", "db-src_1")
			require.NoError(t, err)
			require.Equal(t, "src_1", byName.ID)
			_, err = tx.SourceByName(ctx, "acc_a", "nope")
			require.ErrorIs(t, err, store.ErrNotFound)

			require.NoError(t, tx.SetSourcePolicy(ctx, store.SetSourcePolicyParams{ID: "src_1", Policy: json.RawMessage(`{"keep_daily": 3}`)}))
			locked, err := tx.LockSource(ctx, "src_1")
			require.NoError(t, err)
			require.JSONEq(t, `{"keep_daily": 3}`, string(locked.Policy))
			since := base.Add(time.Hour)
			require.NoError(t, tx.SetSourceBlocked(ctx, "src_1", &since, time.Time{}))
			require.ErrorIs(t, tx.SetSourcePolicy(ctx, store.SetSourcePolicyParams{ID: "src_nope"}), store.ErrNotFound)
			return nil
		})
		got, err = s.GetSource(ctx, "src_1")
		require.NoError(t, err)
		require.NotNil(t, got.BlockedSince)
		require.True(t, got.BlockedSince.Equal(base.Add(time.Hour).Truncate(time.Microsecond)))
		inTx(t, s, func(tx *store.Tx) error {
			require.NoError(t, tx.SetSourcePolicy(ctx, store.SetSourcePolicyParams{ID: "src_1", Policy: nil}))
			return tx.SetSourceBlocked(ctx, "src_1", nil, time.Time{})
		})
		got, err = s.GetSource(ctx, "src_1")
		require.NoError(t, err)
		require.Nil(t, got.Policy, "back to the tier's policy")
		require.Nil(t, got.BlockedSince)

		_, err = s.GetSource(ctx, "src_nope")
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestListSourcesPages(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_a", "src_0")
		insertAccount(t, s, store.Account{ID: "acc_b", Name: "B", ContactEmail: "b@b.example", StripeCustomerID: "cus_b"})
		inTx(t, s, func(tx *store.Tx) error {
			for i := 1; i <= 4; i++ {
				acc := "acc_a"
				if i%2 == 0 {
					acc = "acc_b"
				}
				_, err := tx.InsertSource(ctx, store.BackupSource{ID: fmt.Sprintf("src_%d", i), AccountID: acc, Name: fmt.Sprint(i),
					Kind: "files", Schedule: "@daily", TimeZone: "UTC", CreatedAt: base.Add(time.Duration(i) * time.Minute)})
				require.NoError(t, err)
			}
			return nil
		})
		var ids []string
		var after *store.SourceCursor
		for {
			page, err := s.ListSources(ctx, store.ListSourcesParams{Limit: 2, After: after})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			for _, p := range page {
				ids = append(ids, p.ID)
			}
			last := page[len(page)-1]
			after = &store.SourceCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		require.Equal(t, []string{"src_4", "src_3", "src_2", "src_1", "src_0"}, ids, "newest first, each once")
		onlyB, err := s.ListSources(ctx, store.ListSourcesParams{AccountID: "acc_b", Limit: 10})
		require.NoError(t, err)
		require.Len(t, onlyB, 2)
		for _, src := range onlyB {
			require.Equal(t, "acc_b", src.AccountID)
		}
	})
}

func TestSnapshotLifecycle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_a", "src_1")
		london := time.FixedZone("BST", 3600)
		taken := time.Date(2026, 10, 24, 2, 0, 0, 0, london)
		inTx(t, s, func(tx *store.Tx) error {
			for i, id := range []string{"snap_1", "snap_2", "snap_3"} {
				ok, err := tx.InsertSnapshot(ctx, snap(id, "acc_a", "src_1", taken.Add(time.Duration(i)*24*time.Hour), "daily"))
				require.NoError(t, err)
				require.True(t, ok)
			}
			ok, err := tx.InsertSnapshot(ctx, snap("snap_1", "acc_a", "src_1", taken))
			require.NoError(t, err)
			require.False(t, ok, "the same id twice")
			other := snap("snap_9", "acc_a", "src_1", taken)
			other.BlobKey = "acc_a/src_1/snap_1"
			ok, err = tx.InsertSnapshot(ctx, other)
			require.NoError(t, err)
			require.False(t, ok, "two snapshots never share a blob")
			byKey, err := tx.SnapshotByBlobKey(ctx, "acc_a/src_1/snap_1")
			require.NoError(t, err)
			require.Equal(t, "snap_1", byKey.ID)
			return nil
		})

		got, err := s.GetSnapshot(ctx, "snap_1")
		require.NoError(t, err)
		require.True(t, got.TakenAt.Equal(taken))
		_, off := got.TakenAt.Zone()
		require.Equal(t, 3600, off, "the recorded UTC offset comes back: retention reads days in it")
		require.Equal(t, []string{"daily"}, got.Tags)
		require.Equal(t, store.SnapshotActive, got.State)
		require.Nil(t, got.TrashedAt)

		all, err := s.SourceSnapshots(ctx, "src_1")
		require.NoError(t, err)
		require.Equal(t, []string{"snap_3", "snap_2", "snap_1"}, ids(all), "newest first")

		at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
		grace := at.Add(7 * 24 * time.Hour)
		inTx(t, s, func(tx *store.Tx) error {
			moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: "snap_1", From: store.SnapshotActive, To: store.SnapshotTrash, At: at, PurgeAfter: grace})
			require.NoError(t, err)
			require.True(t, moved)
			moved, err = tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: "snap_1", From: store.SnapshotActive, To: store.SnapshotTrash, At: at, PurgeAfter: grace})
			require.NoError(t, err)
			require.False(t, moved, "a repeated step changes nothing")
			_, err = tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: "snap_2", From: store.SnapshotActive, To: store.SnapshotTrash})
			require.Error(t, err, "trash needs a purge time")
			return nil
		})
		got, err = s.GetSnapshot(ctx, "snap_1")
		require.NoError(t, err)
		require.Equal(t, store.SnapshotTrash, got.State)
		require.True(t, got.TrashedAt.Equal(at))
		require.True(t, got.PurgeAfter.Equal(grace))

		active, err := s.SourceSnapshots(ctx, "src_1", store.SnapshotActive)
		require.NoError(t, err)
		require.Equal(t, []string{"snap_3", "snap_2"}, ids(active))
		trash, err := s.ListSnapshots(ctx, store.ListSnapshotsParams{AccountID: "acc_a", States: []string{store.SnapshotTrash}, Limit: 10})
		require.NoError(t, err)
		require.Equal(t, []string{"snap_1"}, ids(trash))

		inTx(t, s, func(tx *store.Tx) error {
			moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: "snap_1", From: store.SnapshotTrash, To: store.SnapshotActive})
			require.NoError(t, err)
			require.True(t, moved, "restored from the trash")
			return nil
		})
		got, err = s.GetSnapshot(ctx, "snap_1")
		require.NoError(t, err)
		require.Equal(t, store.SnapshotActive, got.State)
		require.Nil(t, got.TrashedAt)
		require.Nil(t, got.PurgeAfter)

		inTx(t, s, func(tx *store.Tx) error {
			for _, step := range []store.MoveSnapshotParams{
				{ID: "snap_2", From: store.SnapshotActive, To: store.SnapshotTrash, PurgeAfter: grace},
				{ID: "snap_2", From: store.SnapshotTrash, To: store.SnapshotPurging},
				{ID: "snap_2", From: store.SnapshotPurging, To: store.SnapshotPurged, At: grace},
			} {
				moved, err := tx.MoveSnapshot(ctx, step)
				require.NoError(t, err)
				require.True(t, moved, "%s → %s", step.From, step.To)
			}
			moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: "snap_2", From: store.SnapshotTrash, To: store.SnapshotActive})
			require.NoError(t, err)
			require.False(t, moved, "a purged snapshot cannot come back")
			return nil
		})
		got, err = s.GetSnapshot(ctx, "snap_2")
		require.NoError(t, err)
		require.Equal(t, store.SnapshotPurged, got.State)
		require.True(t, got.PurgedAt.Equal(grace))

		tallies, err := s.SnapshotTallies(ctx, "src_1")
		require.NoError(t, err)
		require.Equal(t, store.SnapshotTally{Count: 2, Bytes: 84}, tallies[store.SnapshotActive])
		require.Equal(t, store.SnapshotTally{Count: 1, Bytes: 42}, tallies[store.SnapshotPurged])
		require.Equal(t, store.SnapshotTally{}, tallies[store.SnapshotTrash], "every state is present")
	})
}

func TestListSnapshotsPages(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_a", "src_1")
		same := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		inTx(t, s, func(tx *store.Tx) error {
			for i, id := range []string{"snap_a", "snap_b", "snap_c", "snap_d", "snap_e"} {
				at := same
				if i >= 3 {
					at = same.Add(time.Duration(i) * time.Hour)
				}
				_, err := tx.InsertSnapshot(ctx, snap(id, "acc_a", "src_1", at))
				require.NoError(t, err)
			}
			return nil
		})
		var got []string
		var after *store.SnapshotCursor
		for {
			page, err := s.ListSnapshots(ctx, store.ListSnapshotsParams{SourceID: "src_1", Limit: 2, After: after})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			got = append(got, ids(page)...)
			last := page[len(page)-1]
			after = &store.SnapshotCursor{TakenAt: last.TakenAt, ID: last.ID}
		}
		require.Equal(t, []string{"snap_e", "snap_d", "snap_a", "snap_b", "snap_c"}, got, "newest first, ties by id, each once")
	})
}

func TestLegalHolds(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_a", "src_1")
		inTx(t, s, func(tx *store.Tx) error {
			_, err := tx.InsertSnapshot(ctx, snap("snap_1", "acc_a", "src_1", base))
			require.NoError(t, err)
			h := store.LegalHold{ID: "hold_1", AccountID: "acc_a", SourceID: "src_1", SnapshotID: "snap_1", Reason: "litigation 42", PlacedBy: "key_op", PlacedByOperator: true}
			ok, err := tx.InsertHold(ctx, h)
			require.NoError(t, err)
			require.True(t, ok)
			h.ID = "hold_2"
			ok, err = tx.InsertHold(ctx, h)
			require.NoError(t, err)
			require.False(t, ok, "one active hold per snapshot")
			ok, err = tx.InsertHold(ctx, store.LegalHold{ID: "hold_3", AccountID: "acc_a", SourceID: "src_1", Reason: "audit", PlacedBy: "key_1"})
			require.NoError(t, err)
			require.True(t, ok, "a source hold is another target")

			active, err := tx.ActiveHold(ctx, "snap_1")
			require.NoError(t, err)
			require.Equal(t, "hold_1", active.ID)
			require.True(t, active.PlacedByOperator)
			src, err := tx.ActiveHold(ctx, "src_1")
			require.NoError(t, err)
			require.Equal(t, "hold_3", src.ID)
			require.Empty(t, src.SnapshotID)
			return nil
		})
		holds, err := s.SourceHolds(ctx, "src_1")
		require.NoError(t, err)
		require.Len(t, holds, 2)

		inTx(t, s, func(tx *store.Tx) error {
			ok, err := tx.ReleaseHold(ctx, store.ReleaseHoldParams{ID: "hold_1", By: "key_op", Reason: "case closed"})
			require.NoError(t, err)
			require.True(t, ok)
			ok, err = tx.ReleaseHold(ctx, store.ReleaseHoldParams{ID: "hold_1", By: "key_op"})
			require.NoError(t, err)
			require.False(t, ok, "already released")
			_, err = tx.ActiveHold(ctx, "snap_1")
			require.ErrorIs(t, err, store.ErrNotFound)
			released, err := tx.GetHold(ctx, "hold_1")
			require.NoError(t, err)
			require.NotNil(t, released.ReleasedAt)
			require.Equal(t, "case closed", released.ReleaseReason)
			ok, err = tx.InsertHold(ctx, store.LegalHold{ID: "hold_4", AccountID: "acc_a", SourceID: "src_1", SnapshotID: "snap_1", Reason: "again", PlacedBy: "key_1"})
			require.NoError(t, err)
			require.True(t, ok, "a released target can be held again")
			return nil
		})
	})
}

func TestRetentionAudit(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_a", "src_1")
		inTx(t, s, func(tx *store.Tx) error {
			for i := range 5 {
				_, err := tx.AppendRetentionAudit(ctx, store.RetentionAudit{
					AccountID: "acc_a", SourceID: "src_1", SnapshotID: fmt.Sprintf("snap_%d", i%2), Action: "snapshot.trashed",
					Actor: "sweep:2026-11-01T10:00:00Z", Policy: json.RawMessage(`{"keep_daily":7}`),
					Reasons: []string{"not kept by any rule"}, Detail: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`), At: base,
				})
				require.NoError(t, err)
			}
			_, err := tx.AppendRetentionAudit(ctx, store.RetentionAudit{AccountID: "acc_a", SourceID: "src_1", Action: "x", Actor: "y", Detail: json.RawMessage(`[1]`)})
			require.Error(t, err, "detail must be an object")
			return nil
		})
		page, err := s.ListRetentionAudit(ctx, store.ListRetentionAuditParams{SourceID: "src_1", Limit: 3})
		require.NoError(t, err)
		require.Len(t, page, 3)
		require.Greater(t, page[0].ID, page[1].ID, "newest first")
		require.JSONEq(t, `{"n":4}`, string(page[0].Detail))
		require.JSONEq(t, `{"keep_daily":7}`, string(page[0].Policy))
		require.Equal(t, []string{"not kept by any rule"}, page[0].Reasons)
		require.True(t, page[0].At.Equal(base.Truncate(time.Microsecond)))
		rest, err := s.ListRetentionAudit(ctx, store.ListRetentionAuditParams{SourceID: "src_1", Limit: 10, BeforeID: page[2].ID})
		require.NoError(t, err)
		require.Len(t, rest, 2)
		one, err := s.ListRetentionAudit(ctx, store.ListRetentionAuditParams{SourceID: "src_1", SnapshotID: "snap_1", Limit: 10})
		require.NoError(t, err)
		require.Len(t, one, 2)
	})
}

func ids(snaps []store.Snapshot) []string {
	out := make([]string, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}
