package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// selfBlobs is the blob store of cfg (LEVQOR_BLOB_S3_* or LEVQOR_BLOB_DIR),
// where the self-backups are.
func selfBlobs(cfg config.Config, log logrus.FieldLogger) (blob.Store, error) {
	b, err := (&Env{Cfg: cfg, Log: log}).blobStore()
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_ENDPOINT: the blob store the self-backups are in is required")
	}
	return b, nil
}

// SelfBackups lists the self-backups of Levqor's database in cfg's blob
// store, oldest first.
func SelfBackups(ctx context.Context, cfg config.Config, log logrus.FieldLogger) ([]backups.SelfBackupInfo, error) {
	b, err := selfBlobs(cfg, log)
	if err != nil {
		return nil, err
	}
	return backups.ListSelfBackups(ctx, b, backups.SelfBackupDir(cfg.Topology))
}

// SelfRestore restores the self-backup under key (the newest when "")
// into cfg's database, which must be empty, migrates it to this release's
// schema and records the restore: until ReconcileCatalog, the sweep and
// blob.gc refuse to run.
func SelfRestore(ctx context.Context, cfg config.Config, key string, log logrus.FieldLogger) (backups.SelfBackupInfo, error) {
	if cfg.DatabaseURL == "" {
		return backups.SelfBackupInfo{}, errors.New("LEVQOR_DATABASE_URL: required: the empty database to restore into")
	}
	b, err := selfBlobs(cfg, log)
	if err != nil {
		return backups.SelfBackupInfo{}, err
	}
	var sealer *keys.Sealer
	if cfg.MasterKeys != "" {
		if sealer, err = keys.ParseMasterKeys(cfg.MasterKeys); err != nil {
			return backups.SelfBackupInfo{}, err
		}
	}
	info, err := backups.RestoreDatabase(ctx, b, sealer, backups.SelfBackupDir(cfg.Topology), key, cfg.DatabaseURL)
	if err != nil {
		return info, err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return info, fmt.Errorf("opening the restored database: %w", err)
	}
	defer st.Close()
	id, err := command.NewID("rst_")
	if err != nil {
		return info, err
	}
	// The restore is recorded before anything else, so that the sweep and
	// blob.gc wait even if the migration fails; a self-backup older than
	// the table gets it from the migration first.
	r := store.SelfRestore{ID: id, BackupKey: info.Key, BackupTakenAt: info.TakenAt, RestoredAt: time.Now()}
	recorded := st.RecordSelfRestore(ctx, r) == nil
	if err := st.Migrate(ctx); err != nil {
		return info, fmt.Errorf("migrating the restored database: %w", err)
	}
	if !recorded {
		return info, st.RecordSelfRestore(ctx, r)
	}
	return info, nil
}

// ReconcileCatalog reconciles the catalog restored by SelfRestore with
// cfg's blob store, as actor (backups.Worker.ReconcileCatalog).
func ReconcileCatalog(ctx context.Context, cfg config.Config, actor string, log logrus.FieldLogger) (backups.ReconcileReport, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return backups.ReconcileReport{}, err
	}
	defer st.Close()
	b, err := selfBlobs(cfg, log)
	if err != nil {
		return backups.ReconcileReport{}, err
	}
	env := &Env{Cfg: cfg, Log: log, Store: st}
	w := &backups.Worker{Store: st, Blobs: b, Topology: cfg.Topology, Settings: env.retentionSettings()}
	return w.ReconcileCatalog(ctx, "selfrestore:"+strings.TrimSpace(actor))
}
