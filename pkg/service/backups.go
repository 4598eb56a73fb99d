package service

import (
	"path/filepath"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
)

// retentionSettings are the sweep limits of the configuration.
func (e *Env) retentionSettings() backups.Settings {
	return backups.Settings{
		MaxShare: e.Cfg.SweepMaxShare, TrashGrace: e.Cfg.TrashGrace,
		AllowedPaths: e.Cfg.BackupPaths, ProtectedPaths: ownDirs(e.Cfg.DataDir, e.Cfg.BlobDir), LockWindow: e.Cfg.BlobLockWindow(), MaxRuns: e.Cfg.BackupMaxRuns, MaxRunsPerAccount: e.Cfg.BackupMaxRunsPerAccount,
		RunTimeout: e.Cfg.BackupTimeout, BusyWait: e.Cfg.BackupBusyWait, VerifySample: e.Cfg.VerifySample, OverdueGrace: e.Cfg.OverdueGrace,
		RunReapAfter: e.Cfg.RunReapAfter, GCAge: e.Cfg.BlobGCAge, DrillEvery: e.Cfg.DrillEvery, DrillDSN: e.Cfg.DrillPostgresURL,
		DatabaseURL: e.Cfg.DatabaseURL, SelfBackupKeep: e.Cfg.SelfBackupKeep,
	}.WithDefaults()
}

// ownDirs are Levqor's own directories, absolute: no source or restore
// target may lie in or hold one.
func ownDirs(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if a, err := filepath.Abs(d); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// backupsWorker builds the backups worker. Its blobs live in
// the S3 bucket of LEVQOR_BLOB_S3_* when LEVQOR_BLOB_S3_ENDPOINT is set,
// else under LEVQOR_BLOB_DIR; without either (a process that only builds
// routes, such as the operator tools) it has no blob store and fails the
// commands and sweeps that need one, naming the variable. RunWorkers
// requires one.
func (e *Env) backupsWorker() (*backups.Worker, error) {
	if e.retentionMetrics == nil {
		e.retentionMetrics = backups.NewMetrics(e.registerer())
	}
	sealer, err := e.Sealer()
	if err != nil {
		return nil, err
	}
	w := &backups.Worker{
		Sealer:   sealer,
		Store:    e.Store,
		Runtime:  &command.Runtime{Store: e.Store, NC: e.NC, Prefix: e.Cfg.Topology.Prefix},
		Topology: e.Cfg.Topology,
		Settings: e.retentionSettings(),
		Metrics:  e.retentionMetrics,
	}
	if e.JS != nil {
		bk, err := e.BusKey()
		if err != nil {
			return nil, err
		}
		w.Publisher = bus.NewPublisher(e.JS, e.Cfg.Topology, bus.WithBusKey(bk))
	}
	blobs, err := e.blobStore()
	if err != nil {
		return nil, err
	}
	w.Blobs = blobs
	return w, nil
}

// blobStore is the blob store of LEVQOR_BLOB_S3_* or LEVQOR_BLOB_DIR, or
// nil when neither is set.
func (e *Env) blobStore() (blob.Store, error) {
	switch {
	case e.Cfg.BlobS3.Enabled():
		return blob.NewS3(e.Cfg.BlobS3.StoreConfig())
	case e.Cfg.BlobDir != "":
		return blob.NewLocal(e.Cfg.BlobDir)
	}
	return nil, nil
}
