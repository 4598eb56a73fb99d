package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/levqor/levqor/pkg/ops"
)

func init() {
	registerGroup("stripe", "backfill --since t [--dry-run]: publish Stripe events the ledger never saw",
		stripeBackfillUsage, map[string]commandFunc{"backfill": runStripeBackfill})
}

const stripeBackfillUsage = "stripe backfill --since t [--dry-run] [--json]"

func runStripeBackfill(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("stripe backfill", stripeBackfillUsage, stdout, envOf(envOps, envStripe, []string{"USER"})...).describe(`Lists the Stripe events created since --since from the Stripe API
(STRIPE_API_KEY, STRIPE_API_BASE; Stripe keeps 30 days) and publishes to
the STRIPE stream each one the event ledger has never recorded, for when
webhooks were down longer than Stripe retries them. Exit codes: 0 done,
1 failed, 2 usage, 3 some events could not be published.`)
	of := addOpsFlags(fs.FlagSet, opts, true)
	since := fs.String("since", "", "oldest event creation time: RFC 3339, a date, or a duration ago such as 3d (required)")
	dryRun := fs.Bool("dry-run", false, "list and compare with the ledger; publish nothing")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("stripe backfill takes flags only, got %q", pos)
	}
	if *since == "" {
		return usageError("stripe backfill needs --since")
	}
	req := ops.BackfillRequest{DryRun: *dryRun}
	if req.Since, err = timeFlag("since", *since); err != nil {
		return err
	}
	s, err := openOps(ctx, opts, stderr, *of.actor)
	if err != nil {
		return err
	}
	defer s.close()
	bar, done := progressBar(stderr, "stripe backfill")
	res, err := s.ops.Backfill(ctx, s.actor, req, bar)
	done()
	if res == nil {
		return opsError(err)
	}
	if *of.json {
		if jerr := writeJSON(stdout, res); jerr != nil {
			return jerr
		}
	} else {
		printBackfill(stdout, res)
	}
	if err != nil {
		return err
	}
	return batchOutcome("stripe backfill", res.Published+res.InStream+res.Recorded, res.Failed)
}

func printBackfill(w io.Writer, res *ops.BackfillResult) {
	if res.Clamped {
		fmt.Fprintf(w, "Stripe keeps 30 days of events: listing from %s.\n", stamp(res.Since))
	}
	if len(res.Items) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "EVENT\tTYPE\tCREATED\tRESULT\tDETAIL")
		for _, it := range res.Items {
			detail := it.Error
			if it.Seq != 0 {
				detail = fmt.Sprintf("STRIPE seq %d", it.Seq)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.ID, it.Type, stamp(it.Created), strings.ReplaceAll(it.Status, "_", " "), elide(detail, 90))
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	if res.DryRun {
		fmt.Fprintf(w, "Dry run: Stripe lists %s since %s; %d already recorded, %d would be published. Nothing was published.\n",
			plural(res.Listed, "event", "events"), stamp(res.Since), res.Recorded, res.Published)
		return
	}
	fmt.Fprintf(w, "Stripe lists %s since %s: %d already recorded, %d published, %d already in the stream, %d invalid, %d failed.\n",
		plural(res.Listed, "event", "events"), stamp(res.Since), res.Recorded, res.Published, res.InStream, res.Invalid, res.Failed)
}
