package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	registerGroup("billing", "reconcile [--json]: repair billing state that drifted from Stripe, now", billingReconcileUsage,
		map[string]commandFunc{"reconcile": runBillingReconcile})
}

// billingReconcileTimeout bounds an on-demand reconciliation: listing
// every subscription from Stripe, a hundred per page.
const billingReconcileTimeout = 10 * time.Minute

const billingReconcileUsage = "billing reconcile [--dry-run] [--json] [--actor name]"

// runBillingReconcile runs what the daily billing.reconcile tick runs, once:
// it lists every subscription from the Stripe API (STRIPE_API_KEY, and
// STRIPE_API_BASE for stripe-mock) and repairs the database
// (LEVQOR_DATABASE_URL, or dev mode's SQLite file). The events the repairs
// announce go out through the outbox when a workers process (or dev mode)
// runs its relay.
func runBillingReconcile(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("billing reconcile", billingReconcileUsage, stdout,
		envOf(envStripe, envStore, []string{"LEVQOR_CATALOG", "LEVQOR_SUBJECT_PREFIX", "USER"})...).
		describe("Lists every subscription from Stripe and repairs what drifted in the database, as the daily\n" +
			"billing.reconcile job does. --dry-run prints the repairs it would make and changes nothing.\n" +
			"Either way the run is recorded in the audit trail (levqor audit).")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	dryRun := fs.Bool("dry-run", false, "print the repairs a run would make; change nothing")
	actor := addActorFlag(fs, opts)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	key := cfg.StripeAPIKey
	if key == "" && cfg.StripeAPIBase != "" {
		key = config.StripeDevAPIKey // stripe-mock, as dev mode does
	}
	if key == "" {
		return errors.New("STRIPE_API_KEY: required to compare with Stripe (in dev, STRIPE_API_BASE=http://127.0.0.1:12111 with stripe-mock running)")
	}
	cfg.StripeAPIKey = key
	ctx, cancel := context.WithTimeout(ctx, billingReconcileTimeout)
	defer cancel()
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	// Repairs are printed below; the logger only says what went wrong.
	log := logrus.New()
	log.Out = stderr
	log.Level = logrus.ErrorLevel
	w, err := (&service.Env{Cfg: cfg, Store: st, Log: log}).BillingWorker()
	if err != nil {
		return err
	}
	reconcile := w.Reconcile
	if *dryRun {
		reconcile = w.ReconcileDryRun
	}
	rep, err := reconcile(ctx, time.Now())
	outcome := store.AuditOutcomeOK
	switch {
	case err != nil:
		outcome = store.AuditOutcomeFailed
	case *dryRun:
		outcome = store.AuditOutcomeDryRun
	}
	if aerr := auditCLI(ctx, st, stderr, *actor, ops.ActionBillingReconcile, map[string]any{"dry_run": *dryRun},
		map[string]any{"listed": rep.Listed, "repairs": len(rep.Repairs)}, outcome); aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return schemaHint(fmt.Errorf("reconciling: %w", err))
	}
	if *asJSON {
		if rep.Repairs == nil {
			rep.Repairs = []billing.Repair{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: listed %d subscription(s) from Stripe; %d repair(s) would be made, none was\n", rep.Listed, len(rep.Repairs))
	} else {
		fmt.Fprintf(stdout, "listed %d subscription(s) from Stripe; %d repair(s)\n", rep.Listed, len(rep.Repairs))
	}
	if len(rep.Repairs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSUBSCRIPTION\tACCOUNT\tFROM\tTO")
	for _, r := range rep.Repairs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.SubscriptionID, dash(r.AccountID), dash(r.From), r.To)
	}
	return tw.Flush()
}
