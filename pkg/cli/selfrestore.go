package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/telemetry"
)

func init() {
	registerGroup("selfrestore", "list | run | reconcile: bring Levqor's own database back from its self-backups",
		"selfrestore list [--json]\nselfrestore run [--from <key>]\nselfrestore reconcile [--json]",
		map[string]commandFunc{"list": runSelfRestoreList, "run": runSelfRestoreRun, "reconcile": runSelfRestoreReconcile})
}

var envSelfRestore = []string{"LEVQOR_DATABASE_URL", "LEVQOR_BLOB_DIR", "LEVQOR_BLOB_S3_*", "LEVQOR_MASTER_KEYS"}

const selfRestoreAbout = "The job levqor.selfbackup dumps Levqor's database into the blob store every day (levqor-self/…), sealed under a key LEVQOR_MASTER_KEYS wraps: restoring one needs the master keys of the deployment that took it. " +
	"`run` restores one (the newest, or --from) into the empty database at LEVQOR_DATABASE_URL and migrates it; " +
	"the sweep and blob.gc then wait for `reconcile`, which records again the snapshots taken after the self-backup " +
	"from their blobs and marks corrupt those whose blob is gone. docs/operating.md has the whole recovery."

// selfRestoreSetup reads the configuration and makes the logger (warnings
// and worse) of a selfrestore command.
func selfRestoreSetup(opts Options, stderr io.Writer) (config.Config, logrus.FieldLogger, error) {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return cfg, nil, err
	}
	devDefaults(&cfg)
	log, err := telemetry.NewLogger(stderr, cfg.LogFormat, "warn")
	return cfg, log, err
}

func runSelfRestoreList(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("selfrestore list", "selfrestore list [--json]", stdout, envSelfRestore...).describe(selfRestoreAbout)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, log, err := selfRestoreSetup(opts, stderr)
	if err != nil {
		return err
	}
	list, err := service.SelfBackups(ctx, cfg, log)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"data": list})
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no self-backups in the blob store")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tTAKEN\tSIZE")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", b.Key, b.TakenAt.Format(time.RFC3339), b.Size)
	}
	return tw.Flush()
}

func runSelfRestoreRun(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("selfrestore run", "selfrestore run [--from <key>]", stdout, envSelfRestore...).describe(selfRestoreAbout)
	from := fs.String("from", "", "the self-backup to restore (levqor selfrestore list); default the newest")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, log, err := selfRestoreSetup(opts, stderr)
	if err != nil {
		return err
	}
	info, err := service.SelfRestore(ctx, cfg, *from, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `restored %s (taken %s) into the database and migrated it.
Next:
  1. start ingest, the workers and the scheduler;
  2. replay what the database missed since the self-backup, per consumer:
       levqor replay --stream STRIPE --consumer billing-stripe --since %s
     (events it already applied are recognised and skipped);
  3. levqor selfrestore reconcile   (the sweep and blob.gc wait for it)
`, info.Key, info.TakenAt.Format(time.RFC3339), info.TakenAt.Add(-time.Minute).Format(time.RFC3339))
	return nil
}

func runSelfRestoreReconcile(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("selfrestore reconcile", "selfrestore reconcile [--json]", stdout, envOf(envSelfRestore, []string{"USER"})...).describe(selfRestoreAbout)
	asJSON := fs.Bool("json", false, "print JSON")
	actor := addActorFlag(fs, opts)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, log, err := selfRestoreSetup(opts, stderr)
	if err != nil {
		return err
	}
	rep, err := service.ReconcileCatalog(ctx, cfg, *actor, log)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "reconciled: %d snapshots recorded again from their blobs, %d marked corrupt (blob gone), %d blobs of sources the catalog does not know left alone\n",
		len(rep.Adopted), len(rep.Missing), len(rep.Unknown))
	for _, id := range rep.Adopted {
		fmt.Fprintf(stdout, "  recorded again  %s\n", id)
	}
	for _, id := range rep.Missing {
		fmt.Fprintf(stdout, "  blob gone       %s\n", id)
	}
	for _, k := range rep.Unknown {
		fmt.Fprintf(stdout, "  unknown source  %s\n", k)
	}
	fmt.Fprintln(stdout, "the sweep and blob.gc run again")
	return nil
}
