package service

import (
	"context"
	"errors"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// CheckRepositories is `levqor check`: it reads the backup repositories
// of cfg's blob store with cfg's master keys, as the backups worker
// would, and records what it finds in st (see
// backups.Worker.CheckRepositories).
func CheckRepositories(ctx context.Context, cfg config.Config, st *store.Store, accountID string, subset backups.Subset, actor string, log logrus.FieldLogger) (backups.CheckReport, error) {
	w, err := repoWorker(cfg, st, log)
	if err != nil {
		return backups.CheckReport{}, err
	}
	return w.CheckRepositories(ctx, accountID, subset, actor)
}

// RebuildIndex is `levqor check --rebuild-index`: the account's index
// rewritten from its packs' headers (see backups.Worker.RebuildIndex).
func RebuildIndex(ctx context.Context, cfg config.Config, st *store.Store, accountID string, log logrus.FieldLogger) (repo.RebuildReport, error) {
	w, err := repoWorker(cfg, st, log)
	if err != nil {
		return repo.RebuildReport{}, err
	}
	return w.RebuildIndex(ctx, accountID)
}

// repoWorker is a backups worker over cfg's blob store and master keys,
// for the operator's repository commands.
func repoWorker(cfg config.Config, st *store.Store, log logrus.FieldLogger) (*backups.Worker, error) {
	env := &Env{Cfg: cfg, Log: log, Store: st}
	b, err := env.blobStore()
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_ENDPOINT: the workers' blob store is required")
	}
	sealer, err := env.Sealer()
	if err != nil {
		return nil, err
	}
	return &backups.Worker{Store: st, Blobs: b, Sealer: sealer, Topology: cfg.Topology, Settings: env.retentionSettings()}, nil
}
