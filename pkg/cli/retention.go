package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/levqor/levqor/pkg/retention"
)

// maxRetentionInput bounds what `retention plan` reads from one file or
// stdin: about half a million snapshots, far more than one source holds.
const maxRetentionInput = 64 << 20

func init() {
	registerGroup("retention", "plan --policy F --snapshots F: what a retention policy keeps, and why", retentionPlanUsage,
		map[string]commandFunc{"plan": func(_ context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
			return runRetentionPlan(args, stdout, stderr, opts)
		}})
}

// runRetentionPlan prints, as JSON, which snapshots a policy keeps and
// removes and why: the dry run of a retention sweep, with no state.
const retentionPlanUsage = "retention plan --policy <policy.json> --snapshots <snapshots.json> [--now t]"

func runRetentionPlan(args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("retention plan", retentionPlanUsage, stdout).
		describe("Prints, as JSON, which snapshots the policy keeps and removes and why: a sweep's dry run, with no state.")
	policyPath := fs.String("policy", "", "policy JSON file, or - for stdin (see docs/retention.md)")
	snapshotsPath := fs.String("snapshots", "", `snapshots JSON file, or - for stdin: [{"id": …, "time": "RFC 3339", "tags": […]}]`)
	nowFlag := fs.String("now", "", "the current time, RFC 3339 (default: now); snapshots after it do not move the keep_within windows")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *policyPath == "" || *snapshotsPath == "" {
		return usageError("retention plan needs --policy <file> and --snapshots <file>")
	}
	if *policyPath == "-" && *snapshotsPath == "-" {
		return usageError("only one of --policy and --snapshots can be - (stdin)")
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339Nano, *nowFlag)
		if err != nil {
			return usageError("--now %q: want RFC 3339 such as 2026-11-01T00:00:00Z", *nowFlag)
		}
		now = t
	}
	stdin := opts.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}

	policyJSON, err := readRetentionInput(*policyPath, stdin)
	if err != nil {
		return fmt.Errorf("--policy: %w", err)
	}
	policy, err := retention.ParsePolicy(policyJSON)
	if err != nil {
		return fmt.Errorf("--policy %s: %w", *policyPath, err)
	}
	snapshotsJSON, err := readRetentionInput(*snapshotsPath, stdin)
	if err != nil {
		return fmt.Errorf("--snapshots: %w", err)
	}
	snapshots, err := retention.ParseSnapshots(snapshotsJSON)
	if err != nil {
		return fmt.Errorf("--snapshots %s: %w", *snapshotsPath, err)
	}
	plan, err := retention.Plan(policy, snapshots, retention.Options{Now: now})
	if err != nil {
		return fmt.Errorf("retention plan: %w", err)
	}
	_, err = stdout.Write(formatPlan(plan))
	return err
}

// formatPlan writes the plan as JSON for people: one id per line, and the
// reasons one snapshot per line in the order of keep (newest first) rather
// than sorted by id.
func formatPlan(plan retention.Result) []byte {
	var b bytes.Buffer
	str := func(s string) {
		q, _ := json.Marshal(s) // a string always encodes
		b.Write(q)
	}
	list := func(name string, ids []string, last bool) {
		fmt.Fprintf(&b, "  %q: [", name)
		for i, id := range ids {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("\n    ")
			str(id)
		}
		if len(ids) > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString("]")
		if !last {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("{\n")
	list("keep", plan.Keep, false)
	list("remove", plan.Remove, false)
	b.WriteString(`  "reasons": {`)
	for i, id := range plan.Keep {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		str(id)
		b.WriteString(": [")
		for j, r := range plan.Reasons[id] {
			if j > 0 {
				b.WriteString(", ")
			}
			str(r)
		}
		b.WriteByte(']')
	}
	if len(plan.Keep) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes()
}

// readRetentionInput reads path ("-" is stdin) up to maxRetentionInput.
func readRetentionInput(path string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxRetentionInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxRetentionInput {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, maxRetentionInput>>20)
	}
	return b, nil
}
