package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/ops"
)

func init() {
	register("replay", "--consumer c --since t [--until t] [--subject s] [--force] [--dry-run] [--wait]: re-run a window", runReplay)
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("replay", "replay --consumer c --since t [--stream s] [--until t] [--subject s] [--force] [--dry-run] [--wait [--timeout d]] [--json]",
		stdout, envOf(envOps, []string{"USER"})...).describe(`Re-runs one consumer's handlers over the messages its stream stored
between --since and --until: each is published again for that consumer
only (Levqor-Replay-For), its workers run it, and every other consumer
acknowledges it untouched. Messages the consumer already processed are
skipped unless --force re-runs them (after fixing a handler bug).
--wait waits for the workers and counts what they handled and
dead-lettered. Exit codes: 0 done, 1 failed, 2 usage, 3 some messages
failed or were dead-lettered.`)
	of := addOpsFlags(fs.FlagSet, opts, true)
	req := ops.WindowRequest{}
	fs.StringVar(&req.Consumer, "consumer", "", "consumer whose handlers re-run, e.g. billing-stripe (required)")
	fs.StringVar(&req.Stream, "stream", "", "the consumer's stream, as a check (e.g. STRIPE)")
	since := fs.String("since", "", "window start: RFC 3339, a date, or a duration ago (required)")
	until := fs.String("until", "", "window end (default: now)")
	fs.StringVar(&req.Subject, "subject", "", "only this subject or filter, e.g. levqor.stripe.invoice.*")
	fs.BoolVar(&req.Force, "force", false, "re-run handlers for messages the consumer already processed")
	fs.BoolVar(&req.DryRun, "dry-run", false, "list what would be replayed and what would be skipped; publish nothing")
	wait := fs.Bool("wait", false, "wait until the consumer's workers have handled every replay, and count the dead letters")
	timeout := fs.Duration("timeout", 5*time.Minute, "with --wait: how long to wait")
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
	if err == nil && *wait {
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		err = s.ops.WaitWindow(wctx, res)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%s did not handle every replay within %s (--timeout): is a worker running it? see `levqor stuck --consumer %s`: %w",
				req.Consumer, *timeout, req.Consumer, err)
		}
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
	return batchOutcome("replay", res.Replayed+res.Skipped-res.DeadLettered, res.Failed+res.DeadLettered)
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
		fmt.Fprintf(w, "Dry run%s: %s of %s from %s to %s for %s; %d would be replayed, %d skipped as already processed. Nothing was published.\n",
			mode, plural(res.Selected, "message", "messages"), res.Stream, stamp(r.Since), stamp(r.Until), r.Consumer, res.Replayed, res.Skipped)
		return
	}
	fmt.Fprintf(w, "Replayed %s of %s from %s to %s for %s%s: %d published, %d skipped as already processed, %d failed.\n",
		plural(res.Selected, "message", "messages"), res.Stream, stamp(r.Since), stamp(r.Until), r.Consumer, mode,
		res.Replayed, res.Skipped, res.Failed)
	switch {
	case res.Waited:
		fmt.Fprintf(w, "%s handled %d and dead-lettered %d of them.\n", r.Consumer, res.Handled, res.DeadLettered)
	case res.Replayed > 0:
		fmt.Fprintf(w, "%s's workers run them now (stream seq %d to %d); --wait waits for them.\n", r.Consumer, res.FirstSeq, res.LastSeq)
	}
}
