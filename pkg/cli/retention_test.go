package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/cli"
)

const (
	examplePolicy    = "../../examples/retention/policy.json"
	exampleSnapshots = "../../examples/retention/snapshots.json"
)

type retentionPlan struct {
	Keep    []string            `json:"keep"`
	Remove  []string            `json:"remove"`
	Reasons map[string][]string `json:"reasons"`
}

func runPlan(t *testing.T, stdin string, args ...string) (retentionPlan, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cli.RunWith(context.Background(), append([]string{"retention", "plan"}, args...), &out, &errOut,
		cli.Options{Stdin: strings.NewReader(stdin)})
	var plan retentionPlan
	if err == nil {
		require.NoError(t, json.Unmarshal(out.Bytes(), &plan), out.String())
	}
	return plan, err
}

// The README's example: a month of daily snapshots in Europe/London (the
// clocks go back on 25 October) plus two days of hourly ones, under a
// tier policy. Worked out by hand, newest first.
func TestRetentionPlanExample(t *testing.T) {
	t.Parallel()
	plan, err := runPlan(t, "", "--policy", examplePolicy, "--snapshots", exampleSnapshots)
	require.NoError(t, err)

	var hourly31 []string // every hour of 31 October, 23:30 down to 00:30
	for h := 23; h >= 0; h-- {
		hourly31 = append(hourly31, fmt.Sprintf("hourly-1031-%02d30", h))
	}
	want := append(slices.Clone(hourly31),
		"hourly-1030-2330", // daily: 30 October
		"daily-1029", "daily-1028", "daily-1027", "daily-1026",
		"daily-1025",  // daily, and weekly for W43 (Sunday, after the clocks went back)
		"daily-1018",  // weekly W42
		"manual-1012", // tagged pre-upgrade
		"daily-1011",  // weekly W41: the fourth week
		"daily-1001",  // monthly count left at the oldest snapshot
	)
	require.Equal(t, want, plan.Keep)
	require.Len(t, plan.Remove, 80-len(want))
	require.Contains(t, plan.Remove, "daily-1031", "same hour as hourly-1031-0230, same day as newer ones")
	require.Contains(t, plan.Remove, "daily-1004", "W40 is past the weekly count")

	require.Equal(t, []string{"last snapshot", "hourly snapshot", "daily snapshot", "weekly snapshot", "monthly snapshot"}, plan.Reasons["hourly-1031-2330"])
	require.Equal(t, []string{"last snapshot", "hourly snapshot"}, plan.Reasons["hourly-1031-2130"])
	require.Equal(t, []string{"hourly snapshot"}, plan.Reasons["hourly-1031-0030"])
	require.Equal(t, []string{"daily snapshot"}, plan.Reasons["hourly-1030-2330"])
	require.Equal(t, []string{"daily snapshot", "weekly snapshot"}, plan.Reasons["daily-1025"])
	require.Equal(t, []string{"weekly snapshot"}, plan.Reasons["daily-1011"])
	require.Equal(t, []string{"has tags [pre-upgrade]"}, plan.Reasons["manual-1012"])
	require.Equal(t, []string{"oldest monthly snapshot"}, plan.Reasons["daily-1001"])
	require.Len(t, plan.Reasons, len(want))

	// People read the reasons in the order of keep, newest first.
	var out bytes.Buffer
	require.NoError(t, cli.Run(context.Background(), []string{"retention", "plan", "--policy", examplePolicy, "--snapshots", exampleSnapshots}, &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), `"reasons": {
    "hourly-1031-2330": ["last snapshot", "hourly snapshot", "daily snapshot", "weekly snapshot", "monthly snapshot"],
    "hourly-1031-2230": ["last snapshot", "hourly snapshot"],`)
	require.True(t, strings.HasSuffix(out.String(), `    "daily-1001": ["oldest monthly snapshot"]
  }
}
`), out.String())
}

func TestRetentionPlanReadsStdin(t *testing.T) {
	t.Parallel()
	policy, err := os.ReadFile(examplePolicy)
	require.NoError(t, err)
	fromFile, err := runPlan(t, "", "--policy", examplePolicy, "--snapshots", exampleSnapshots)
	require.NoError(t, err)
	fromStdin, err := runPlan(t, string(policy), "--policy", "-", "--snapshots", exampleSnapshots)
	require.NoError(t, err)
	require.Equal(t, fromFile, fromStdin)

	snaps := `[{"id": "a", "time": "2026-10-01T00:00:00Z"}, {"id": "b", "time": "2026-10-02T00:00:00Z"}]`
	plan, err := runPlan(t, snaps, "--policy", examplePolicy, "--snapshots", "-")
	require.NoError(t, err)
	require.Equal(t, []string{"b", "a"}, plan.Keep)
	require.Equal(t, []string{}, plan.Remove)

	// No snapshots: still valid JSON, with empty lists.
	var out bytes.Buffer
	require.NoError(t, cli.RunWith(context.Background(), []string{"retention", "plan", "--policy", examplePolicy, "--snapshots", "-"},
		&out, &bytes.Buffer{}, cli.Options{Stdin: strings.NewReader("[]")}))
	require.JSONEq(t, `{"keep": [], "remove": [], "reasons": {}}`, out.String())
}

// --now guards the keep_within window against a snapshot from the future,
// and defaults to the current time.
func TestRetentionPlanNow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	require.NoError(t, os.WriteFile(policy, []byte(`{"keep_within": "2d"}`), 0o600))
	snaps := `[{"id": "future", "time": "2999-01-01T00:00:00Z"},
		{"id": "a", "time": "2026-10-20T00:00:00Z"}, {"id": "b", "time": "2026-10-19T00:00:00Z"},
		{"id": "c", "time": "2026-10-10T00:00:00Z"}]`
	for _, args := range [][]string{
		{"--policy", policy, "--snapshots", "-", "--now", "2026-11-01T00:00:00Z"},
		{"--policy", policy, "--snapshots", "-"},
	} {
		plan, err := runPlan(t, snaps, args...)
		require.NoError(t, err)
		require.Equal(t, []string{"future", "a", "b"}, plan.Keep, args)
		require.Equal(t, []string{"c"}, plan.Remove, args)
	}
}

func TestRetentionPlanErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	badPolicy := write("bad-policy.json", `{"keep_daily": 7, "keep_dayly": 3}`)
	negPolicy := write("neg-policy.json", `{"keep_weekly": -2}`)
	dupSnaps := write("dup.json", `[{"id": "a", "time": "2026-10-01T00:00:00Z"}, {"id": "a", "time": "2026-10-02T00:00:00Z"}]`)
	noTime := write("notime.json", `[{"id": "a", "time": "2026-10-01T00:00:00Z"}, {"id": "x1"}]`)

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"NoSubcommand", []string{"retention"}, 2, "retention plan --policy"},
		{"UnknownSubcommand", []string{"retention", "apply"}, 2, `unknown retention subcommand "apply"`},
		{"MissingFlags", []string{"retention", "plan", "--policy", examplePolicy}, 2, "needs --policy <file> and --snapshots <file>"},
		{"BothStdin", []string{"retention", "plan", "--policy", "-", "--snapshots", "-"}, 2, "only one of"},
		{"UnknownFlag", []string{"retention", "plan", "--polcy", "x"}, 2, "polcy"},
		{"BadNow", []string{"retention", "plan", "--policy", examplePolicy, "--snapshots", exampleSnapshots, "--now", "yesterday"}, 2, "--now"},
		{"ExtraArgument", []string{"retention", "plan", "--policy", examplePolicy, "--snapshots", exampleSnapshots, "extra"}, 2, "no arguments"},
		{"UnknownPolicyKey", []string{"retention", "plan", "--policy", badPolicy, "--snapshots", exampleSnapshots}, 1, `keep_dayly: unknown policy rule "keep_dayly"`},
		{"NegativeCount", []string{"retention", "plan", "--policy", negPolicy, "--snapshots", exampleSnapshots}, 1, "keep_weekly: count must be -1"},
		{"DuplicateID", []string{"retention", "plan", "--policy", examplePolicy, "--snapshots", dupSnaps}, 1, `snapshots[1].id: duplicate snapshot id "a"`},
		{"MissingTime", []string{"retention", "plan", "--policy", examplePolicy, "--snapshots", noTime}, 1, `snapshots[1].time: snapshot "x1" has no time`},
		{"MissingFile", []string{"retention", "plan", "--policy", filepath.Join(dir, "nope.json"), "--snapshots", exampleSnapshots}, 1, "nope.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			require.Equal(t, tc.code, cli.Main(context.Background(), tc.args, &out, &errOut), errOut.String())
			require.Contains(t, errOut.String(), tc.msg)
			require.Empty(t, out.String(), "nothing on stdout when the plan fails")
		})
	}

	// Usage errors are recognisable to callers of Run.
	err := cli.Run(context.Background(), []string{"retention", "plan"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.True(t, errors.Is(err, cli.ErrUsage))
}

func TestRetentionListedInHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, cli.Run(context.Background(), []string{"help"}, &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "levqor retention")
}
