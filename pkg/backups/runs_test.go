package backups_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// runner is an end-to-end backup setup: the worker's consumers on an
// embedded NATS server, a real blob store on disk behind a wrapper that
// can fail Put, and an allow-listed directory for sources and restores.
type runner struct {
	*bundle
	env   *bustest.Env
	pub   *bus.Publisher
	root  string
	puts  *failingPuts
	logs  *bytes.Buffer
	logMu *sync.Mutex
	// deliveries is the highest delivery count seen of each message id
	// on backup-cmd.
	deliveries sync.Map
}

// pro has room for a few sources and 1 GB.
var pro = catalog.Entitlements{Tier: "growth", StorageGB: 1, Sources: 10, SLA: "business",
	Retention: retention.Policy{KeepDaily: 7}}

func startRunner(t *testing.T, st *store.Store, tune func(*backups.Settings)) *runner {
	t.Helper()
	b := setup(t, st, pro)
	root, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	env := bustest.Start(t)
	puts := &failingPuts{Store: b.blobs}
	logs, mu := &bytes.Buffer{}, &sync.Mutex{}
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(lockedWriter{w: logs, mu: mu})
	set := backups.Settings{MaxShare: 0.5, TrashGrace: 7 * 24 * time.Hour, AllowedPaths: []string{root},
		ProgressEvery: 20 * time.Millisecond, BusyRetry: 300 * time.Millisecond}
	if tune != nil {
		tune(&set)
	}
	pub := bus.NewPublisher(env.JS, env.Topo)
	b.w = &backups.Worker{
		Store: st, Blobs: puts, Topology: env.Topo, Settings: set, Publisher: pub, Sealer: testSealer(t),
		Runtime: &command.Runtime{Store: st, NC: env.NC, Prefix: env.Topo.Prefix},
	}
	r, err := bus.NewRouter(env.JS, bus.RouterConfig{
		Topology: env.Topo, Logger: log, MaxDeliver: 3, RetryAttempts: 1,
		NakBaseDelay: 100 * time.Millisecond, NakMaxDelay: time.Second, FetchWait: 200 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	run := &runner{bundle: b, env: env, pub: pub, root: root, puts: puts, logs: logs, logMu: mu}
	r.Use(bus.Logging(log), func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			if m.Consumer == backups.ConsumerRuns {
				run.deliveries.Store(m.ID(), m.Deliveries)
			}
			return next(ctx, m)
		}
	})
	b.w.Register(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("router did not stop")
		}
	})
	return run
}

// delivered is how many times backup-cmd was handed command id.
func (r *runner) delivered(id string) uint64 {
	n, _ := r.deliveries.Load(id)
	d, _ := n.(uint64)
	return d
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (r *runner) logText() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logs.String()
}

// submit records a command as ingest does and publishes it.
func (r *runner) submit(t *testing.T, domain, action string, params any) string {
	t.Helper()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	env := command.Envelope{ID: id, Domain: domain, Action: action, AccountID: r.acc, KeyID: "key_ops", Params: raw, CreatedAt: time.Now().UTC()}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = r.st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "operator", AccountID: r.acc, Domain: domain, Action: action, RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	h := nats.Header{}
	h.Set(bus.HeaderAccount, r.acc)
	_, err = r.pub.Publish(t.Context(), r.env.Topo.Subject(bus.Commands, domain+"."+action), id, h, payload)
	require.NoError(t, err)
	return id
}

// outcome waits for command id's outcome.
func (r *runner) outcome(t *testing.T, id string, within time.Duration) *store.Command {
	t.Helper()
	var c *store.Command
	require.Eventually(t, func() bool {
		var err error
		c, err = r.st.GetCommand(t.Context(), id)
		require.NoError(t, err)
		return !c.Pending()
	}, within, 20*time.Millisecond, "command %s has no outcome", id)
	return c
}

// directorySource creates a directory source of path through the worker.
func (r *runner) directorySource(t *testing.T, name, path string) string {
	t.Helper()
	id := r.submit(t, backups.Domain, backups.ActionCreateSource, backups.CreateSourceParams{
		Name: name, Kind: backups.KindDirectory, TimeZone: "Europe/London", ByOperator: true,
		Config: json.RawMessage(fmt.Sprintf(`{"path": %q}`, path)),
	})
	var v backups.SourceView
	succeeded(t, r.outcome(t, id, 10*time.Second), &v)
	return v.ID
}

// backup runs src and returns the run's view and its command.
func (r *runner) backup(t *testing.T, src string) (backups.RunView, *store.Command) {
	t.Helper()
	id := r.submit(t, backups.RunDomain, backups.ActionRun, backups.RunParams{SourceID: src, Trigger: store.RunManual})
	c := r.outcome(t, id, 60*time.Second)
	var v backups.RunView
	if c.Status == store.CommandSucceeded {
		require.NoError(t, json.Unmarshal(c.Result, &v))
	}
	return v, c
}

// outbox returns the payloads of unpublished events on subject tail what.
func (r *runner) events(t *testing.T, what events.Name) []map[string]any {
	t.Helper()
	rows, err := r.st.UnpublishedOutbox(t.Context(), 1000)
	require.NoError(t, err)
	var out []map[string]any
	for _, m := range rows {
		if m.Subject == what.Subject(r.env.Topo) {
			var p map[string]any
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			out = append(out, p)
		}
	}
	return out
}

// failingPuts fails Put after failAfter bytes once armed, reading what it
// was given so far into the real store first: a store that dies midway.
type failingPuts struct {
	blob.Store
	failAfter atomic.Int64 // 0: never
	puts      atomic.Int64
	// beforePut, when set, is called with each key before it is stored.
	beforePut atomic.Pointer[func(key string)]
}

var errStoreDown = errors.New("injected: blob store unavailable")

func (f *failingPuts) Put(ctx context.Context, key string, r io.Reader) (int64, string, error) {
	f.puts.Add(1)
	if hook := f.beforePut.Load(); hook != nil {
		(*hook)(key)
	}
	if n := f.failAfter.Load(); n > 0 {
		r = &failingReader{r: r, left: n}
	}
	return f.Store.Put(ctx, key, r)
}

type failingReader struct {
	r    io.Reader
	left int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errStoreDown
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	return n, err
}

// tree writes a directory tree worth backing up under dir: nested and
// empty directories, an empty file, a large file mostly of zeros, unusual
// names, a symlink, assorted modes and distinct modification times.
func tree(t *testing.T, dir string) {
	t.Helper()
	files := map[string][]byte{
		"a/b/c/deep.txt":           []byte("deep"),
		"empty.bin":                {},
		"spaces and ünïcode ✓.txt": []byte("unusual name"),
		"-leading-dash":            []byte("dash"),
		"exec.sh":                  []byte("#!/bin/sh\necho hi\n"),
	}
	big := make([]byte, 3<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = byte(i / 4096)
	}
	files["big/sparse.img"] = big
	noise := make([]byte, 512<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	files["big/noise.bin"] = noise
	for p, data := range files {
		full := filepath.Join(dir, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, data, 0o644))
	}
	require.NoError(t, os.Chmod(filepath.Join(dir, "exec.sh"), 0o750))
	require.NoError(t, os.Chmod(filepath.Join(dir, "empty.bin"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o700))
	require.NoError(t, os.Symlink("a/b/c/deep.txt", filepath.Join(dir, "link")))
	at := time.Date(2024, 2, 29, 12, 34, 56, 789000000, time.UTC)
	i := 0
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		i++
		return os.Chtimes(p, at.Add(time.Duration(i)*time.Hour), at.Add(time.Duration(i)*time.Hour))
	}))
	// Directories last: writing files changed their times.
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(p, at, at.Add(-time.Duration(len(p))*time.Minute))
	}))
}

// entry is what a restore must reproduce of one path.
type entry struct {
	Mode  fs.FileMode
	MTime time.Time
	Data  string
	Link  string
}

func snapshotTree(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		e := entry{Mode: fi.Mode(), MTime: fi.ModTime().UTC()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, err = os.Readlink(p)
			require.NoError(t, err)
			e.MTime = time.Time{} // symlink times are not portable
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			e.Data = string(b)
		}
		if rel == "." {
			// The target root is the restore's own: its mode and time
			// are never changed.
			e.MTime, e.Mode = time.Time{}, fs.ModeDir
		}
		out[rel] = e
		return nil
	}))
	return out
}

func TestDirectoryBackupRunsVerifiesAndRestores(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		r := startRunner(t, st, nil)
		data := filepath.Join(r.root, "data")
		tree(t, data)
		want := snapshotTree(t, data)
		src := r.directorySource(t, "files", data)

		run, c := r.backup(t, src)
		require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
		require.Equal(t, http.StatusCreated, c.HTTPStatus)
		require.Equal(t, backups.RunID(c.ID), run.ID)
		require.Equal(t, store.RunSucceeded, run.State)
		require.NotNil(t, run.Snapshot)
		snap := run.Snapshot
		require.Equal(t, snap.ID, run.SnapshotID)
		require.EqualValues(t, 3<<20+512<<10+4+12+4+18, run.SourceBytes, "every file's bytes")
		require.Equal(t, run.SourceBytes, run.BytesDone)
		require.Less(t, snap.SizeBytes, int64(600<<10), "the mostly-zero file is stored compressed")
		require.Equal(t, snap.SizeBytes, run.StoredBytes)
		require.Equal(t, snap.SHA256, run.SHA256)
		sum, ok := backups.SummaryOf(snap)
		require.True(t, ok)
		require.Equal(t, backups.KindDirectory, sum.Kind)
		require.Equal(t, 7, sum.Files)

		t.Run("TheBlobIsTheSnapshotsEncryptedManifest", func(t *testing.T) {
			require.True(t, strings.HasPrefix(snap.BlobKey, r.acc+"/repo/snapshots/"), snap.BlobKey)
			size, digest := blobDigest(t, r.local, snap.BlobKey)
			require.Equal(t, sum.ManifestBytes, size)
			require.Equal(t, snap.SHA256, digest)
			require.Equal(t, backups.RepoFormat, sum.Format)
		})

		t.Run("ARedeliveredRunCommandDoesNotRunAgain", func(t *testing.T) {
			puts := r.puts.puts.Load()
			m := &bus.Message{Subject: "levqor.cmd.backup.run", Header: nats.Header{bus.HeaderMsgID: {c.ID}}, Stream: "COMMANDS",
				Consumer: backups.ConsumerRuns, StreamSeq: 1, Deliveries: 2}
			m.Data = mustPayload(t, st, c.ID)
			require.NoError(t, r.w.Runtime.Handler(r.w.HandleBackup)(t.Context(), m))
			require.Equal(t, puts, r.puts.puts.Load(), "nothing was streamed again")
			snaps, err := st.SourceSnapshots(t.Context(), src)
			require.NoError(t, err)
			require.Len(t, snaps, 1)
		})

		t.Run("VerifyFindsItIntact", func(t *testing.T) {
			res, err := r.w.VerifySample(t.Context(), time.Now())
			require.NoError(t, err)
			require.Equal(t, 1, res.Checked)
			require.Zero(t, res.Corrupt)
			got, err := st.GetSnapshot(t.Context(), snap.ID)
			require.NoError(t, err)
			require.Equal(t, store.SnapshotVerified, got.Integrity)
			require.NotNil(t, got.VerifiedAt)
		})

		target := filepath.Join(r.root, "restored")
		restore := func(t *testing.T, overwrite bool) *store.Command {
			id := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
				SnapshotID: snap.ID, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetPath: target, Overwrite: overwrite}})
			return r.outcome(t, id, 60*time.Second)
		}
		t.Run("RestoreReproducesEveryByteModeAndTime", func(t *testing.T) {
			var res backups.RestoreDataResult
			succeeded(t, restore(t, false), &res)
			require.Equal(t, 7, res.Files)
			require.Equal(t, run.SourceBytes, res.Bytes)
			require.Equal(t, want, snapshotTree(t, target))
		})
		t.Run("ANonEmptyTargetNeedsOverwrite", func(t *testing.T) {
			require.NoError(t, os.WriteFile(filepath.Join(target, "exec.sh"), []byte("changed"), 0o644))
			e := failed(t, restore(t, false), http.StatusConflict, "target_path")
			require.Equal(t, "target_not_empty", e.Code)
			succeeded(t, restore(t, true), nil)
			require.Equal(t, want, snapshotTree(t, target))
		})
		t.Run("RestoreOutsideTheAllowListIsRefused", func(t *testing.T) {
			id := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
				SnapshotID: snap.ID, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetPath: filepath.Join(t.TempDir(), "elsewhere")}})
			e := failed(t, r.outcome(t, id, 10*time.Second), http.StatusUnprocessableEntity, "target_path")
			require.Contains(t, e.Message, backups.PathsVariable)
		})

		t.Run("AFlippedByteIsFoundOnceAndTheSnapshotIsCorrupt", func(t *testing.T) {
			flipByte(t, filepath.Join(r.local.Root(), filepath.FromSlash(snap.BlobKey)))
			res, err := r.w.VerifySample(t.Context(), time.Now())
			require.NoError(t, err)
			require.Equal(t, 1, res.Corrupt)
			got, err := st.GetSnapshot(t.Context(), snap.ID)
			require.NoError(t, err)
			require.Equal(t, store.SnapshotCorrupt, got.Integrity)
			require.Contains(t, got.VerifyError, "integrity check")
			ev := r.events(t, events.NameBackupCorrupt)
			require.Len(t, ev, 1)
			require.Equal(t, r.acc, ev[0]["account_id"])
			require.Equal(t, src, ev[0]["source_id"])
			require.Equal(t, snap.ID, ev[0]["snapshot_id"])
			require.Equal(t, "corrupt:"+snap.ID, ev[0]["incident"])

			res, err = r.w.VerifySample(t.Context(), time.Now())
			require.NoError(t, err)
			require.Zero(t, res.Checked, "a corrupt snapshot is not sampled again")
			require.Len(t, r.events(t, events.NameBackupCorrupt), 1, "one event per corrupt snapshot")
			e := failed(t, restore(t, true), http.StatusConflict, "id")
			require.Equal(t, "snapshot_corrupt", e.Code)
		})
	})
}

func mustPayload(t *testing.T, st *store.Store, id string) []byte {
	t.Helper()
	c, err := st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	return c.Payload
}

func blobDigest(t *testing.T, s blob.Store, key string) (int64, string) {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	require.NoError(t, err)
	return n, hex.EncodeToString(h.Sum(nil))
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x40
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

func TestAFailingBlobStoreLeavesNoSnapshotAndNoBlob(t *testing.T) {
	t.Parallel()
	r, _, src := treeSource(t, nil)
	r.puts.failAfter.Store(64 << 10)

	_, c := r.backup(t, src)
	require.Equal(t, store.CommandFailed, c.Status)
	require.Equal(t, store.CommandErrorDeadLettered, c.Error.Code, "retried with backoff, then dead-lettered")
	require.EqualValues(t, 3, r.puts.puts.Load(), "one attempt per delivery (MaxDeliver 3)")

	got, err := r.st.GetRun(t.Context(), backups.RunID(c.ID))
	require.NoError(t, err)
	require.Equal(t, store.RunFailed, got.State)
	require.Contains(t, got.Error, errStoreDown.Error())
	require.Equal(t, 3, got.Attempts)
	snaps, err := r.st.SourceSnapshots(t.Context(), src)
	require.NoError(t, err)
	require.Empty(t, snaps, "no snapshot of a failed run")
	blobs, err := r.local.List(t.Context(), "")
	require.NoError(t, err)
	require.Empty(t, blobs, "no partial blob")
	entries, err := os.ReadDir(filepath.Join(r.local.Root(), r.acc, src))
	if err == nil {
		require.Empty(t, entries, "no temporary file either")
	}
	require.Len(t, r.env.Messages(t, bus.DLQ), 1)

	// Every failed attempt is announced at once, not only when the source
	// goes overdue.
	failed := outboxEvents[events.BackupRunFailed](t, r.st)
	require.Len(t, failed, 3, "one event per failed attempt")
	require.Equal(t, got.ID, failed[2].RunID)
	require.Equal(t, src, failed[2].SourceID)
	require.Equal(t, c.ID, failed[2].CommandID)
	require.Contains(t, failed[2].Reason, errStoreDown.Error())

	t.Run("TheNextRunSucceeds", func(t *testing.T) {
		r.puts.failAfter.Store(0)
		run, c := r.backup(t, src)
		require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
		require.Equal(t, store.RunSucceeded, run.State)
	})
}

func TestQuotaExceededFailsTheRunWithAnEvent(t *testing.T) {
	t.Parallel()
	r, _, src := treeSource(t, nil)
	// An agent's snapshot already fills the 1 GB quota but for 10 kB.
	r.storing(t, backups.GB-10_000)

	_, c := r.backup(t, src)
	e := failed(t, c, http.StatusUnprocessableEntity, "")
	require.Equal(t, "quota_exceeded", e.Code)
	require.Contains(t, e.Message, "storage quota exceeded")
	run, err := r.st.GetRun(t.Context(), backups.RunID(c.ID))
	require.NoError(t, err)
	require.Equal(t, store.RunFailed, run.State)
	require.Equal(t, e.Message, run.Error)
	ev := r.events(t, events.NameBackupQuotaExceeded)
	require.Len(t, ev, 1)
	require.Equal(t, src, ev[0]["source_id"])
	require.Equal(t, r.acc, ev[0]["account_id"])
	blobs, err := r.local.List(t.Context(), r.acc+"/")
	require.NoError(t, err)
	require.Empty(t, blobs, "the run stopped at the quota left nothing behind")
}

// accountBusy starts a run of src as another worker would: it counts
// against the account's concurrent runs until finished.
func accountBusy(t *testing.T, st *store.Store, acc, src string) (finish func()) {
	t.Helper()
	busy := store.BackupRun{ID: "run_busy", AccountID: acc, SourceID: src, CommandID: "cmd_busy", Trigger: store.RunManual}
	require.NoError(t, st.InTx(t.Context(), func(tx *store.Tx) error {
		_, err := tx.StartRun(t.Context(), busy, time.Now())
		return err
	}))
	return func() {
		require.NoError(t, st.InTx(t.Context(), func(tx *store.Tx) error {
			_, err := tx.FailRun(t.Context(), busy.ID, "done elsewhere", time.Now())
			return err
		}))
	}
}

func TestARunOverTheAccountLimitWaitsForTheOtherRunWithoutRedelivery(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	r := startRunner(t, st, func(s *backups.Settings) {
		s.MaxRunsPerAccount, s.BusyWait, s.BusyPoll, s.BusyRetry = 1, time.Minute, 50*time.Millisecond, 100*time.Millisecond
	})
	data := filepath.Join(r.root, "data")
	tree(t, data)
	src := r.directorySource(t, "files", data)
	finish := accountBusy(t, st, r.acc, src)

	id := r.submit(t, backups.RunDomain, backups.ActionRun, backups.RunParams{SourceID: src, Trigger: store.RunManual})
	require.Eventually(t, func() bool { return strings.Contains(r.logText(), "waiting for a free backup slot") }, 10*time.Second, 10*time.Millisecond,
		"the run waits for the account's other run")
	// Several polls later it still waits, on its first delivery.
	time.Sleep(500 * time.Millisecond)
	c, err := st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	require.True(t, c.Pending(), "waiting for the account's other run")
	_, err = st.GetRun(t.Context(), backups.RunID(id))
	require.ErrorIs(t, err, store.ErrNotFound, "the run has not started")
	require.EqualValues(t, 1, r.delivered(id))

	finish()
	c = r.outcome(t, id, 30*time.Second)
	var v backups.RunView
	succeeded(t, c, &v)
	require.Equal(t, store.RunSucceeded, v.State)
	require.NotNil(t, v.Snapshot)
	require.EqualValues(t, 1, r.delivered(id), "waiting spent no delivery")
	logs := r.logText()
	require.Equal(t, 1, strings.Count(logs, "waiting for a free backup slot"), "the wait is logged once")
	require.NotContains(t, logs, "will retry")
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "waiting for a free backup slot") {
			require.Contains(t, line, "account_id="+r.acc)
			require.Contains(t, line, "source_id="+src)
			require.Contains(t, line, "LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT")
		}
	}
}

func TestARunWaitingLongerThanTheBusyWaitIsRetriedLater(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	r := startRunner(t, st, func(s *backups.Settings) {
		s.MaxRunsPerAccount, s.BusyWait, s.BusyPoll, s.BusyRetry = 1, 100*time.Millisecond, 20*time.Millisecond, 2*time.Second
	})
	data := filepath.Join(r.root, "data")
	tree(t, data)
	src := r.directorySource(t, "files", data)
	finish := accountBusy(t, st, r.acc, src)

	id := r.submit(t, backups.RunDomain, backups.ActionRun, backups.RunParams{SourceID: src, Trigger: store.RunManual})
	require.Eventually(t, func() bool {
		return strings.Contains(r.logText(), "LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT=1), still after waiting LEVQOR_BACKUP_BUSY_WAIT=100ms")
	}, 10*time.Second, 10*time.Millisecond, "past the bound the run is sent back to wait for the account's other run")
	// The router logs the retry just after the handler's error.
	require.Eventually(t, func() bool { return strings.Contains(r.logText(), "retry_in=2s") }, 5*time.Second, 10*time.Millisecond,
		"it is redelivered after BusyRetry")
	c, err := st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	require.True(t, c.Pending(), "waiting for the account's other run")
	_, err = st.GetRun(t.Context(), backups.RunID(id))
	require.ErrorIs(t, err, store.ErrNotFound, "the run has not started")

	finish()
	succeeded(t, r.outcome(t, id, 30*time.Second), nil)
	require.EqualValues(t, 2, r.delivered(id), "the second delivery ran it")
}

func TestScheduledRunsAndOverdueAlerts(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	r := startRunner(t, st, nil)
	data := filepath.Join(r.root, "data")
	require.NoError(t, os.MkdirAll(data, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o644))
	ctx := t.Context()
	// An hourly source created two days ago, never backed up.
	src, err := command.NewID(backups.SourceIDPrefix)
	require.NoError(t, err)
	created := time.Now().Add(-48 * time.Hour)
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertSource(ctx, store.BackupSource{ID: src, AccountID: r.acc, Name: "hourly", Kind: backups.KindDirectory,
			Schedule: "0 * * * *", TimeZone: "UTC", Config: json.RawMessage(fmt.Sprintf(`{"path":%q}`, data)), CreatedAt: created})
		return err
	}))

	t.Run("OverdueOncePerIncident", func(t *testing.T) {
		res, err := r.w.Overdue(ctx, time.Now())
		require.NoError(t, err)
		require.Equal(t, backups.OverdueResult{Overdue: 1, Raised: 1}, res)
		res, err = r.w.Overdue(ctx, time.Now())
		require.NoError(t, err)
		require.Equal(t, backups.OverdueResult{Overdue: 1, Raised: 0}, res, "the same incident is not raised twice")
		ev := r.events(t, events.NameBackupOverdue)
		require.Len(t, ev, 1)
		require.Equal(t, "overdue:"+src+":never", ev[0]["incident"])
		require.Equal(t, src, ev[0]["source_id"])
		require.Equal(t, r.acc, ev[0]["account_id"])
	})

	t.Run("DueRunsTheSlotOnce", func(t *testing.T) {
		now := time.Now().UTC()
		n, err := r.w.Due(ctx, now)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = r.w.Due(ctx, now.Add(time.Second))
		require.NoError(t, err)
		require.Zero(t, n, "the slot has its run")
		slot := now.Truncate(time.Hour)
		c := r.outcome(t, backups.ScheduledCommandID(src, slot), 30*time.Second)
		var v backups.RunView
		succeeded(t, c, &v)
		require.Equal(t, store.RunScheduled, v.Trigger)
		require.True(t, v.Slot.Equal(slot))
	})

	t.Run("AGoodSnapshotEndsTheIncident", func(t *testing.T) {
		res, err := r.w.Overdue(ctx, time.Now())
		require.NoError(t, err)
		require.Zero(t, res.Overdue)
		res, err = r.w.Overdue(ctx, time.Now().Add(3*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, res.Raised, "a later lapse is a new incident")
		ev := r.events(t, events.NameBackupOverdue)
		require.Len(t, ev, 2)
		require.NotEqual(t, ev[0]["incident"], ev[1]["incident"])
	})

	t.Run("APausedSourceIsNeitherRunNorOverdue", func(t *testing.T) {
		succeeded(t, r.outcome(t, r.submit(t, backups.RunDomain, backups.ActionPause, backups.SourceParams{SourceID: src}), 10*time.Second), nil)
		n, err := r.w.Due(ctx, time.Now().Add(2*time.Hour))
		require.NoError(t, err)
		require.Zero(t, n)
		res, err := r.w.Overdue(ctx, time.Now().Add(30*time.Hour))
		require.NoError(t, err)
		require.Zero(t, res.Overdue)
	})
}

func TestPostgresSourceBackupAndRestore(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	admin := os.Getenv(storetest.DatabaseURLEnv)
	r := startRunner(t, st, func(s *backups.Settings) { s.DrillDSN = admin })
	source := withPassword(t, storetest.PostgresURL(t), "s3cret-pw-42")
	db, err := sql.Open("postgres", source)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(t.Context(), `CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(10,2), at TIMESTAMPTZ);
INSERT INTO items SELECT g, 'item ' || g, g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 2000) g;`)
	require.NoError(t, err)

	id := r.submit(t, backups.Domain, backups.ActionCreateSource, backups.CreateSourceParams{
		Name: "app-db", Kind: backups.KindPostgres, Schedule: "0 3 * * *", ByOperator: true,
		Config: json.RawMessage(fmt.Sprintf(`{"dsn": %q}`, source)),
	})
	c := r.outcome(t, id, 10*time.Second)
	var v backups.SourceView
	succeeded(t, c, &v)
	require.NotContains(t, string(c.Result), "s3cret-pw-42", "the DSN's password never leaves the worker")
	require.Contains(t, v.Config.DSN, backups.Redacted)

	run, c := r.backup(t, v.ID)
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	sum, ok := backups.SummaryOf(run.Snapshot)
	require.True(t, ok)
	require.Equal(t, backups.KindPostgres, sum.Kind)
	require.NotEmpty(t, sum.DumpSHA256)

	target := withPassword(t, storetest.PostgresURL(t), "other-pw-77")
	id = r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
		SnapshotID: run.SnapshotID, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetDSN: target}})
	c = r.outcome(t, id, 60*time.Second)
	var res backups.RestoreDataResult
	succeeded(t, c, &res)
	require.NotContains(t, string(c.Result), "other-pw-77")

	tdb, err := sql.Open("postgres", target)
	require.NoError(t, err)
	defer tdb.Close()
	rows := func(db *sql.DB) string {
		var s string
		require.NoError(t, db.QueryRowContext(t.Context(), `SELECT md5(string_agg(id || ':' || name || ':' || price || ':' || at, ',' ORDER BY id)) || count(*) FROM items`).Scan(&s))
		return s
	}
	require.Equal(t, rows(db), rows(tdb), "every row came back")
	logs := r.logText()
	require.NotContains(t, logs, "s3cret-pw-42")
	require.NotContains(t, logs, "other-pw-77")

	// A restore drill of the source: skipped, saying why, without a
	// server for scratch databases; restored into one, and the scratch
	// database dropped, with it.
	r.entitleDrills(t)
	noScratch := &backups.Worker{Store: st, Blobs: r.w.Blobs, Topology: r.env.Topo, Sealer: r.w.Sealer}
	skipped, err := noScratch.RestoreDrills(t.Context(), time.Now())
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{Skipped: 1}, skipped)
	drills, err := st.ListDrills(t.Context(), v.ID, 10)
	require.NoError(t, err)
	require.Contains(t, drills[0].Reason, "LEVQOR_DRILL_POSTGRES_URL")
	got, err := r.w.RestoreDrills(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	drills, err = st.ListDrills(t.Context(), v.ID, 10)
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{Passed: 1}, got, drills[0].Reason)
	require.EqualValues(t, 1, drills[0].Files, "the dump")
	var scratch int
	require.NoError(t, db.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_database WHERE datname LIKE 'levqor_drill_%'`).Scan(&scratch))
	require.Zero(t, scratch, "the scratch database is dropped")
	require.NotContains(t, r.logText(), "s3cret-pw-42")
}

// TestASecondDumpOfAChangedDatabaseStoresLittle: a postgres source's runs
// write the repository, and a second run after a few rows were added
// stores a fraction of the first: the dump's unchanged chunks are found
// in the repository.
func TestASecondDumpOfAChangedDatabaseStoresLittle(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	r := startRunner(t, st, nil)
	source := storetest.PostgresURL(t)
	db, err := sql.Open("postgres", source)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(t.Context(), `CREATE TABLE events (id INT PRIMARY KEY, body TEXT NOT NULL);
INSERT INTO events SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 300000) g;`)
	require.NoError(t, err)
	id := r.submit(t, backups.Domain, backups.ActionCreateSource, backups.CreateSourceParams{
		Name: "events-db", Kind: backups.KindPostgres, Schedule: "0 3 * * *", ByOperator: true,
		Config: json.RawMessage(fmt.Sprintf(`{"dsn": %q}`, source)),
	})
	var v backups.SourceView
	succeeded(t, r.outcome(t, id, 10*time.Second), &v)

	first, c := r.backup(t, v.ID)
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	sum, ok := backups.SummaryOf(first.Snapshot)
	require.True(t, ok)
	require.Equal(t, backups.RepoFormat, sum.Format, "a postgres run writes the repository")
	require.Greater(t, sum.SourceBytes, int64(5<<20), "a dump of several chunks")

	_, err = db.ExecContext(t.Context(), `INSERT INTO events SELECT g, 'new ' || g FROM generate_series(300001, 300010) g`)
	require.NoError(t, err)
	second, c := r.backup(t, v.ID)
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	require.Less(t, second.Snapshot.SizeBytes*3, first.Snapshot.SizeBytes,
		"ten new rows in %d bytes of dump store a fraction: %d of %d", sum.SourceBytes, second.Snapshot.SizeBytes, first.Snapshot.SizeBytes)
}

func withPassword(t *testing.T, dsn, pw string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

func TestARunPastEightyPercentOfTheQuotaWarnsOnce(t *testing.T) {
	t.Parallel()
	r, _, src := treeSource(t, nil)
	// An agent's snapshot fills the 1 GB quota to 10 bytes short of 80%.
	r.storing(t, backups.GB*80/100-10)

	run := r.backedUp(t, src)
	warned := r.events(t, events.NameBackupQuotaWarn)
	require.Len(t, warned, 1)
	require.EqualValues(t, 80, warned[0]["level"])
	require.Equal(t, run.ID, warned[0]["run_id"])
	require.Equal(t, "quota_warn:80:"+run.ID, warned[0]["incident"])
	require.Contains(t, warned[0]["reason"], "more than 80% of its storage quota")

	r.backedUp(t, src)
	require.Len(t, r.events(t, events.NameBackupQuotaWarn), 1, "past 80% already: no second warning")
}

// storing records an agent's snapshot of size bytes in another source of
// the account: stored bytes that count against its quota.
func (r *runner) storing(t *testing.T, size int64) {
	t.Helper()
	other := r.source(t, nil)
	id, err := command.NewID(backups.SnapshotIDPrefix)
	require.NoError(t, err)
	require.NoError(t, r.st.InTx(t.Context(), func(tx *store.Tx) error {
		_, err := tx.InsertSnapshot(t.Context(), store.Snapshot{ID: id, AccountID: r.acc, SourceID: other,
			TakenAt: time.Now(), SizeBytes: size, SHA256: "ab", BlobKey: r.acc + "/" + id, RecordedBy: "key_agent"})
		return err
	}))
}

// outboxEvents decodes the unpublished outbox rows of event E, oldest
// first.
func outboxEvents[E events.Event](t *testing.T, st *store.Store) []E {
	t.Helper()
	rows, err := st.UnpublishedOutbox(t.Context(), 1000)
	require.NoError(t, err)
	var zero E
	var out []E
	for _, row := range rows {
		if row.Subject == "levqor.event."+string(zero.EventName()) {
			var ev E
			require.NoError(t, json.Unmarshal(row.Payload, &ev))
			out = append(out, ev)
		}
	}
	return out
}

// treeSource starts a runner with the test tree (tree) under its root
// as a directory source, and returns the tree's path and the source.
func treeSource(t *testing.T, tune func(*backups.Settings)) (r *runner, data, src string) {
	t.Helper()
	r = startRunner(t, storetest.SQLite(t), tune)
	data = filepath.Join(r.root, "data")
	tree(t, data)
	return r, data, r.directorySource(t, "files", data)
}

// backedUp runs a backup of src, which must succeed.
func (r *runner) backedUp(t *testing.T, src string) backups.RunView {
	t.Helper()
	v, c := r.backup(t, src)
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	return v
}
