package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/levqor/levqor/pkg/backups"
	apicommand "github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/telemetry"
)

func init() {
	register("check", "[--account acc_…] [--read-data-subset all|P%|n/m]: read the backup repositories and mark damaged snapshots corrupt", runCheck)
}

const (
	checkUsage = "check [--account acc_…] [--read-data-subset all|P%|n/m] [--rebuild-index] [--json]"
	checkAbout = "Reads the backup repositories (every account's, or one's) as a restore would, writing nothing: " +
		"each pack selected is read whole, its SHA-256 must be its name and every chunk in it must open under the account's key (its MAC) and hash to its id; " +
		"every pack the indexes name must exist, and every snapshot's manifest must open and match its recorded SHA-256. " +
		"A snapshot that needs a missing or corrupt pack is marked corrupt (audit entry, levqor.event.backup.corrupt, as backup.verify does); " +
		"with every pack read, the others are marked verified. Nothing is deleted or repaired. " +
		"--read-data-subset reads a share of the packs: a random P%, or group n of m (by pack id), so that n = 1 … m over m days reads everything. " +
		"--rebuild-index (with --account) first rewrites the account's index from its packs' own sealed headers, replacing indexes that do not open (which stop its prunes), holding the repository as a prune does. " +
		"It needs the database, the blob store and the master keys of the workers (in dev mode, found in LEVQOR_DATA_DIR). Exit code 3 when something is damaged."
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	flags := newFlags("check", checkUsage, stdout, envOf(envStore, []string{"LEVQOR_BLOB_DIR", "LEVQOR_BLOB_S3_*", "LEVQOR_MASTER_KEYS", "USER"})...).describe(checkAbout)
	account := flags.String("account", "", "check this account's repository only (acc_…)")
	subsetFlag := flags.String("read-data-subset", "all", "which packs to read: all, a random share (10%) or group n/m (2/7)")
	rebuild := flags.Bool("rebuild-index", false, "rewrite the account's index from its packs' headers first (needs --account)")
	asJSON := flags.Bool("json", false, "print the report as JSON")
	actor := addActorFlag(flags, opts)
	if err := flags.parseNone(args); err != nil {
		return err
	}
	if *account != "" && !apicommand.ValidID(*account, "acc_") {
		return usageError("--account: %q is not an account id (acc_ followed by 26 letters and digits)", *account)
	}
	if *rebuild && *account == "" {
		return usageError("--rebuild-index needs --account: the repository to rebuild")
	}
	subset, err := backups.ParseSubset(*subsetFlag)
	if err != nil {
		return usageError("--read-data-subset: %v", err)
	}
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	devDefaults(&cfg)
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	log, err := telemetry.NewLogger(stderr, cfg.LogFormat, "warn")
	if err != nil {
		return err
	}
	if *rebuild {
		rb, err := service.RebuildIndex(ctx, cfg, st, *account, log)
		if err != nil {
			return schemaHint(err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "index rebuilt from %d packs (%d chunks; %d failing their check left out), %d damaged indexes replaced, %d packs unreadable\n",
				rb.Packs, rb.Chunks, rb.BadChunks, len(rb.Replaced), len(rb.Unreadable))
			for _, u := range rb.Unreadable {
				fmt.Fprintf(stdout, "  unreadable pack %s\n", u)
			}
		}
	}
	rep, err := service.CheckRepositories(ctx, cfg, st, *account, subset, "check:"+*actor, log)
	if err != nil {
		return schemaHint(err)
	}
	if *asJSON {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "read %d of %d packs (%s), %s, %d chunks: every MAC checked\n",
			rep.PacksRead, rep.Packs, rep.Subset, formatBytes(rep.BytesRead), rep.Chunks)
		fmt.Fprintf(stdout, "missing packs %d, corrupt packs %d, damaged indexes %d, packs no index names %d\n",
			rep.MissingPacks, rep.CorruptPacks, rep.DamagedIndexes, rep.UnindexedPacks)
		fmt.Fprintf(stdout, "%d snapshots of %d accounts: %d verified, %d corrupt\n", rep.Snapshots, rep.Accounts, rep.Verified, rep.Corrupt)
		for _, f := range rep.Findings {
			fmt.Fprintf(stdout, "  %s (%s, %s): %s\n", f.SnapshotID, f.SourceID, f.AccountID, f.Reason)
		}
	}
	if rep.Corrupt > 0 || rep.MissingPacks > 0 || rep.CorruptPacks > 0 || rep.DamagedIndexes > 0 {
		return &exitError{code: ExitPartial, msg: "check: the backup repository is damaged (see above)"}
	}
	return nil
}

// devDefaults points cfg at the dev mode of LEVQOR_DATA_DIR for what
// the environment does not set: its master key and its blob directory.
func devDefaults(cfg *config.Config) {
	if cfg.MasterKeys == "" {
		if s, err := service.ReadDevSecrets(cfg.DataDir); err == nil {
			cfg.MasterKeys = s.MasterKey
		}
	}
	if cfg.BlobDir == "" && !cfg.BlobS3.Enabled() {
		if dir := filepath.Join(cfg.DataDir, "blobs"); isDir(dir) {
			cfg.BlobDir = dir
		}
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
