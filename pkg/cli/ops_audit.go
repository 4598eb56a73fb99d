package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/levqor/levqor/pkg/store"
)

func init() {
	register("audit", "[--action a] [--actor a] [--since t] [--limit n] [--json]: operator actions", runAudit)
}

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("audit", "audit [--action a] [--actor a] [--since t] [--limit n] [--json]", stdout, envOps...).
		describe("Lists operator actions, newest first: who did what, when, to what.")
	of := addOpsFlags(fs.FlagSet, opts, false)
	p := store.ListAuditParams{}
	fs.StringVar(&p.Action, "action", "", "only this action, e.g. dlq.replay")
	fs.StringVar(&p.Actor, "actor", "", "only this actor")
	since := fs.String("since", "", "at or after: RFC 3339, a date, or a duration ago")
	fs.IntVar(&p.Limit, "limit", 20, "newest first, at most this many")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("audit takes flags only, got %q", pos)
	}
	if p.Limit < 1 {
		return usageError("--limit: want at least 1")
	}
	if p.Since, err = timeFlag("since", *since); err != nil {
		return err
	}
	s, err := openOps(ctx, opts, stderr, "")
	if err != nil {
		return err
	}
	defer s.close()
	entries, err := s.ops.ListAudit(ctx, p)
	if err != nil {
		return err
	}
	if *of.json {
		return writeJSON(stdout, map[string]any{"entries": entries})
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, "No operator actions recorded.")
		return nil
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tAT\tACTOR\tACTION\tOUTCOME\tCOUNTS\tPARAMS")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, stamp(e.At), e.Actor, e.Action, e.Outcome,
			oneLine(string(e.Counts), 80), oneLine(string(e.Params), 120))
	}
	return tw.Flush()
}
