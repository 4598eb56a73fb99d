package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/ops"
)

func init() {
	register("status", "[--json]: streams and consumers, healthy / lagging / stuck", runStatus)
	register("stuck", "[--consumer c] [--json]: messages failing repeatedly or unacknowledged for long", runStuck)
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("status", "status [--json]", stdout, envOps...).
		describe("Streams and consumers: healthy, lagging or stuck. Exit codes: 0 healthy, 1 failed, 2 usage, 3 something is lagging or stuck.")
	of := addOpsFlags(fs.FlagSet, opts, false)
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("status takes no arguments, got %q", pos)
	}
	s, err := openOps(ctx, opts, stderr, "")
	if err != nil {
		return err
	}
	defer s.close()
	rep, err := s.ops.Status(ctx)
	if err != nil {
		return opsError(err)
	}
	if *of.json {
		return writeJSON(stdout, rep)
	}
	printStatus(stdout, rep)
	return nil
}

func printStatus(w io.Writer, rep *ops.Report) {
	tw := newTable(w)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tFIRST\tLAST\tCONSUMERS")
	for _, s := range rep.Streams {
		if s.Missing {
			fmt.Fprintf(tw, "%s\t(missing: no Levqor process has created it)\t\t\t\t\n", s.Name)
			continue
		}
		first, last := "-", "-"
		if s.FirstTime != nil {
			first, last = ago(*s.FirstTime), ago(*s.LastTime)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", s.Name, s.Messages, bytesSize(s.Bytes), first, last, s.Consumers)
	}
	_ = tw.Flush()
	if s := rep.Scheduler; s != nil {
		every := time.Duration(s.EverySeconds * float64(time.Second))
		switch s.State {
		case ops.SchedulerWaiting:
			fmt.Fprintf(w, "\nScheduler: no tick in the TICKS stream yet; the most frequent job runs every %s\n", every)
		case ops.SchedulerSilent:
			fmt.Fprintf(w, "\nScheduler: SILENT: last tick %s, while the most frequent job runs every %s: is the scheduler running?\n", ago(*s.LastTick), every)
		default:
			fmt.Fprintf(w, "\nScheduler: last tick %s; the most frequent job runs every %s\n", ago(*s.LastTick), every)
		}
	}

	th := rep.Thresholds
	fmt.Fprintf(w, "\nConsumers (lagging at %d behind; stuck after %s unacknowledged or %d failed deliveries)\n",
		th.LagMessages, th.StuckAge, th.StuckDeliveries)
	if len(rep.Consumers) == 0 {
		fmt.Fprintln(w, "no consumers yet: workers create theirs when they start")
		if notes := pauseNotes(rep); len(notes) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, strings.Join(notes, "\n"))
		}
		return
	}
	tw = newTable(w)
	fmt.Fprintln(tw, "CONSUMER\tSTREAM\tSTATE\tPENDING\tACK PENDING\tREDELIVERED\tOLDEST UNACKED\tDLQ")
	for _, c := range rep.Consumers {
		oldest := "-"
		if c.OldestUnackedAt != nil {
			oldest = age(time.Duration(c.OldestUnackedAgeSeconds * float64(time.Second)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\n", c.Name, c.Stream, strings.ToUpper(c.State),
			c.Pending, c.AckPending, c.Redelivered, oldest, c.DeadLetters)
	}
	_ = tw.Flush()
	var notes []string
	for _, c := range rep.Consumers {
		for _, r := range c.Reasons {
			notes = append(notes, fmt.Sprintf("  %s: %s", c.Name, r))
		}
		if c.DeadLetters > 0 {
			notes = append(notes, fmt.Sprintf("  %s: %s in the DLQ; see levqor dlq list --consumer %s",
				c.Name, plural(int(c.DeadLetters), "dead letter", "dead letters"), c.Name))
		}
	}
	notes = append(notes, pauseNotes(rep)...)
	if len(notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(notes, "\n"))
	}
}

// pauseNotes are the lines that say what operators paused, and how to
// resume it.
func pauseNotes(rep *ops.Report) []string {
	keys := make([]string, 0, len(rep.Paused))
	for k := range rep.Paused {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var notes []string
	for _, k := range keys {
		p := rep.Paused[k]
		what, name, _ := strings.Cut(k, ".")
		line := fmt.Sprintf("  %s: PAUSED by %s %s ago", name, p.By, age(time.Since(p.At)))
		if p.Reason != "" {
			line += " (" + p.Reason + ")"
		}
		notes = append(notes, line+fmt.Sprintf("; levqor %s resume %s", what, name))
	}
	return notes
}

// bytesSize writes a byte count for people.
func bytesSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func runStuck(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("stuck", "stuck [--consumer c] [--json]", stdout, envOps...).
		describe("Messages failing repeatedly or unacknowledged for long. Exit codes: 0 none, 1 failed, 2 usage, 3 some are stuck.")
	of := addOpsFlags(fs.FlagSet, opts, false)
	consumer := fs.String("consumer", "", "only this consumer, e.g. billing-stripe")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("stuck takes no arguments, got %q (use --consumer)", pos)
	}
	s, err := openOps(ctx, opts, stderr, "")
	if err != nil {
		return err
	}
	defer s.close()
	msgs, err := s.ops.Stuck(ctx, *consumer)
	if err != nil {
		return opsError(err)
	}
	if *of.json {
		return writeJSON(stdout, map[string]any{"thresholds": s.ops.Thresholds(), "stuck": msgs})
	}
	th := s.ops.Thresholds()
	if len(msgs) == 0 {
		fmt.Fprintf(stdout, "Nothing stuck: no message has failed %d or more deliveries or waited %s unacknowledged.\n", th.StuckDeliveries, th.StuckAge)
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "CONSUMER\tSTREAM\tSEQ\tSUBJECT\tMSG ID\tDELIVERIES\tAGE\tLAST ERROR")
	for _, m := range msgs {
		deliveries := fmt.Sprint(m.Deliveries)
		if m.Deliveries == 0 {
			deliveries = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Consumer, m.Stream, m.StreamSeq, m.Subject, m.MsgID,
			deliveries, age(time.Duration(m.AgeSeconds*float64(time.Second))), elide(m.LastError, 90))
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "\n%s. A fix deployed, the next delivery succeeds; a message that can never succeed is dead-lettered after the delivery limit.\n",
		plural(len(msgs), "message stuck", "messages stuck"))
	return nil
}
