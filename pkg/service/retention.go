package service

import (
	"github.com/levqor/levqor/pkg/api/command"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
)

// retentionSettings are the sweep limits of the configuration.
func (e *Env) retentionSettings() backups.Settings {
	return backups.Settings{MaxShare: e.Cfg.SweepMaxShare, TrashGrace: e.Cfg.TrashGrace}.WithDefaults()
}

// retentionWorker builds the backup-retention worker. Its blobs live under
// LEVQOR_BLOB_DIR; without one (a process that only builds routes, such as
// the operator tools) it has no blob store and fails the commands and
// sweeps that need one, naming the variable. RunWorkers requires it.
func (e *Env) retentionWorker() (*backups.Worker, error) {
	if e.retentionMetrics == nil {
		e.retentionMetrics = backups.NewMetrics(e.Reg)
	}
	w := &backups.Worker{
		Store:    e.Store,
		Runtime:  &command.Runtime{Store: e.Store, NC: e.NC, Prefix: e.Cfg.Topology.Prefix},
		Topology: e.Cfg.Topology,
		Settings: e.retentionSettings(),
		Metrics:  e.retentionMetrics,
	}
	if e.Cfg.BlobDir != "" {
		blobs, err := blob.NewLocal(e.Cfg.BlobDir)
		if err != nil {
			return nil, err
		}
		w.Blobs = blobs
	}
	return w, nil
}
