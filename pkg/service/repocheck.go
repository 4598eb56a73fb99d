package service

import (
	"context"
	"errors"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/store"
)

// CheckRepositories is `levqor check`: it reads the backup repositories
// of cfg's blob store with cfg's master keys, as the backups worker
// would, and records what it finds in st (see
// backups.Worker.CheckRepositories).
func CheckRepositories(ctx context.Context, cfg config.Config, st *store.Store, accountID string, subset backups.Subset, actor string, log logrus.FieldLogger) (backups.CheckReport, error) {
	env := &Env{Cfg: cfg, Log: log, Store: st}
	b, err := env.blobStore()
	if err != nil {
		return backups.CheckReport{}, err
	}
	if b == nil {
		return backups.CheckReport{}, errors.New("LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_ENDPOINT: the workers' blob store is required")
	}
	sealer, err := env.Sealer()
	if err != nil {
		return backups.CheckReport{}, err
	}
	w := &backups.Worker{Store: st, Blobs: b, Sealer: sealer, Topology: cfg.Topology}
	return w.CheckRepositories(ctx, accountID, subset, actor)
}
