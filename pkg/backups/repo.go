package backups

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/archive"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// RepoFormat is the format of the snapshots runs write: the backup
// repository of package repo, encrypted and deduplicated per account.
// Snapshots of format 1 (package archive, one blob each) stay restorable
// and verifiable.
const RepoFormat = 2

// DumpName is the one file of a postgres snapshot: the pg_dump stream.
const DumpName = "database.dump"

// errNoDataKey is why an account's v2 snapshots cannot be read: its data
// key is gone, destroyed by the account's erasure.
var errNoDataKey = errors.New("the account has no data key (destroyed when its data was erased): its encrypted backups cannot be read")

// dataKeyShown is what an account's wrapped data key shows of itself, and
// binds it to: whose key it is. A wrapped key moved to another account's
// row does not open.
func dataKeyShown(accountID string) string { return "data key of " + accountID }

// dataKey returns the account's data key, unwrapped with
// LEVQOR_MASTER_KEYS; with create, an account without one gets one made,
// wrapped under the first master key, and stored.
func (w *Worker) dataKey(ctx context.Context, accountID string, create bool) ([]byte, error) {
	if w.Sealer == nil {
		return nil, errors.New("LEVQOR_MASTER_KEYS is not set: backups are encrypted under each account's data key, which a master key wraps")
	}
	wrapped, err := w.Store.AccountDataKey(ctx, accountID)
	if errors.Is(err, store.ErrNotFound) && create {
		raw, kerr := repo.NewDataKey()
		if kerr != nil {
			return nil, kerr
		}
		sealed, kerr := w.Sealer.Seal(hex.EncodeToString(raw), dataKeyShown(accountID))
		if kerr != nil {
			return nil, kerr
		}
		wrapped, err = w.Store.CreateAccountDataKey(ctx, accountID, sealed, time.Now())
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoDataKey
	}
	if err != nil {
		return nil, err
	}
	return unwrapDataKey(w.Sealer, accountID, wrapped)
}

// unwrapDataKey opens a wrapped data key, refusing one not wrapped for
// accountID.
func unwrapDataKey(sealer *keys.Sealer, accountID, wrapped string) ([]byte, error) {
	if !keys.IsSealed(wrapped) || keys.Shown(wrapped) != dataKeyShown(accountID) {
		return nil, fmt.Errorf("the stored data key of %s is not wrapped for it", accountID)
	}
	h, err := sealer.Open(wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrapping the data key of %s: %w", accountID, err)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != repo.KeySize {
		return nil, fmt.Errorf("the data key of %s is malformed", accountID)
	}
	return raw, nil
}

// openRepo opens the account's repository in blobs; create makes the
// account's data key if it has none (a run does; a restore or a check
// never does).
func (w *Worker) openRepo(ctx context.Context, blobs blob.Store, accountID string, create bool) (*repo.Repo, error) {
	raw, err := w.dataKey(ctx, accountID, create)
	if err != nil {
		return nil, err
	}
	key, err := repo.NewKey(raw)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, blobs, repo.AccountPrefix(accountID), key)
	if err != nil {
		return nil, err
	}
	r.LockWindow = w.settings().LockWindow
	if len(r.Damaged) > 0 {
		logrus.WithFields(logrus.Fields{"account_id": accountID, "indexes": r.Damaged}).
			Error("repository indexes fail their integrity check: the snapshots needing their chunks will fail verification, and the next backups store those chunks again")
	}
	return r, nil
}

// manifestID is the repository id of a v2 snapshot, from its blob key.
func manifestID(s *store.Snapshot) (repo.ID, error) {
	return repo.ParseID(s.BlobKey[strings.LastIndexByte(s.BlobKey, '/')+1:])
}

// isV2 reports whether s is a snapshot of the backup repository.
func isV2(s *store.Snapshot) bool {
	m, ok := SummaryOf(s)
	return ok && m.Format == RepoFormat
}

// previousManifest is the manifest of the source's newest snapshot in
// the repository that a new run may take unchanged files from, or nil.
// A manifest that cannot be read costs only speed: every file is read.
func (w *Worker) previousManifest(ctx context.Context, log logrus.FieldLogger, r *repo.Repo, sourceID string) *repo.Manifest {
	snaps, err := w.Store.SourceSnapshots(ctx, sourceID)
	if err != nil {
		log.WithField("error", err.Error()).Warn("could not list the source's snapshots: every file is read")
		return nil
	}
	var newest *store.Snapshot
	for i := range snaps {
		s := &snaps[i]
		if !isV2(s) || s.Integrity == store.SnapshotCorrupt || s.State == store.SnapshotPurging || s.State == store.SnapshotPurged {
			continue
		}
		if newest == nil || s.TakenAt.After(newest.TakenAt) {
			newest = s
		}
	}
	if newest == nil {
		return nil
	}
	id, err := manifestID(newest)
	if err == nil {
		var m *repo.Manifest
		if m, err = r.LoadManifest(ctx, id); err == nil {
			return m
		}
	}
	log.WithFields(logrus.Fields{"snapshot_id": newest.ID, "error": err.Error()}).Warn("could not read the previous snapshot's manifest: every file is read")
	return nil
}

// meteredBlobs counts what a run writes to the blob store and stops it,
// with errQuota, once that would pass room.
type meteredBlobs struct {
	blob.Store
	room     int64
	put      atomic.Int64
	exceeded atomic.Bool
}

func (m *meteredBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, string, error) {
	size, sum, err := m.Store.Put(ctx, key, &meteredReader{m: m, r: r})
	if err == nil {
		m.put.Add(size)
	}
	return size, sum, err
}

type meteredReader struct {
	m *meteredBlobs
	r io.Reader
	n int64
}

func (mr *meteredReader) Read(p []byte) (int, error) {
	n, err := mr.r.Read(p)
	mr.n += int64(n)
	if mr.m.put.Load()+mr.n > mr.m.room {
		mr.m.exceeded.Store(true)
		return n, errQuota
	}
	return n, err
}

// backupToRepo backs the source up into its account's repository,
// taking unchanged files from the source's previous snapshot, and
// reports progress as stream does. A run that fails before storing its
// index deletes its packs; after that, what it stored stays for the next
// run to use (and for a prune to remove if none does).
func (w *Worker) backupToRepo(ctx context.Context, log logrus.FieldLogger, src *store.BackupSource, cfg SourceConfig, runID string, room int64) (streamed, error) {
	mb := &meteredBlobs{Store: w.Blobs, room: room}
	r, err := w.openRepo(ctx, mb, src.AccountID, true)
	if err != nil {
		return streamed{}, err
	}
	var done atomic.Int64
	r.Progress = func(n int64) { done.Store(n) }
	stopProgress := w.reportProgress(ctx, log, runID, &done)
	defer stopProgress()

	var (
		m    *repo.Manifest
		dump []byte
	)
	switch src.Kind {
	case KindDirectory:
		_, m, err = r.BackupDirectory(ctx, cfg.Path, w.previousManifest(ctx, log, r, src.ID))
	case KindPostgres:
		m, dump, err = backupDump(ctx, r, cfg.DSN)
	default:
		err = fmt.Errorf("kind %s does not run", src.Kind)
	}
	switch {
	case mb.exceeded.Load():
		return streamed{stored: mb.put.Load()}, errQuota
	case err != nil:
		return streamed{stored: mb.put.Load()}, err
	}
	sum := summaryV2(src.Kind, m)
	if dump != nil {
		sum.DumpSHA256, sum.DumpSize = hex.EncodeToString(dump), m.Stats.Bytes
	}
	return streamed{size: mb.put.Load(), sum: m.Object.SHA256, key: m.Object.Key, summary: sum}, nil
}

// backupDump streams pg_dump's output into the repository as one file,
// and returns the dump's SHA-256 with the manifest.
func backupDump(ctx context.Context, r *repo.Repo, dsn string) (*repo.Manifest, []byte, error) {
	pr, pw := io.Pipe()
	type dumped struct {
		sum []byte
		err error
	}
	out := make(chan dumped, 1)
	go func() {
		_, sum, err := archive.DumpPostgres(ctx, pw, dsn, nil)
		_ = pw.CloseWithError(err)
		out <- dumped{sum, err}
	}()
	_, m, err := r.BackupStream(ctx, DumpName, pr)
	_ = pr.CloseWithError(errStoppedReading)
	d := <-out
	switch {
	case d.err != nil && !errors.Is(d.err, errStoppedReading):
		return nil, nil, d.err // the dump failed, and the repository with it
	case err != nil:
		return nil, nil, err
	}
	return m, d.sum, nil
}

// errStoppedReading ends a dump the repository no longer reads.
var errStoppedReading = errors.New("the repository stopped reading the dump")

// summaryV2 is what a snapshot records of its manifest.
func summaryV2(kind string, m *repo.Manifest) ManifestSummary {
	s := ManifestSummary{Kind: kind, Format: RepoFormat, SourceBytes: m.Stats.Bytes, CreatedAt: m.Time.UTC(),
		Unchanged: m.Stats.Unchanged, ReadBytes: m.Stats.ReadBytes, Chunks: m.Stats.Chunks, NewChunks: m.Stats.NewChunks,
		ManifestBytes: m.Object.Size}
	for _, n := range m.Nodes {
		switch n.Type {
		case repo.TypeFile:
			s.Files++
		case repo.TypeDir:
			s.Dirs++
		case repo.TypeSymlink:
			s.Symlinks++
		}
	}
	return s
}

// loadV2 opens the repository of s's account and reads s's manifest,
// checking it is the one recorded. A missing manifest wraps
// blob.ErrNotFound; a damaged one, or one not recorded, repo.ErrIntegrity.
func (w *Worker) loadV2(ctx context.Context, s *store.Snapshot) (*repo.Repo, *repo.Manifest, error) {
	r, err := w.openRepo(ctx, w.Blobs, s.AccountID, false)
	if err != nil {
		// A master key missing from LEVQOR_MASTER_KEYS fails here: name
		// the snapshot that could not be read.
		return nil, nil, fmt.Errorf("snapshot %s: %w", s.ID, err)
	}
	m, err := loadManifest(ctx, r, s)
	if err != nil {
		return nil, nil, err
	}
	return r, m, nil
}

// loadManifest reads the manifest of snapshot s from its account's
// repository r, checking it against the SHA-256 recorded.
func loadManifest(ctx context.Context, r *repo.Repo, s *store.Snapshot) (*repo.Manifest, error) {
	id, err := manifestID(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", repo.ErrIntegrity, err)
	}
	m, err := r.LoadManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Object.SHA256 != s.SHA256 {
		return nil, fmt.Errorf("%w: its manifest's SHA-256 is %s, %s was recorded", repo.ErrIntegrity, m.Object.SHA256, s.SHA256)
	}
	return m, nil
}

// checkV2 is check for a snapshot of the repository: its manifest, then
// every chunk of every file, MAC and id.
func (w *Worker) checkV2(ctx context.Context, s *store.Snapshot) (string, error) {
	r, m, err := w.loadV2(ctx, s)
	switch {
	case errors.Is(err, errNoDataKey):
		return err.Error(), nil
	case errors.Is(err, blob.ErrNotFound):
		return fmt.Sprintf("its manifest %s is missing from the blob store", s.BlobKey), nil
	case errors.Is(err, repo.ErrIntegrity):
		return err.Error(), nil
	case err != nil:
		return "", err
	}
	sum, _ := SummaryOf(s)
	_, n, err := r.Check(ctx, m)
	switch {
	case errors.Is(err, repo.ErrIntegrity):
		return err.Error(), nil
	case err != nil:
		return "", err
	case n != sum.SourceBytes:
		return fmt.Sprintf("its files hold %d bytes, %d were recorded", n, sum.SourceBytes), nil
	}
	return "", nil
}

// restoreV2 is restoreBlob for a snapshot of the repository. Damage is
// returned wrapping archive.ErrCorrupt, as a v1 restore returns it.
func (w *Worker) restoreV2(ctx context.Context, snap *store.Snapshot, kind, dir, dsn string, include []string, opts archive.RestoreOptions) (archive.Stats, error) {
	r, m, err := w.loadV2(ctx, snap)
	if errors.Is(err, repo.ErrIntegrity) || errors.Is(err, errNoDataKey) {
		return archive.Stats{}, fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
	}
	if err != nil {
		return archive.Stats{}, err
	}
	accept, err := includes(m, include)
	if err != nil {
		return archive.Stats{}, err
	}
	var stats archive.Stats
	if kind == KindDirectory {
		stats, err = archive.RestoreInto(dir, opts, func(root *os.Root) (archive.Stats, error) {
			files, n, err := r.RestoreTo(ctx, m, root, accept)
			return archive.Stats{Files: files, Bytes: n}, err
		})
	} else {
		stats, err = restoreDump(ctx, r, m, dsn, opts)
	}
	if errors.Is(err, repo.ErrIntegrity) {
		err = fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
	}
	return stats, err
}

// errPathNotInSnapshot is wrapped by the error of a path a snapshot does
// not hold.
var errPathNotInSnapshot = errors.New("no such path in the snapshot")

// includes is the filter of a restore of paths (files, or directories
// with everything under them) of m; nil restores everything. A path m
// does not hold is an error naming it.
func includes(m *repo.Manifest, paths []string) (func(repo.Node) bool, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	for _, p := range paths {
		if _, ok := m.Find(p); !ok {
			return nil, fmt.Errorf("%w: %q", errPathNotInSnapshot, p)
		}
	}
	return func(n repo.Node) bool {
		for _, p := range paths {
			if n.Path == p || strings.HasPrefix(n.Path, p+"/") {
				return true
			}
		}
		return false
	}, nil
}

// restoreDump streams the dump of a postgres snapshot into pg_restore.
func restoreDump(ctx context.Context, r *repo.Repo, m *repo.Manifest, dsn string, opts archive.RestoreOptions) (archive.Stats, error) {
	var dump *repo.Node
	for i := range m.Nodes {
		if m.Nodes[i].Type == repo.TypeFile {
			dump = &m.Nodes[i]
		}
	}
	if dump == nil {
		return archive.Stats{}, fmt.Errorf("%w: the snapshot holds no dump", repo.ErrIntegrity)
	}
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(r.WriteFile(ctx, pw, *dump)) }()
	stats, err := archive.RestorePostgresDump(ctx, pr, dsn, opts)
	_ = pr.CloseWithError(errors.New("the restore stopped reading the dump"))
	return stats, err
}
