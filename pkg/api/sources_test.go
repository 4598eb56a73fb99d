package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// starterTier is what billing writes for an account on the starter tier.
var starterTier = catalog.Entitlements{Tier: "starter", StorageGB: 100, Sources: 2, SLA: "standard",
	Retention: retention.Policy{KeepDaily: 7, KeepWeekly: 4}}

// subscribe gives the account the entitlements, as billing does.
func (h *harness) subscribe(t *testing.T, acc string, ent catalog.Entitlements) {
	t.Helper()
	raw, err := json.Marshal(ent)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, h.st.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: acc, Tier: &ent.Tier, Status: store.AccountStatusActive, Entitlements: raw})
	}))
}

// runRetention starts the retention worker, with blobs in a temporary
// directory, until the test ends.
func (h *harness) runRetention(t *testing.T) {
	t.Helper()
	if h.env.Cfg.BlobDir == "" {
		h.env.Cfg.BlobDir = t.TempDir()
	}
	r, err := h.env.Router([]string{backups.WorkerName})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop")
		}
	})
}

// result requires the response to be a command that ended with status and
// decodes its result into v.
func (r response) result(t *testing.T, status int, v any) api.CommandView {
	t.Helper()
	require.Equal(t, status, r.status, string(r.body))
	c := r.command(t)
	require.Equal(t, store.CommandSucceeded, c.Status, string(r.body))
	if v != nil {
		require.NoError(t, json.Unmarshal(c.Result, v))
	}
	return c
}

// october is 02:00 BST on a day of October 2025.
func october(d int) string {
	return time.Date(2025, 10, d, 2, 0, 0, 0, time.FixedZone("", 3600)).Format(time.RFC3339)
}

// TestRetentionThroughTheWorker walks the retention API as a customer and
// an operator would, through the real worker on both databases: create a
// source, record ten daily snapshots, read the plan and why each snapshot
// is kept, hold one, sweep, find the other in the trash, restore it, and
// read the audit trail of it all.
func TestRetentionThroughTheWorker(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, options{noStripe: true})
		h.subscribe(t, h.accA, starterTier)
		h.runRetention(t)

		var src backups.SourceView
		h.do(t, http.MethodPost, "/v1/sources?wait=15s", h.keyA, map[string]string{
			"name": "orders-db", "kind": "postgres", "schedule": "0 2 * * *", "time_zone": "Europe/London",
		}).result(t, http.StatusCreated, &src)
		require.Equal(t, h.accA, src.AccountID)
		require.Equal(t, backups.OriginTier, src.PolicyOrigin)
		require.Equal(t, "starter", src.Tier)
		base := "/v1/sources/" + src.ID

		var snaps []store.Snapshot
		for d := 1; d <= 10; d++ {
			var s store.Snapshot
			h.do(t, http.MethodPost, base+"/snapshots?wait=15s", h.keyA, map[string]any{
				"taken_at": october(d), "tags": []string{"nightly"}, "content_base64": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("dump %d", d))),
			}).result(t, http.StatusCreated, &s)
			snaps = append(snaps, s)
		}
		oct2, oct3 := snaps[1].ID, snaps[2].ID

		t.Run("ListSnapshots", func(t *testing.T) {
			var l api.SnapshotList
			r := h.do(t, http.MethodGet, base+"/snapshots?limit=4", h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			r.json(t, &l)
			require.Len(t, l.Data, 4)
			require.Equal(t, snaps[9].ID, l.Data[0].ID, "newest first")
			require.NotNil(t, l.NextCursor)
			r = h.do(t, http.MethodGet, base+"/snapshots?limit=10&cursor="+*l.NextCursor, h.keyA, nil)
			r.json(t, &l)
			require.Len(t, l.Data, 6)
			require.Equal(t, snaps[0].ID, l.Data[5].ID)
			require.Nil(t, l.NextCursor)
		})

		t.Run("PlanSaysWhy", func(t *testing.T) {
			var p backups.Plan
			r := h.do(t, http.MethodPost, base+"/retention/plan", h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			r.json(t, &p)
			require.Equal(t, backups.OutcomeDelete, p.Outcome)
			require.Equal(t, backups.PlanCounts{Active: 10, Keep: 8, Trash: 2}, p.Counts)
			why := map[string][]string{}
			for _, e := range p.Snapshots {
				why[e.ID] = e.Reasons
			}
			require.Equal(t, []string{"daily snapshot", "weekly snapshot"}, why[snaps[9].ID])
			require.Equal(t, []string{"oldest weekly snapshot"}, why[snaps[0].ID])
			require.Equal(t, []string{backups.ReasonNotKept}, why[oct2])
			var trash api.SnapshotList
			h.do(t, http.MethodGet, "/v1/trash", h.keyA, nil).json(t, &trash)
			require.Empty(t, trash.Data, "a plan changes nothing")

			// Page by page, the same decisions, and the counts whole.
			var seen []backups.PlanEntry
			for offset := 0; ; {
				var page api.PlanPage
				r := h.do(t, http.MethodPost, base+"/retention/plan?limit=4&offset="+strconv.Itoa(offset), h.keyA, nil)
				require.Equal(t, http.StatusOK, r.status, string(r.body))
				r.json(t, &page)
				require.LessOrEqual(t, len(page.Snapshots), 4)
				require.Equal(t, p.Counts, page.Counts)
				seen = append(seen, page.Snapshots...)
				if page.NextOffset == nil {
					break
				}
				offset = *page.NextOffset
			}
			require.Equal(t, p.Snapshots, seen)
			r = h.do(t, http.MethodPost, base+"/retention/plan?limit=5000", h.keyA, nil)
			require.Equal(t, http.StatusBadRequest, r.status)
			require.Equal(t, "limit", r.errorOf(t)["field"])
		})

		t.Run("HoldThenSweep", func(t *testing.T) {
			var hold store.LegalHold
			h.do(t, http.MethodPost, "/v1/snapshots/"+oct2+"/hold?wait=15s", h.keyA, map[string]string{"reason": "dispute with a supplier"}).
				result(t, http.StatusCreated, &hold)
			require.Equal(t, oct2, hold.SnapshotID)

			var dry backups.SweepResult
			h.do(t, http.MethodPost, base+"/sweep?wait=15s", h.keyA, map[string]bool{"dry_run": true}).result(t, http.StatusOK, &dry)
			require.True(t, dry.DryRun)
			require.Equal(t, 1, dry.Counts.Trash, "the held one stays")

			var res backups.SweepResult
			h.do(t, http.MethodPost, base+"/sweep?wait=15s", h.keyA, nil).result(t, http.StatusOK, &res)
			require.Equal(t, []string{oct3}, res.Trashed)

			var trash api.SnapshotList
			h.do(t, http.MethodGet, "/v1/trash", h.keyA, nil).json(t, &trash)
			require.Len(t, trash.Data, 1)
			require.Equal(t, oct3, trash.Data[0].ID)
			require.NotNil(t, trash.Data[0].PurgeAfter)
			h.do(t, http.MethodGet, "/v1/trash", h.keyB, nil).json(t, &trash)
			require.Empty(t, trash.Data, "another account's trash is not B's")
		})

		t.Run("OperatorRestores", func(t *testing.T) {
			var res backups.RestoreResult
			h.do(t, http.MethodPost, "/v1/snapshots/"+oct3+"/restore-from-trash?wait=15s", h.opKey, map[string]string{"reason": "needed for the audit"}).
				result(t, http.StatusOK, &res)
			require.Equal(t, store.SnapshotActive, res.Snapshot.State)
			var v api.SnapshotView
			r := h.do(t, http.MethodGet, "/v1/snapshots/"+oct3, h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			r.json(t, &v)
			require.Equal(t, store.SnapshotActive, v.State)
			require.Len(t, v.Holds, 1)
			require.True(t, v.Holds[0].PlacedByOperator)
			r = h.do(t, http.MethodDelete, "/v1/snapshots/"+oct3+"/hold?wait=15s", h.keyA, nil)
			require.Equal(t, http.StatusForbidden, r.status, "an operator's hold is released by an operator: %s", r.body)
		})

		t.Run("PolicyAndSourceHold", func(t *testing.T) {
			var v backups.SourceView
			h.do(t, http.MethodPut, base+"/policy?wait=15s", h.keyA, map[string]any{"policy": map[string]int{"keep_daily": 3}}).result(t, http.StatusOK, &v)
			require.Equal(t, backups.OriginSource, v.PolicyOrigin)
			require.Equal(t, 3, v.EffectivePolicy.KeepDaily)
			h.do(t, http.MethodPost, base+"/hold?wait=15s", h.keyA, map[string]string{"reason": "migration"}).result(t, http.StatusCreated, nil)

			var p backups.Plan
			h.do(t, http.MethodPost, base+"/retention/plan", h.keyA, "{}").json(t, &p)
			require.Equal(t, backups.OutcomeNothing, p.Outcome, "the whole source is held")
			h.do(t, http.MethodDelete, base+"/hold?wait=15s", h.keyA, map[string]string{"reason": "migration done"}).result(t, http.StatusOK, nil)
			h.do(t, http.MethodPut, base+"/policy?wait=15s", h.keyA, map[string]any{"policy": nil}).result(t, http.StatusOK, &v)
			require.Equal(t, backups.OriginTier, v.PolicyOrigin)

			var got backups.SourceView
			r := h.do(t, http.MethodGet, base, h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			r.json(t, &got)
			require.Equal(t, store.SnapshotTally{Count: 10, Bytes: 61}, got.Snapshots[store.SnapshotActive])
			require.Len(t, got.Holds, 2, "the supplier dispute and the restore's hold")
		})

		t.Run("AuditTrail", func(t *testing.T) {
			var l api.AuditList
			r := h.do(t, http.MethodGet, base+"/audit?limit=200", h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			r.json(t, &l)
			counts := map[string]int{}
			for _, e := range l.Data {
				counts[e.Action]++
			}
			require.Equal(t, map[string]int{
				backups.AuditSourceCreated: 1, backups.AuditSnapshotRecorded: 10, backups.AuditHoldPlaced: 3, backups.AuditHoldReleased: 1,
				backups.AuditSnapshotTrashed: 1, backups.AuditSnapshotRestored: 1, backups.AuditPolicySet: 2,
			}, counts)
			for _, e := range l.Data {
				if e.Action == backups.AuditSnapshotTrashed {
					require.Equal(t, oct3, e.SnapshotID)
					require.Equal(t, "key:"+h.keyAID, e.Actor)
					require.JSONEq(t, `{"keep_daily":7,"keep_weekly":4}`, string(e.Policy))
					require.Equal(t, []string{backups.ReasonNotKept}, e.Reasons)
				}
			}
			var one api.AuditList
			h.do(t, http.MethodGet, base+"/audit?snapshot_id="+oct3, h.keyA, nil).json(t, &one)
			require.Len(t, one.Data, 4, "recorded, trashed, restored, held")
		})

		t.Run("ListSources", func(t *testing.T) {
			var l api.SourceList
			h.do(t, http.MethodGet, "/v1/sources", h.keyA, nil).json(t, &l)
			require.Len(t, l.Data, 1)
			require.Equal(t, src.ID, l.Data[0].ID)
			h.do(t, http.MethodGet, "/v1/sources", h.keyB, nil).json(t, &l)
			require.Empty(t, l.Data)
			h.do(t, http.MethodGet, "/v1/sources?account_id="+h.accA, h.opKey, nil).json(t, &l)
			require.Len(t, l.Data, 1)
		})
	})
}

// fixture creates, directly in the store, a source of account A with one
// snapshot in the trash and returns their ids.
func (h *harness) retentionFixture(t *testing.T) (src, snap string) {
	t.Helper()
	ctx := t.Context()
	src, snap = mustID(t, "src_"), mustID(t, "snap_")
	require.NoError(t, h.st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertSource(ctx, store.BackupSource{ID: src, AccountID: h.accA, Name: "Account A files", Kind: "files", Schedule: "@daily", TimeZone: "UTC"}); err != nil {
			return err
		}
		if _, err := tx.InsertSnapshot(ctx, store.Snapshot{ID: snap, AccountID: h.accA, SourceID: src, TakenAt: time.Now().Add(-time.Hour),
			SHA256: strings.Repeat("a", 64), BlobKey: h.accA + "/" + src + "/" + snap, RecordedBy: "key_x"}); err != nil {
			return err
		}
		_, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: snap, From: store.SnapshotActive, To: store.SnapshotTrash, PurgeAfter: time.Now().Add(time.Hour)})
		return err
	}))
	return src, snap
}

// TestRetentionEndpointsRefuseWrongCallers checks every retention endpoint
// as TestEveryEndpointRefusesWrongCallers does the others: 401 without a
// valid key, 403 for account keys on operator routes, and 404 for another
// account's source or snapshot, exactly as for one that does not exist.
// Nothing refused reaches JetStream.
func TestRetentionEndpointsRefuseWrongCallers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	h.subscribe(t, h.accA, starterTier)
	h.subscribe(t, h.accB, starterTier)
	src, snap := h.retentionFixture(t)
	endpoints := []endpoint{
		{method: http.MethodPost, path: "/v1/sources", body: map[string]string{"name": "n", "kind": "files", "schedule": "@daily"}},
		{method: http.MethodGet, path: "/v1/sources"},
		{method: http.MethodGet, path: "/v1/trash"},
		{method: http.MethodGet, path: "/v1/sources/" + src, tenant: true},
		{method: http.MethodGet, path: "/v1/sources/" + src + "/snapshots", tenant: true},
		{method: http.MethodPost, path: "/v1/sources/" + src + "/snapshots", body: map[string]string{"taken_at": october(1), "content_base64": "eA=="}, tenant: true},
		{method: http.MethodPut, path: "/v1/sources/" + src + "/policy", body: map[string]any{"policy": map[string]int{"keep_daily": 2}}, tenant: true},
		{method: http.MethodPost, path: "/v1/sources/" + src + "/retention/plan", tenant: true},
		{method: http.MethodPost, path: "/v1/sources/" + src + "/hold", body: map[string]string{"reason": "r"}, tenant: true},
		{method: http.MethodDelete, path: "/v1/sources/" + src + "/hold", tenant: true},
		{method: http.MethodGet, path: "/v1/sources/" + src + "/audit", tenant: true},
		{method: http.MethodPost, path: "/v1/sources/" + src + "/sweep", body: map[string]bool{"dry_run": true}, tenant: true},
		{method: http.MethodGet, path: "/v1/snapshots/" + snap, tenant: true},
		{method: http.MethodPost, path: "/v1/snapshots/" + snap + "/hold", body: map[string]string{"reason": "r"}, tenant: true},
		{method: http.MethodDelete, path: "/v1/snapshots/" + snap + "/hold", tenant: true},
		{method: http.MethodPost, path: "/v1/snapshots/" + snap + "/restore-from-trash", body: map[string]string{"reason": "r"}, operatorOnly: true},
	}
	revoked, revokedID := h.key(t, h.accA)
	_, err := h.st.RevokeAPIKey(t.Context(), revokedID, time.Time{})
	require.NoError(t, err)
	before := h.commandsPublished(t)
	admitted := uint64(0)

	for _, e := range endpoints {
		t.Run(strings.ReplaceAll(e.method+e.path, "/", "_"), func(t *testing.T) {
			for _, key := range []string{"", revoked, "lvq_" + strings.Repeat("a", 52)} {
				r := h.do(t, e.method, e.path, key, e.body)
				require.Equal(t, http.StatusUnauthorized, r.status, string(r.body))
				require.Equal(t, "unauthenticated", r.errorOf(t)["code"])
			}
			if e.operatorOnly {
				r := h.do(t, e.method, e.path, h.keyA, e.body)
				require.Equal(t, http.StatusForbidden, r.status, string(r.body))
			}
			if e.tenant {
				foreign := h.do(t, e.method, e.path, h.keyB, e.body)
				require.Equal(t, http.StatusNotFound, foreign.status, string(foreign.body))
				missing := strings.Replace(strings.Replace(e.path, src, mustID(t, "src_"), 1), snap, mustID(t, "snap_"), 1)
				absent := h.do(t, e.method, missing, h.keyB, e.body)
				require.Equal(t, http.StatusNotFound, absent.status)
				fe, ae := foreign.errorOf(t), absent.errorOf(t)
				require.Equal(t, ae["code"], fe["code"])
				require.Equal(t, ae["field"], fe["field"])
				require.NotContains(t, string(foreign.body), "Account A", "nothing of the other account leaks")

				own := h.do(t, e.method, e.path, h.keyA, e.body)
				require.Less(t, own.status, 300, "its own account's key is admitted: %s", own.body)
				if own.status == http.StatusAccepted {
					admitted++
				}
			}
			r := h.do(t, e.method, e.path, h.opKey, withAccount(e, h.accA))
			require.Less(t, r.status, 300, "operators are admitted everywhere: %s", r.body)
			if r.status == http.StatusAccepted {
				admitted++
			}
		})
	}
	require.Equal(t, before+admitted, h.commandsPublished(t), "only admitted requests became commands")
}

// withAccount adds account_id to the body of POST /v1/sources, which
// operators must give.
func withAccount(e endpoint, acc string) any {
	if e.method == http.MethodPost && e.path == "/v1/sources" {
		return map[string]string{"account_id": acc, "name": "op-made", "kind": "files", "schedule": "@daily"}
	}
	return e.body
}

// TestRetentionBadInputNamesTheField: every refusal is in the error shape
// and names the field, and none becomes a command.
func TestRetentionBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	h.subscribe(t, h.accA, starterTier)
	src, snap := h.retentionFixture(t)
	s := "/v1/sources/" + src
	ok := map[string]any{"name": "db", "kind": "postgres", "schedule": "@daily"}
	with := func(k string, v any) map[string]any {
		out := map[string]any{}
		for a, b := range ok {
			out[a] = b
		}
		out[k] = v
		return out
	}
	snapshot := func(k string, v any) map[string]any {
		out := map[string]any{"taken_at": october(3), "content_base64": "eA=="}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	before := h.commandsPublished(t)
	for name, tc := range map[string]struct {
		method, path, key string
		body              any
		status            int
		field             string
	}{
		"SourceName":           {http.MethodPost, "/v1/sources", h.keyA, with("name", ""), 422, "name"},
		"SourceKind":           {http.MethodPost, "/v1/sources", h.keyA, with("kind", "Postgres!"), 422, "kind"},
		"SourceSchedule":       {http.MethodPost, "/v1/sources", h.keyA, with("schedule", "every night"), 422, "schedule"},
		"SourceTimeZone":       {http.MethodPost, "/v1/sources", h.keyA, with("time_zone", "Local"), 422, "time_zone"},
		"SourcePolicyType":     {http.MethodPost, "/v1/sources", h.keyA, with("policy", map[string]string{"keep_daily": "seven"}), 422, "policy.keep_daily"},
		"SourcePolicyBeyond":   {http.MethodPost, "/v1/sources", h.keyA, with("policy", map[string]int{"keep_monthly": 12}), 422, "policy.keep_monthly"},
		"SourceUnknownField":   {http.MethodPost, "/v1/sources", h.keyA, map[string]string{"nmae": "db"}, 400, "nmae"},
		"SourceWrongType":      {http.MethodPost, "/v1/sources", h.keyA, map[string]int{"name": 1}, 400, "name"},
		"OperatorNeedsAccount": {http.MethodPost, "/v1/sources", h.opKey, ok, 422, "account_id"},
		"ForeignAccount":       {http.MethodPost, "/v1/sources", h.keyA, with("account_id", h.accB), 404, "account_id"},
		"SnapshotTime":         {http.MethodPost, s + "/snapshots", h.keyA, snapshot("taken_at", "yesterday"), 422, "taken_at"},
		"SnapshotNoOffset":     {http.MethodPost, s + "/snapshots", h.keyA, snapshot("taken_at", "2025-10-03T02:00:00"), 422, "taken_at"},
		"SnapshotNoContent":    {http.MethodPost, s + "/snapshots", h.keyA, snapshot("content_base64", nil), 422, "content_base64"},
		"SnapshotBadBase64":    {http.MethodPost, s + "/snapshots", h.keyA, snapshot("content_base64", "!!"), 422, "content_base64"},
		"SnapshotForeignBlob":  {http.MethodPost, s + "/snapshots", h.keyA, map[string]string{"taken_at": october(3), "blob_key": h.accB + "/x"}, 422, "blob_key"},
		"SnapshotTraversal":    {http.MethodPost, s + "/snapshots", h.keyA, map[string]string{"taken_at": october(3), "blob_key": h.accA + "/../" + h.accB + "/x"}, 422, "blob_key"},
		"SnapshotOfARepoPack":  {http.MethodPost, s + "/snapshots", h.keyA, map[string]string{"taken_at": october(3), "blob_key": h.accA + "/repo/packs/" + strings.Repeat("ab", 32)}, 422, "blob_key"},
		"SnapshotChecksum":     {http.MethodPost, s + "/snapshots", h.keyA, snapshot("sha256", "xyz"), 422, "sha256"},
		"SnapshotTag":          {http.MethodPost, s + "/snapshots", h.keyA, snapshot("tags", []string{"ok", "a,b"}), 422, "tags[1]"},
		"SnapshotID":           {http.MethodPost, s + "/snapshots", h.keyA, snapshot("id", "my-snapshot"), 422, "id"},
		"PolicyMissing":        {http.MethodPut, s + "/policy", h.keyA, map[string]any{}, 422, "policy"},
		"PolicyEmpty":          {http.MethodPut, s + "/policy", h.keyA, map[string]any{"policy": map[string]int{}}, 422, "policy"},
		"PolicyUnknownRule":    {http.MethodPut, s + "/policy", h.keyA, map[string]any{"policy": map[string]int{"keep_dayly": 1}}, 422, "policy.keep_dayly"},
		"PolicyBeyondTier":     {http.MethodPut, s + "/policy", h.keyA, map[string]any{"policy": map[string]int{"keep_hourly": 1}}, 422, "policy.keep_hourly"},
		"PlanPolicy":           {http.MethodPost, s + "/retention/plan", h.keyA, map[string]any{"policy": map[string]int{"keep_daily": -2}}, 422, "policy.keep_daily"},
		"PlanUnknownField":     {http.MethodPost, s + "/retention/plan", h.keyA, map[string]any{"now": "x"}, 400, "now"},
		"HoldReason":           {http.MethodPost, "/v1/snapshots/" + snap + "/hold", h.keyA, map[string]string{}, 422, "reason"},
		"HoldNoBody":           {http.MethodPost, s + "/hold", h.keyA, nil, 415, "Content-Type"},
		"SweepShareByAccount":  {http.MethodPost, s + "/sweep", h.keyA, map[string]float64{"max_share": 1}, 403, "max_share"},
		"SweepShareTooHigh":    {http.MethodPost, s + "/sweep", h.opKey, map[string]float64{"max_share": 2}, 422, "max_share"},
		"SweepDryRunType":      {http.MethodPost, s + "/sweep", h.keyA, map[string]string{"dry_run": "yes"}, 400, "dry_run"},
		"RestoreReason":        {http.MethodPost, "/v1/snapshots/" + snap + "/restore-from-trash", h.opKey, map[string]string{}, 422, "reason"},
		"SnapshotsState":       {http.MethodGet, s + "/snapshots?state=gone", h.keyA, nil, 400, "state"},
		"SnapshotsLimit":       {http.MethodGet, s + "/snapshots?limit=0", h.keyA, nil, 400, "limit"},
		"SnapshotsCursor":      {http.MethodGet, s + "/snapshots?cursor=bogus", h.keyA, nil, 400, "cursor"},
		"SourceID":             {http.MethodGet, "/v1/sources/acc_nope", h.keyA, nil, 400, "id"},
		"SnapshotPathID":       {http.MethodGet, "/v1/snapshots/" + src, h.keyA, nil, 400, "id"},
		"ListForeignAccount":   {http.MethodGet, "/v1/sources?account_id=" + h.accB, h.keyA, nil, 404, "account_id"},
		"TrashAccountID":       {http.MethodGet, "/v1/trash?account_id=nope", h.opKey, nil, 400, "account_id"},
		"AuditCursor":          {http.MethodGet, s + "/audit?cursor=-1", h.keyA, nil, 400, "cursor"},
		"AuditSnapshotID":      {http.MethodGet, s + "/audit?snapshot_id=x", h.keyA, nil, 400, "snapshot_id"},
		"UnknownQuery":         {http.MethodGet, s + "?verbose=1", h.keyA, nil, 400, "verbose"},
		"TooLarge": {http.MethodPost, s + "/snapshots", h.keyA, map[string]string{"taken_at": october(3),
			"content_base64": base64.StdEncoding.EncodeToString(make([]byte, api.MaxBodyBytesDefault))}, 413, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := h.do(t, tc.method, tc.path, tc.key, tc.body)
			require.Equal(t, tc.status, r.status, string(r.body))
			e := r.errorOf(t)
			require.Equal(t, tc.field, e["field"], "%s", r.body)
		})
	}
	require.Equal(t, before, h.commandsPublished(t), "no refused request became a command")
}
