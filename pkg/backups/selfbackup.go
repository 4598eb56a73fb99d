package backups

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/archive"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// Levqor's own database is backed up like a customer's: the job
// levqor.selfbackup dumps it (pg_dump, or a consistent copy of the SQLite
// file) into the blob store under SelfBackupPrefix, and `levqor
// selfrestore` brings the newest back into an empty database. Until the
// catalog restored that way has been reconciled with the blob store
// (ReconcileCatalog), the sweep and blob.gc refuse to run: they would
// judge the blobs of every snapshot taken after the self-backup by a
// catalog that does not know them.

// JobSelfBackup is the scheduler's job that backs up Levqor's database.
const JobSelfBackup = scheduler.JobSelfBackup

// ConsumerSelfTicks reads the levqor.* jobs' ticks.
const ConsumerSelfTicks = "self-tick"

// SelfBackupPrefix is where self-backups live in the blob store: outside
// every account's keys, so blob.gc leaves them alone. Each deployment has
// its own directory under it (SelfBackupDir).
const SelfBackupPrefix = "levqor-self/"

// SelfBackupDir is the directory of the self-backups of the deployment of
// topo: one per subject prefix, so that deployments sharing a bucket
// neither rotate out nor restore each other's.
func SelfBackupDir(topo bus.Topology) string {
	return SelfBackupPrefix + topo.WithDefaults().Prefix + "/"
}

// SelfBackupKeepDefault is LEVQOR_SELFBACKUP_KEEP: how many self-backups
// are kept, the newest.
const SelfBackupKeepDefault = 14

// selfBackupFile is the SQLite database's name inside a self-backup.
const selfBackupFile = "levqor.db"

// SelfTickConsumer declares self-tick: the ticks of the levqor.* jobs.
func SelfTickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerSelfTicks, Kind: bus.Ticks, Filter: "levqor.>"}
}

// HandleSelfTick runs the levqor.* jobs.
func (w *Worker) HandleSelfTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch(ConsumerSelfTicks, scheduler.Jobs{
		JobSelfBackup: func(ctx context.Context, _ *bus.Message, _ scheduler.Tick) error {
			// Named by when it is taken, not by the slot: a backfilled
			// slot must not pass today's database off as an old one.
			_, err := w.SelfBackup(ctx, time.Now())
			return err
		},
	})(ctx, m)
}

// SelfBackupInfo describes one self-backup in the blob store.
type SelfBackupInfo struct {
	Key     string    `json:"key"`
	TakenAt time.Time `json:"taken_at"`
	// Size is what the self-backup takes in the blob store.
	Size   int64  `json:"size_bytes"`
	SHA256 string `json:"sha256,omitempty"`
	// Format is 2 for a self-backup sealed in a repository of its own,
	// 1 for an archive written in clear before self-backups were sealed.
	Format int `json:"format"`
}

// A self-backup is sealed as customers' backups are: the dump is stored
// as a snapshot in a repository (format 2) of its own, under a data key
// of its own that the first of LEVQOR_MASTER_KEYS wraps. The wrapped key
// and the snapshot's manifest id are in the self-backup's record object,
// <dir><time>.v2; the repository is under <dir><time>/. It holds every
// account's catalog, people and wrapped keys, so whoever holds the bucket
// reads none of it without a master key; and it stays restorable without
// the database it restores, which is why its key is beside it, not in a
// table. Self-backups of format 1 (<dir><time>.lvq, in clear) are still
// listed and restored.
const (
	selfRecordExt = ".v2"
	selfLegacyExt = ".lvq"
)

// selfRecord is the content of a self-backup's record object.
type selfRecord struct {
	Format   int     `json:"format"`
	Manifest repo.ID `json:"manifest"`
	// Key is the repository's data key, sealed under a master key.
	Key string `json:"key"`
}

// selfBackupName names the self-backup taken at t; names sort by time.
func selfBackupName(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// selfKeyShown binds a self-backup's wrapped key to its name.
func selfKeyShown(dir, name string) string { return "data key of self-backup " + dir + name }

// takenAt reads the time and format back from a self-backup's record key
// in dir.
func takenAt(dir, key string) (time.Time, int, bool) {
	name := strings.TrimPrefix(key, dir)
	format := 2
	switch {
	case strings.HasSuffix(name, selfRecordExt):
		name = strings.TrimSuffix(name, selfRecordExt)
	case strings.HasSuffix(name, selfLegacyExt):
		name, format = strings.TrimSuffix(name, selfLegacyExt), 1
	default:
		return time.Time{}, 0, false
	}
	t, err := time.Parse("20060102T150405Z", name)
	return t, format, err == nil
}

// SelfBackup dumps Levqor's database (Settings.DatabaseURL) into the blob
// store, sealed, as the self-backup taken at now, then deletes all but
// the newest Settings.SelfBackupKeep.
func (w *Worker) SelfBackup(ctx context.Context, now time.Time) (SelfBackupInfo, error) {
	if w.Blobs == nil {
		return SelfBackupInfo{}, errors.New(ErrBlobsNotConfiguredMessage)
	}
	if w.Sealer == nil {
		return SelfBackupInfo{}, errors.New("levqor.selfbackup: LEVQOR_MASTER_KEYS is not set: self-backups are sealed under a key it wraps")
	}
	set := w.settings()
	if set.DatabaseURL == "" {
		return SelfBackupInfo{}, errors.New("levqor.selfbackup: the database URL is not known to the backups worker")
	}
	dir := SelfBackupDir(w.topology())
	name := selfBackupName(now)
	start := time.Now()
	raw, err := repo.NewDataKey()
	if err != nil {
		return SelfBackupInfo{}, err
	}
	wrapped, err := w.Sealer.Seal(hex.EncodeToString(raw), selfKeyShown(dir, name))
	if err != nil {
		return SelfBackupInfo{}, err
	}
	key, err := repo.NewKey(raw)
	if err != nil {
		return SelfBackupInfo{}, err
	}
	r, err := repo.Open(ctx, w.Blobs, dir+name+"/", key)
	if err != nil {
		return SelfBackupInfo{}, fmt.Errorf("levqor.selfbackup: %w", err)
	}
	pr, pw := io.Pipe()
	sum := sha256.New()
	go func() { pw.CloseWithError(DumpDatabase(ctx, io.MultiWriter(pw, sum), w.Store, set.DatabaseURL)) }()
	id, m, err := r.BackupStream(ctx, selfBackupFile+selfLegacyExt, pr)
	pr.CloseWithError(err)
	if err != nil {
		return SelfBackupInfo{}, fmt.Errorf("levqor.selfbackup: %w", err)
	}
	rec, err := json.Marshal(selfRecord{Format: 2, Manifest: id, Key: wrapped})
	if err != nil {
		return SelfBackupInfo{}, err
	}
	// The record last: a self-backup is listed only once whole.
	if _, _, err := w.Blobs.Put(ctx, dir+name+selfRecordExt, bytes.NewReader(rec)); err != nil {
		return SelfBackupInfo{}, fmt.Errorf("levqor.selfbackup: %w", err)
	}
	info := SelfBackupInfo{Key: dir + name + selfRecordExt, TakenAt: now.UTC().Truncate(time.Second), Size: m.Stats.StoredBytes + m.Object.Size + int64(len(rec)),
		SHA256: hex.EncodeToString(sum.Sum(nil)), Format: 2}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"blob_key": info.Key, "size_bytes": info.Size, "sha256": info.SHA256, "duration": time.Since(start).Round(time.Millisecond).String()})
	log.Info("Levqor's database backed up, sealed")
	all, err := ListSelfBackups(ctx, w.Blobs, dir)
	if err != nil {
		return info, err
	}
	for i := 0; i < len(all)-set.SelfBackupKeep; i++ {
		if err := deleteSelfBackup(ctx, w.Blobs, dir, all[i]); err != nil {
			return info, fmt.Errorf("levqor.selfbackup: deleting the old self-backup %s: %w", all[i].Key, err)
		}
		log.WithField("deleted", all[i].Key).Info("old self-backup deleted")
	}
	return info, sweepSelfLeftovers(ctx, w.Blobs, dir, now)
}

// deleteSelfBackup deletes a self-backup: its record first, so that it is
// never listed half deleted, then its repository.
func deleteSelfBackup(ctx context.Context, blobs blob.Store, dir string, b SelfBackupInfo) error {
	if err := blobs.Delete(ctx, b.Key); err != nil {
		return err
	}
	if b.Format == 1 {
		return nil
	}
	return deleteUnder(ctx, blobs, dir+selfBackupName(b.TakenAt)+"/")
}

func deleteUnder(ctx context.Context, blobs blob.Store, prefix string) error {
	objs, err := blobs.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := blobs.Delete(ctx, o.Key); err != nil {
			return err
		}
	}
	return nil
}

// sweepSelfLeftovers deletes the repositories of self-backups that have no
// record, older than a day: a self-backup that failed halfway, or whose
// deletion stopped after its record.
func sweepSelfLeftovers(ctx context.Context, blobs blob.Store, dir string, now time.Time) error {
	objs, err := blobs.List(ctx, dir)
	if err != nil {
		return err
	}
	records := map[string]bool{}
	for _, o := range objs {
		if t, _, ok := takenAt(dir, o.Key); ok {
			records[selfBackupName(t)] = true
		}
	}
	for _, o := range objs {
		name, _, nested := strings.Cut(strings.TrimPrefix(o.Key, dir), "/")
		t, err := time.Parse("20060102T150405Z", name)
		if !nested || err != nil || records[name] || now.Sub(t) < 24*time.Hour {
			continue
		}
		if err := blobs.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("levqor.selfbackup: deleting what a failed self-backup left: %w", err)
		}
	}
	return nil
}

// DumpDatabase writes an archive of the database at dbURL to w: pg_dump's
// for PostgreSQL (archive.WritePostgres), a consistent copy of the SQLite
// file made by st (VACUUM INTO) for SQLite.
func DumpDatabase(ctx context.Context, w io.Writer, st *store.Store, dbURL string) error {
	if _, ok := store.SQLitePath(dbURL); ok {
		dir, err := os.MkdirTemp("", "levqor-selfbackup-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		copyPath := filepath.Join(dir, selfBackupFile)
		if _, err := st.DB().ExecContext(ctx, `VACUUM INTO ?`, copyPath); err != nil {
			return fmt.Errorf("copying the SQLite database: %w", err)
		}
		_, err = archive.WriteDirectory(ctx, w, dir, nil)
		return err
	}
	_, err := archive.WritePostgres(ctx, w, dbURL, nil)
	return err
}

// ListSelfBackups lists the self-backups in dir (SelfBackupDir) of blobs,
// oldest first.
func ListSelfBackups(ctx context.Context, blobs blob.Store, dir string) ([]SelfBackupInfo, error) {
	infos, err := blobs.List(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("listing the self-backups: %w", err)
	}
	var out []SelfBackupInfo
	sizes := map[string]int64{}
	for _, in := range infos {
		if name, _, nested := strings.Cut(strings.TrimPrefix(in.Key, dir), "/"); nested {
			sizes[name] += in.Size
			continue
		}
		t, format, ok := takenAt(dir, in.Key)
		if !ok {
			continue
		}
		out = append(out, SelfBackupInfo{Key: in.Key, TakenAt: t, Size: in.Size, Format: format})
	}
	for i := range out {
		if out[i].Format == 2 {
			out[i].Size += sizes[selfBackupName(out[i].TakenAt)]
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TakenAt.Before(out[j].TakenAt) })
	return out, nil
}

// ErrNoSelfBackup means the blob store holds no self-backup.
var ErrNoSelfBackup = errors.New("the blob store holds no self-backup of Levqor's database (levqor.selfbackup)")

// openSelfBackup returns the archive a self-backup holds: the stored
// file of format 1, or the dump read back from its repository, opened
// with sealer.
func openSelfBackup(ctx context.Context, blobs blob.Store, sealer *keys.Sealer, dir string, b SelfBackupInfo) (io.ReadCloser, error) {
	if b.Format == 1 {
		return blobs.Get(ctx, b.Key)
	}
	rc, err := blobs.Get(ctx, b.Key)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	rc.Close()
	if err != nil {
		return nil, err
	}
	var rec selfRecord
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Format != 2 {
		return nil, fmt.Errorf("the self-backup record %s is damaged", b.Key)
	}
	name := selfBackupName(b.TakenAt)
	if !keys.IsSealed(rec.Key) || keys.Shown(rec.Key) != selfKeyShown(dir, name) {
		return nil, fmt.Errorf("the key of self-backup %s is not wrapped for it", b.Key)
	}
	if sealer == nil {
		return nil, fmt.Errorf("self-backup %s is sealed: set LEVQOR_MASTER_KEYS to the master keys of the deployment that took it", b.Key)
	}
	h, err := sealer.Open(rec.Key)
	if err != nil {
		return nil, fmt.Errorf("self-backup %s: %w", b.Key, err)
	}
	dataKey, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("the key of self-backup %s is malformed", b.Key)
	}
	key, err := repo.NewKey(dataKey)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, blobs, dir+name+"/", key)
	if err != nil {
		return nil, fmt.Errorf("self-backup %s: %w", b.Key, err)
	}
	m, err := r.LoadManifest(ctx, rec.Manifest)
	if err != nil {
		return nil, fmt.Errorf("self-backup %s: %w", b.Key, err)
	}
	if len(m.Nodes) != 1 {
		return nil, fmt.Errorf("self-backup %s holds %d files, not one dump", b.Key, len(m.Nodes))
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.WriteFile(ctx, pw, m.Nodes[0])) }()
	return pr, nil
}

// RestoreDatabase restores the self-backup under key (the newest when key
// is "") into the empty database at dbURL: pg_restore for PostgreSQL (a
// database holding anything is refused), the file itself for SQLite (a
// file already there is refused). sealer opens a sealed self-backup. It
// returns the self-backup restored. The caller migrates the database and
// records the restore (store's RecordSelfRestore), which holds the sweep
// and blob.gc back until ReconcileCatalog.
func RestoreDatabase(ctx context.Context, blobs blob.Store, sealer *keys.Sealer, dir, key, dbURL string) (SelfBackupInfo, error) {
	all, err := ListSelfBackups(ctx, blobs, dir)
	if err != nil {
		return SelfBackupInfo{}, err
	}
	var info SelfBackupInfo
	for _, b := range all {
		if key == "" || b.Key == key {
			info = b
		}
	}
	if info.Key == "" {
		if key == "" {
			return info, ErrNoSelfBackup
		}
		return info, fmt.Errorf("no self-backup %s in the blob store (levqor selfrestore list)", key)
	}
	if path, ok := store.SQLitePath(dbURL); ok {
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
				return info, fmt.Errorf("%s already exists: restore into a path with no database (and no -wal or -shm file) there", p)
			}
		}
	}
	rc, err := openSelfBackup(ctx, blobs, sealer, dir, info)
	if err != nil {
		return info, err
	}
	defer rc.Close()
	if path, ok := store.SQLitePath(dbURL); ok {
		dir, err := os.MkdirTemp(filepath.Dir(path), ".levqor-selfrestore-*")
		if err != nil {
			return info, err
		}
		defer os.RemoveAll(dir)
		if _, err := archive.RestoreDirectory(ctx, rc, dir, archive.RestoreOptions{}); err != nil {
			return info, err
		}
		return info, os.Rename(filepath.Join(dir, selfBackupFile), path)
	}
	_, err = archive.RestorePostgres(ctx, rc, dbURL, archive.RestoreOptions{})
	return info, err
}

// ErrCatalogRestored refuses a sweep or a garbage collection while the
// catalog restored from a self-backup is not reconciled with the blob
// store.
var ErrCatalogRestored = errors.New("the catalog was restored from a self-backup and is not yet reconciled with the blob store: " +
	"the sweep and blob.gc wait for `levqor selfrestore reconcile`")

// restoreGate fails with ErrCatalogRestored while a restore is not
// reconciled.
func (w *Worker) restoreGate(ctx context.Context) error {
	r, err := w.Store.PendingSelfRestore(ctx)
	if err != nil {
		return err
	}
	if r != nil {
		// Both: a command answers 409 with the message, a job tells it
		// apart with errors.Is.
		return errors.Join(ErrCatalogRestored, command.Fail(http.StatusConflict, "catalog_restored", "", fmt.Sprintf("%s (restored %s from %s)",
			ErrCatalogRestored.Error(), r.RestoredAt.UTC().Format(time.RFC3339), r.BackupKey)))
	}
	return nil
}

// ReconcileReport says what ReconcileCatalog found.
type ReconcileReport struct {
	// Adopted are the snapshots recorded again from blobs the restored
	// catalog did not know (taken after the self-backup).
	Adopted []string `json:"adopted"`
	// Missing are the snapshots whose blob is gone (purged after the
	// self-backup, or lost): marked corrupt, never a source's good one.
	Missing []string `json:"missing"`
	// Unknown are blobs under an account or source the catalog does not
	// know (created after the self-backup): left alone, as blob.gc leaves
	// them.
	Unknown []string `json:"unknown"`
}

// reconcileClockMargin is how much older than a restore a blob must be
// for ReconcileCatalog to judge it: more than the blob store's clock may
// lag or be skewed, less than any real gap between a database's loss and
// its restore (the services are stopped meanwhile).
const reconcileClockMargin = time.Minute

// ReconcileCatalog compares the catalog restored from a self-backup with
// the blob store, as actor: a blob under a known source that no snapshot
// holds is recorded as a snapshot again (unverified, taken when the blob
// was written), a snapshot whose blob is gone is marked corrupt, and the
// restore is marked reconciled, which lets the sweep and blob.gc run.
func (w *Worker) ReconcileCatalog(ctx context.Context, actor string) (ReconcileReport, error) {
	rep := ReconcileReport{Adopted: []string{}, Missing: []string{}, Unknown: []string{}}
	if w.Blobs == nil {
		return rep, errors.New(ErrBlobsNotConfiguredMessage)
	}
	pending, err := w.Store.PendingSelfRestore(ctx)
	if err != nil {
		return rep, err
	}
	if pending == nil {
		return rep, errors.New("no restore from a self-backup waits to be reconciled")
	}
	infos, err := w.Blobs.List(ctx, "")
	if err != nil {
		return rep, err
	}
	// Only what is older than the restore is judged: the services run
	// meanwhile, and a blob written since (a run's, not yet recorded) or
	// a snapshot recorded since is theirs. A blob's time is the store's
	// clock, coarse or skewed: it must be reconcileClockMargin older.
	var candidates []blob.Info
	for _, in := range infos {
		if strings.HasPrefix(in.Key, SelfBackupPrefix) || !in.ModTime.Before(pending.RestoredAt.Add(-reconcileClockMargin)) {
			continue
		}
		candidates = append(candidates, in)
	}
	keys := make([]string, len(candidates))
	for i, in := range candidates {
		keys[i] = in.Key
	}
	inUse, err := w.Store.BlobKeysInUse(ctx, keys)
	if err != nil {
		return rep, err
	}
	for _, in := range candidates {
		if inUse[in.Key] {
			continue
		}
		id, err := w.adopt(ctx, in, actor)
		if errors.Is(err, store.ErrNotFound) {
			rep.Unknown = append(rep.Unknown, in.Key)
			continue
		}
		if err != nil {
			return rep, err
		}
		rep.Adopted = append(rep.Adopted, id)
	}
	snaps, err := w.Store.SnapshotsInStates(ctx, store.SnapshotActive, store.SnapshotTrash)
	if err != nil {
		return rep, err
	}
	for _, s := range snaps {
		if s.RecordedAt.After(pending.RestoredAt) {
			continue
		}
		if _, err := w.Blobs.Stat(ctx, s.BlobKey); !errors.Is(err, blob.ErrNotFound) {
			if err != nil {
				return rep, err
			}
			continue
		}
		err := w.Store.InTx(ctx, func(tx *store.Tx) error {
			return w.recordIntegrity(ctx, tx, &s, store.SnapshotCorrupt, "its blob is gone from the blob store (found after restoring the catalog from a self-backup)", actor)
		})
		if err != nil {
			return rep, err
		}
		rep.Missing = append(rep.Missing, s.ID)
	}
	if err := w.Store.MarkSelfRestoresReconciled(ctx, time.Now()); err != nil {
		return rep, err
	}
	bus.Logger(ctx).WithFields(logrus.Fields{"adopted": len(rep.Adopted), "missing": len(rep.Missing), "unknown": len(rep.Unknown)}).
		Info("catalog reconciled with the blob store after a restore")
	return rep, nil
}

// adopt records the blob in as a snapshot of the source its key names
// (account/source/…), reading it once for its SHA-256. store.ErrNotFound
// means the key names no source of this catalog.
func (w *Worker) adopt(ctx context.Context, in blob.Info, actor string) (string, error) {
	parts := strings.Split(in.Key, "/")
	if len(parts) != 3 {
		return "", store.ErrNotFound
	}
	src, err := w.Store.GetSource(ctx, parts[1])
	if err != nil {
		return "", err
	}
	if src.AccountID != parts[0] {
		return "", store.ErrNotFound
	}
	rc, err := w.Blobs.Get(ctx, in.Key)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("reading blob %s: %w", in.Key, err)
	}
	id, err := command.NewID(SnapshotIDPrefix)
	if err != nil {
		return "", err
	}
	snap := store.Snapshot{
		ID: id, AccountID: src.AccountID, SourceID: src.ID, TakenAt: in.ModTime.UTC(), SizeBytes: n, SHA256: hex.EncodeToString(h.Sum(nil)),
		BlobKey: in.Key, Tags: []string{}, State: store.SnapshotActive, RecordedBy: actor, Integrity: store.SnapshotUnverified,
	}
	err = w.Store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertSnapshot(ctx, snap); err != nil {
			return err
		}
		_, err := tx.AppendRetentionAudit(ctx, store.RetentionAudit{
			AccountID: src.AccountID, SourceID: src.ID, SnapshotID: id, Action: AuditSnapshotRecorded, Actor: actor,
			Reasons: []string{"recorded again from its blob after the catalog was restored from a self-backup"},
			Detail:  []byte(fmt.Sprintf(`{"blob_key":%q}`, in.Key)),
		})
		return err
	})
	return id, err
}
