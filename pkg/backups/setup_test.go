package backups_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
)

// bundle is what a worker test needs: a store, a real blob store on disk
// (wrapped so failures can be injected), the worker, and an account.
type bundle struct {
	st    *store.Store
	local *blob.Local
	// blobDir is where local keeps its blobs.
	blobDir string
	blobs   *faultyBlobs
	w       *backups.Worker
	acc     string
}

// starter is a tier like the catalog's starter: 7 daily and 4 weekly.
var starter = catalog.Entitlements{Tier: "starter", StorageGB: 100, Sources: 2, SLA: "standard",
	Retention: retention.Policy{KeepDaily: 7, KeepWeekly: 4}}

func setup(t *testing.T, st *store.Store, ent catalog.Entitlements) *bundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	local, err := blob.NewLocal(dir)
	require.NoError(t, err)
	b := &bundle{st: st, local: local, blobDir: dir, blobs: &faultyBlobs{Store: local}}
	b.w = &backups.Worker{
		Store: st, Blobs: b.blobs, Sealer: testSealer(t),
		Runtime:  &command.Runtime{Store: st, Prefix: "levqor"},
		Settings: backups.Settings{MaxShare: 0.5, TrashGrace: 7 * 24 * time.Hour},
	}
	b.acc = b.account(t, ent, "active")
	return b
}

// testMasterKey is the master key of the tests' workers.
const testMasterKey = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"

func testSealer(t testing.TB) *keys.Sealer {
	t.Helper()
	s, err := keys.ParseMasterKeys(testMasterKey)
	require.NoError(t, err)
	return s
}

// account inserts an account with the given entitlements and status.
func (b *bundle) account(t *testing.T, ent catalog.Entitlements, status string) string {
	t.Helper()
	id, err := command.NewID("acc_")
	require.NoError(t, err)
	raw := json.RawMessage("{}")
	var tier *string
	if ent.Tier != "" {
		raw, err = json.Marshal(ent)
		require.NoError(t, err)
		tier = &ent.Tier
	}
	ctx := t.Context()
	require.NoError(t, b.st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertAccount(ctx, store.Account{ID: id, Name: "Acme", ContactEmail: "ops@acme.example", StripeCustomerID: "cus_" + id[4:12]}); err != nil {
			return err
		}
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: id, Tier: tier, Status: status, Entitlements: raw})
	}))
	return id
}

// setStatus changes the account's billing status, as billing does.
func (b *bundle) setStatus(t *testing.T, status string) {
	t.Helper()
	ctx := t.Context()
	acc, err := b.st.GetAccount(ctx, b.acc)
	require.NoError(t, err)
	require.NoError(t, b.st.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: b.acc, Tier: acc.Tier, Status: status, Entitlements: acc.Entitlements})
	}))
}

// source inserts a source of the bundle's account with policy (nil: the
// tier's).
func (b *bundle) source(t *testing.T, policy *retention.Policy) string {
	t.Helper()
	id, err := command.NewID(backups.SourceIDPrefix)
	require.NoError(t, err)
	var raw json.RawMessage
	if policy != nil {
		raw, err = json.Marshal(policy)
		require.NoError(t, err)
	}
	ctx := t.Context()
	require.NoError(t, b.st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertSource(ctx, store.BackupSource{ID: id, AccountID: b.acc, Name: "db-" + id[4:10], Kind: "postgres",
			Schedule: "0 2 * * *", TimeZone: "Europe/London", Policy: raw})
		return err
	}))
	return id
}

// daily records n snapshots of src, one a day at 02:00 (+01:00), the
// newest on last, each with a real blob, and returns their ids oldest
// first.
func (b *bundle) daily(t *testing.T, src string, n int, last time.Time, tags ...string) []string {
	t.Helper()
	var ids []string
	for i := n - 1; i >= 0; i-- {
		ids = append(ids, b.snapshot(t, src, last.AddDate(0, 0, -i), tags...))
	}
	return ids
}

// snapshot records one snapshot taken at at, with a blob.
func (b *bundle) snapshot(t *testing.T, src string, at time.Time, tags ...string) string {
	t.Helper()
	ctx := t.Context()
	id, err := command.NewID(backups.SnapshotIDPrefix)
	require.NoError(t, err)
	key := b.acc + "/" + src + "/" + id
	size, sum, err := b.local.Put(ctx, key, strings.NewReader("backup of "+at.Format(time.RFC3339)))
	require.NoError(t, err)
	require.NoError(t, b.st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertSnapshot(ctx, store.Snapshot{ID: id, AccountID: b.acc, SourceID: src, TakenAt: at, SizeBytes: size,
			SHA256: sum, BlobKey: key, Tags: tags, RecordedBy: "key_agent"})
		return err
	}))
	return id
}

func (b *bundle) sweep(t *testing.T, src string, now time.Time) *backups.SweepResult {
	t.Helper()
	res, err := b.w.SweepSource(t.Context(), src, backups.SweepOptions{Now: now, Actor: "sweep:test"})
	require.NoError(t, err)
	return res
}

func (b *bundle) state(t *testing.T, id string) string {
	t.Helper()
	s, err := b.st.GetSnapshot(t.Context(), id)
	require.NoError(t, err)
	return s.State
}

// blobExists reports whether the snapshot's blob is in the blob store.
func (b *bundle) blobExists(t *testing.T, id string) bool {
	t.Helper()
	s, err := b.st.GetSnapshot(t.Context(), id)
	require.NoError(t, err)
	_, err = b.local.Stat(t.Context(), s.BlobKey)
	if errors.Is(err, blob.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	return true
}

func (b *bundle) audit(t *testing.T, src string) []store.RetentionAudit {
	t.Helper()
	a, err := b.st.ListRetentionAudit(t.Context(), store.ListRetentionAuditParams{SourceID: src, Limit: 1000})
	require.NoError(t, err)
	return a
}

// actions counts the audit entries by action.
func actions(entries []store.RetentionAudit) map[string]int {
	out := map[string]int{}
	for _, e := range entries {
		out[e.Action]++
	}
	return out
}

// hold places a hold directly in the store.
func (b *bundle) hold(t *testing.T, src, snapshotID, reason string) {
	t.Helper()
	ctx := t.Context()
	id, err := command.NewID(backups.HoldIDPrefix)
	require.NoError(t, err)
	require.NoError(t, b.st.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.InsertHold(ctx, store.LegalHold{ID: id, AccountID: b.acc, SourceID: src, SnapshotID: snapshotID, Reason: reason, PlacedBy: "key_legal"})
		require.True(t, ok)
		return err
	}))
}

// queue records a command as ingest does and returns its message as
// retention-cmd would receive it.
func (b *bundle) queue(t *testing.T, action, keyID string, params any) *bus.Message {
	t.Helper()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	env := command.Envelope{ID: id, Domain: backups.Domain, Action: action, AccountID: b.acc, KeyID: keyID, Params: raw, CreatedAt: time.Now().UTC()}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = b.st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "account:" + b.acc, AccountID: b.acc, Domain: backups.Domain, Action: action, RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	return &bus.Message{
		Subject: "levqor.cmd.retention." + action, Header: nats.Header{bus.HeaderMsgID: {id}}, Data: payload,
		Stream: "COMMANDS", Consumer: backups.ConsumerCommands, StreamSeq: 1, Deliveries: 1,
	}
}

// run carries out a command through the runtime, as retention-cmd does,
// and returns the recorded command.
func (b *bundle) run(t *testing.T, action, keyID string, params any) *store.Command {
	t.Helper()
	m := b.queue(t, action, keyID, params)
	require.NoError(t, b.w.Runtime.Handler(b.w.Handle)(t.Context(), m))
	c, err := b.st.GetCommand(t.Context(), m.ID())
	require.NoError(t, err)
	require.False(t, c.Pending(), "the command has an outcome")
	return c
}

// succeeded requires c to have succeeded and decodes its result into v.
func succeeded(t *testing.T, c *store.Command, v any) {
	t.Helper()
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	if v != nil {
		require.NoError(t, json.Unmarshal(c.Result, v))
	}
}

// failed requires c to have failed with status and field.
func failed(t *testing.T, c *store.Command, status int, field string) *store.CommandError {
	t.Helper()
	require.Equal(t, store.CommandFailed, c.Status, "result: %s", c.Result)
	require.Equal(t, status, c.HTTPStatus, "%+v", c.Error)
	require.Equal(t, field, c.Error.Field, "%+v", c.Error)
	return c.Error
}

// faultyBlobs injects failures around a real blob store's Delete: before
// the blob is gone (a crash or an outage), or after (a crash between the
// deletion and the next step).
type faultyBlobs struct {
	blob.Store
	mu              sync.Mutex
	failDelete      bool
	failAfterDelete bool
	deletes         []string
}

var errInjected = errors.New("injected failure")

func (f *faultyBlobs) Delete(ctx context.Context, key string) error {
	f.mu.Lock()
	before, after := f.failDelete, f.failAfterDelete
	f.deletes = append(f.deletes, key)
	f.mu.Unlock()
	if before {
		return fmt.Errorf("deleting %s: %w", key, errInjected)
	}
	if err := f.Store.Delete(ctx, key); err != nil {
		return err
	}
	if after {
		return fmt.Errorf("after deleting %s: %w", key, errInjected)
	}
	return nil
}

func (f *faultyBlobs) set(before, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failDelete, f.failAfterDelete = before, after
}

// london is the offset snapshots are taken in: British Summer Time.
var london = time.FixedZone("", 3600)

// day is a day's 02:00 snapshot time in October 2026.
func day(d int) time.Time { return time.Date(2026, 10, d, 2, 0, 0, 0, london) }

// RemoveAbandoned passes blob.Janitor through to the store underneath.
func (f *faultyBlobs) RemoveAbandoned(ctx context.Context, before time.Time) (int, error) {
	return f.Store.(blob.Janitor).RemoveAbandoned(ctx, before)
}
