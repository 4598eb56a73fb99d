package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/levqor/levqor/pkg/ops"
)

func init() {
	registerGroup("dlq", "list | show <seq> | replay <seq>… | purge <seq>…: dead letters", dlqUsage, map[string]commandFunc{
		"list": runDLQList, "show": runDLQShow,
		"replay": func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
			return runDLQBatch(ctx, "replay", args, stdout, stderr, opts)
		},
		"purge": func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
			return runDLQBatch(ctx, "purge", args, stdout, stderr, opts)
		},
	})
}

// dlqSynopsis is each dlq subcommand's usage line.
var dlqSynopsis = map[string]string{
	"list":   "dlq list [--consumer c] [--subject s] [--since t] [--until t] [--reason text] [--limit n] [--json]",
	"show":   "dlq show <seq> [--json]",
	"replay": "dlq replay <seq>… | --all [filters] [--dry-run] [--json] [--actor name]",
	"purge":  "dlq purge <seq>… | --all [filters] [--dry-run] [--yes] [--json] [--actor name]",
}

const dlqUsage = "dlq list    [filters] [--limit n] [--json]\ndlq show    <seq> [--json]\n" +
	"dlq replay  <seq>… | --all [filters] [--dry-run] [--json]\ndlq purge   <seq>… | --all [filters] [--dry-run] [--yes] [--json]"

// dlqAbout is what every dlq subcommand's --help explains.
const dlqAbout = `Times (--since, --until) are RFC 3339, a date, or a duration ago (90m, 2h, 3d).
--subject is the original subject; * and > wildcards work (levqor.stripe.invoice.*).
Exit codes: 0 done, 1 failed, 2 usage, 3 some items failed and some succeeded.`

// dlqFilterFlags are the filters list, replay --all and purge --all share.
type dlqFilterFlags struct {
	consumer, subject, since, until, reason *string
}

func addDLQFilterFlags(fs *flag.FlagSet) dlqFilterFlags {
	return dlqFilterFlags{
		consumer: fs.String("consumer", "", "dead letters of this consumer, e.g. billing-stripe"),
		subject:  fs.String("subject", "", "original subject, wildcards allowed, e.g. levqor.stripe.invoice.*"),
		since:    fs.String("since", "", "dead-lettered at or after (RFC 3339, date, or 2h ago)"),
		until:    fs.String("until", "", "dead-lettered at or before"),
		reason:   fs.String("reason", "", "reason contains this text (any case)"),
	}
}

func (f dlqFilterFlags) filter() (ops.DLQFilter, error) {
	out := ops.DLQFilter{Consumer: *f.consumer, Subject: *f.subject, Reason: *f.reason}
	var err error
	if out.Since, err = timeFlag("since", *f.since); err != nil {
		return out, err
	}
	if out.Until, err = timeFlag("until", *f.until); err != nil {
		return out, err
	}
	return out, nil
}

func runDLQList(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("dlq list", dlqSynopsis["list"], stdout, envOps...).describe(dlqAbout)
	of := addOpsFlags(fs.FlagSet, opts, false)
	ff := addDLQFilterFlags(fs.FlagSet)
	limit := fs.Int("limit", 50, "show at most this many, oldest first (0: all)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("dlq list takes no arguments, got %q", pos)
	}
	f, err := ff.filter()
	if err != nil {
		return err
	}
	s, err := openOps(ctx, opts, stderr, "")
	if err != nil {
		return err
	}
	defer s.close()
	list, err := s.ops.ListDLQ(ctx, f, *limit)
	if err != nil {
		return opsError(err)
	}
	if *of.json {
		return writeJSON(stdout, list)
	}
	if list.Total == 0 {
		fmt.Fprintln(stdout, "No dead letters match.")
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tCONSUMER\tSUBJECT\tMSG ID\tTRIES\tREASON")
	for _, d := range list.DeadLetters {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Seq, ago(d.DeadLetteredAt), d.Consumer, d.Subject, d.MsgID,
			d.Deliveries, elide(d.Reason, 90))
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "\n%d of %s. Inspect one with: levqor dlq show <seq>\n", len(list.DeadLetters),
		plural(list.Total, "dead letter", "dead letters"))
	return nil
}

func runDLQShow(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("dlq show", dlqSynopsis["show"], stdout, envOf(envOps, []string{"USER"})...).describe(dlqAbout)
	of := addOpsFlags(fs.FlagSet, opts, true)
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("dlq show <seq>: one DLQ sequence, as dlq list prints it")
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || seq == 0 {
		return usageError("dlq show %q: want a DLQ sequence such as 12", pos[0])
	}
	s, err := openOps(ctx, opts, stderr, *of.actor)
	if err != nil {
		return err
	}
	defer s.close()
	d, err := s.ops.ShowDLQ(ctx, s.actor, seq)
	if err != nil {
		return opsError(err)
	}
	if *of.json {
		return writeJSON(stdout, d)
	}
	tw := newTable(stdout)
	fmt.Fprintf(stdout, "Dead letter %d\n", d.Seq)
	fmt.Fprintf(tw, "  consumer\t%s\n", d.Consumer)
	fmt.Fprintf(tw, "  original\t%s seq %d\n", d.Stream, d.StreamSeq)
	fmt.Fprintf(tw, "  subject\t%s\n", d.Subject)
	fmt.Fprintf(tw, "  msg id\t%s\n", d.MsgID)
	fmt.Fprintf(tw, "  dead-lettered\t%s (%s), after %s\n", stamp(d.DeadLetteredAt), ago(d.DeadLetteredAt),
		plural(d.Deliveries, "delivery", "deliveries"))
	fmt.Fprintf(tw, "  reason\t%s\n", d.Reason)
	_ = tw.Flush()
	fmt.Fprintln(stdout, "\nHeaders")
	keys := make([]string, 0, len(d.Header))
	for k := range d.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range d.Header[k] {
			fmt.Fprintf(stdout, "  %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(stdout, "\nPayload (%d bytes)\n", d.Size)
	if d.PayloadJSON {
		var pretty bytes.Buffer
		if json.Indent(&pretty, d.Payload, "", "  ") == nil {
			fmt.Fprintln(stdout, pretty.String())
			return nil
		}
	}
	var raw string
	_ = json.Unmarshal(d.Payload, &raw)
	fmt.Fprintf(stdout, "%q\n", raw)
	return nil
}

func runDLQBatch(ctx context.Context, action string, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("dlq "+action, dlqSynopsis[action], stdout, envOf(envOps, []string{"USER"})...).describe(dlqAbout)
	of := addOpsFlags(fs.FlagSet, opts, true)
	ff := addDLQFilterFlags(fs.FlagSet)
	all := fs.Bool("all", false, "every dead letter matching the filters")
	dryRun := fs.Bool("dry-run", false, "show what would be done, do nothing")
	var yes *bool
	if action == "purge" {
		yes = fs.Bool("yes", false, "do not ask for confirmation")
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	sel := ops.DLQSelection{All: *all, DryRun: *dryRun}
	for _, p := range pos {
		seq, err := strconv.ParseUint(p, 10, 64)
		if err != nil || seq == 0 {
			return usageError("dlq %s %q: want DLQ sequences such as 12 13, or --all with filters", action, p)
		}
		sel.Seqs = append(sel.Seqs, seq)
	}
	if sel.Filter, err = ff.filter(); err != nil {
		return err
	}
	if len(sel.Seqs) == 0 && !sel.All {
		return usageError("dlq %s needs DLQ sequences, or --all (with filters) to select every match", action)
	}
	s, err := openOps(ctx, opts, stderr, *of.actor)
	if err != nil {
		return err
	}
	defer s.close()

	if action == "purge" && !sel.DryRun && !*yes {
		confirmed, err := confirmPurge(ctx, s, &sel, stdout, opts)
		if err != nil || !confirmed {
			return err
		}
	}
	bar, done := progressBar(stderr, "dlq "+action)
	var res *ops.DLQResult
	if action == "replay" {
		res, err = s.ops.ReplayDLQ(ctx, s.actor, sel, bar)
	} else {
		res, err = s.ops.PurgeDLQ(ctx, s.actor, sel, bar)
	}
	done()
	if res == nil {
		return opsError(err)
	}
	if *of.json {
		if jerr := writeJSON(stdout, res); jerr != nil {
			return jerr
		}
	} else {
		printDLQResult(stdout, action, res)
	}
	if err != nil {
		return err // done, but not audited
	}
	return batchOutcome("dlq "+action, res.Succeeded, res.Failed)
}

// confirmPurge shows what a purge would delete and asks. An --all purge is
// narrowed to the sequences shown, guarded by the same filters, so a dead
// letter arriving meanwhile is not purged unseen.
func confirmPurge(ctx context.Context, s *opsSession, sel *ops.DLQSelection, stdout io.Writer, opts Options) (bool, error) {
	var plan []ops.DeadLetter
	if sel.All {
		list, err := s.ops.ListDLQ(ctx, sel.Filter, 0)
		if err != nil {
			return false, opsError(err)
		}
		plan = list.DeadLetters
	} else {
		for _, q := range sel.Seqs {
			plan = append(plan, ops.DeadLetter{Seq: q})
		}
	}
	if len(plan) == 0 {
		fmt.Fprintln(stdout, "No dead letters match: nothing to purge.")
		return false, nil
	}
	if sel.All {
		tw := newTable(stdout)
		fmt.Fprintln(tw, "SEQ\tCONSUMER\tSUBJECT\tMSG ID\tREASON")
		for _, d := range plan {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", d.Seq, d.Consumer, d.Subject, d.MsgID, elide(d.Reason, 70))
		}
		_ = tw.Flush()
		sel.All = false
		sel.Seqs = nil
		for _, d := range plan {
			sel.Seqs = append(sel.Seqs, d.Seq)
		}
	}
	fmt.Fprintf(stdout, "Purge %s for good? Payloads are erased; this cannot be undone. [y/N] ",
		plural(len(plan), "dead letter", "dead letters"))
	in := opts.Stdin
	if in == nil {
		in = os.Stdin
	}
	answer, _ := bufio.NewReader(in).ReadString('\n')
	fmt.Fprintln(stdout)
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true, nil
	default:
		return false, errors.New("purge not confirmed: nothing purged (--yes skips the question)")
	}
}

func printDLQResult(w io.Writer, action string, res *ops.DLQResult) {
	if res.Selected == 0 {
		fmt.Fprintln(w, "No dead letters match: nothing to do.")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SEQ\tRESULT\tCONSUMER\tSUBJECT\tMSG ID\tDETAIL")
	for _, it := range res.Items {
		detail := it.Error
		if it.ReplayedSeq != 0 {
			detail = fmt.Sprintf("now %s seq %d", it.Stream, it.ReplayedSeq)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", it.Seq, strings.ReplaceAll(it.Status, "_", " "), it.Consumer, it.Subject, it.MsgID, detail)
	}
	_ = tw.Flush()
	verb := map[string]string{"replay": "replayed", "purge": "purged"}[action]
	if res.DryRun {
		fmt.Fprintf(w, "\nDry run: %s would be %s; nothing was changed.\n", plural(res.Selected-res.Failed, "dead letter", "dead letters"), verb)
		return
	}
	fmt.Fprintf(w, "\n%s %d of %s", strings.ToUpper(verb[:1])+verb[1:], res.Succeeded, plural(res.Selected, "dead letter", "dead letters"))
	if res.Failed > 0 {
		fmt.Fprintf(w, "; %d failed", res.Failed)
	}
	fmt.Fprintln(w, ".")
}
