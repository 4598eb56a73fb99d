package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/levqor/levqor/pkg/ops"
)

func init() {
	register("replay", "--consumer c --since t [--until t] [--subject s] [--force] [--dry-run]: re-run a window", runReplay)
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("replay", "replay --consumer c --since t [--stream s] [--until t] [--subject s] [--force] [--dry-run] [--json]",
		stdout, envOf(envOps, []string{"USER"})...).describe(`Re-runs one consumer's handlers, in this process, over the messages its
stream stored between --since and --until. No other consumer sees them.
Messages the consumer already processed are skipped by its inbox unless
--force re-runs them (after fixing a handler bug). Exit codes: 0 done,
1 failed, 2 usage, 3 some messages failed.`)
	of := addOpsFlags(fs.FlagSet, opts, true)
	req := ops.WindowRequest{}
	fs.StringVar(&req.Consumer, "consumer", "", "consumer whose handlers re-run, e.g. billing-stripe (required)")
	fs.StringVar(&req.Stream, "stream", "", "the consumer's stream, as a check (e.g. STRIPE)")
	since := fs.String("since", "", "window start: RFC 3339, a date, or a duration ago (required)")
	until := fs.String("until", "", "window end (default: now)")
	fs.StringVar(&req.Subject, "subject", "", "only this subject or filter, e.g. levqor.stripe.invoice.*")
	fs.BoolVar(&req.Force, "force", false, "re-run handlers for messages the consumer already processed")
	fs.BoolVar(&req.DryRun, "dry-run", false, "list what would run and what the inbox would skip; run nothing")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("replay takes flags only, got %q", pos)
	}
	if req.Consumer == "" || *since == "" {
		return usageError("replay needs --consumer and --since")
	}
	if req.Since, err = timeFlag("since", *since); err != nil {
		return err
	}
	if req.Until, err = timeFlag("until", *until); err != nil {
		return err
	}
	s, err := openOps(ctx, opts, stderr, *of.actor)
	if err != nil {
		return err
	}
	defer s.close()
	bar, done := progressBar(stderr, "replay "+req.Consumer)
	res, err := s.ops.ReplayWindow(ctx, s.actor, req, bar)
	done()
	if res == nil {
		return opsError(err)
	}
	if *of.json {
		if jerr := writeJSON(stdout, res); jerr != nil {
			return jerr
		}
	} else {
		printWindow(stdout, res)
	}
	if err != nil {
		return err
	}
	return batchOutcome("replay", res.Processed+res.Skipped, res.Failed)
}

func printWindow(w io.Writer, res *ops.WindowResult) {
	r := res.Request
	if len(res.Items) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "SEQ\tSTORED\tSUBJECT\tMSG ID\tRESULT\tERROR")
		for _, it := range res.Items {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", it.Seq, stamp(it.PublishedAt), it.Subject, it.MsgID,
				strings.ReplaceAll(it.Status, "_", " "), elide(it.Error, 90))
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	mode := ""
	if r.Force {
		mode = " (forced)"
	}
	if r.DryRun {
		fmt.Fprintf(w, "Dry run%s: %s of %s from %s to %s for %s; %d would run, %d would be skipped as already processed. Nothing ran.\n",
			mode, plural(res.Selected, "message", "messages"), res.Stream, stamp(r.Since), stamp(r.Until), r.Consumer, res.Processed, res.Skipped)
		return
	}
	fmt.Fprintf(w, "Replayed %s of %s from %s to %s through %s%s: %d processed, %d skipped as already processed, %d failed.\n",
		plural(res.Selected, "message", "messages"), res.Stream, stamp(r.Since), stamp(r.Until), r.Consumer, mode,
		res.Processed, res.Skipped, res.Failed)
}
