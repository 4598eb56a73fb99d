package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
)

// apiClient calls a running dev mode's API with one key.
type apiClient struct {
	url, key string
}

// call sends one request and decodes the answer into out. Like any well
// behaved client it waits out a 429 for the Retry-After the API gives:
// the walkthroughs send requests faster than a key's rate allows.
func (c apiClient) call(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var payload []byte
	if body != nil {
		var err error
		payload, err = json.Marshal(body)
		require.NoError(t, err)
	}
	var resp *http.Response
	var b []byte
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequest(method, c.url+path, rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+c.key)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		if resp.StatusCode != http.StatusTooManyRequests || attempt == 5 {
			break
		}
		wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err, "a 429 says when to retry")
		time.Sleep(time.Duration(wait) * time.Second)
	}
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), string(b))
	}
	return resp.StatusCode
}

// result calls a command endpoint with ?wait= and decodes the result.
func (c apiClient) result(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var v api.CommandView
	status := c.call(t, method, path+"?wait=15s", body, &v)
	require.Less(t, status, 300, "%s %s: %+v", method, path, v.Error)
	require.Equal(t, store.CommandSucceeded, v.Status)
	if out != nil {
		require.NoError(t, json.Unmarshal(v.Result, out))
	}
}

// TestRetentionWalkthrough is the README's retention walkthrough in dev
// mode, with the CLI where the README uses it: an account subscribes to
// the starter tier, records a month of snapshots with `levqor snapshots
// seed`, asks for the plan and sees why each is kept, holds one, sweeps
// (blocked by the share limit, then confirmed by an operator) and reads
// the audit trail; an upgrade then shows in the trail through billing's
// event.
func TestRetentionWalkthrough(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LEVQOR_DATA_DIR":      t.TempDir(),
		"LEVQOR_HTTP_ADDR":     "127.0.0.1:0",
		"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:0",
		"LEVQOR_LOG_LEVEL":     "warn",
		"STRIPE_API_BASE":      stripemock.Start(t),
		// The scheduled sweep must not run in the middle of the test.
		"LEVQOR_SCHEDULE": "backup.sweep=off;billing.reconcile=off",
	}
	d := startDev(t, env)
	ctx := context.Background()
	op := apiClient{url: d.info.IngestURL, key: d.info.AdminToken}
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		err := cli.RunWith(ctx, args, &out, &errOut, cli.Options{Getenv: getenv(env)})
		require.NoError(t, err, "levqor %s: %s%s", strings.Join(args, " "), out.String(), errOut.String())
		return out.String()
	}

	// An account on the starter tier, and its own API key.
	var acc store.Account
	op.result(t, http.MethodPost, "/v1/accounts", map[string]string{"name": "Ada Backups Ltd", "contact_email": "ops@ada.example"}, &acc)
	run("webhook", "send", "customer.subscription.created", "--url", d.info.WebhookURL, "--customer", acc.StripeCustomerID,
		"--object", "sub_walk", "--price", "price_levqor_starter_monthly")
	require.Eventually(t, func() bool {
		var a store.Account
		return op.call(t, http.MethodGet, "/v1/accounts/"+acc.ID, nil, &a) == http.StatusOK && a.Tier != nil && *a.Tier == "starter"
	}, 20*time.Second, 50*time.Millisecond)
	key := strings.TrimSpace(run("apikey", "create", "--account", acc.ID, "-q"))
	me := apiClient{url: d.info.IngestURL, key: key}

	var src backups.SourceView
	me.result(t, http.MethodPost, "/v1/sources", map[string]string{"name": "orders-db", "kind": "postgres", "schedule": "0 2 * * *", "time_zone": "Europe/London"}, &src)
	base := "/v1/sources/" + src.ID

	// A month of nightly snapshots, across the end of British Summer Time.
	out := run("snapshot", "seed", "--source", src.ID, "--days", "30", "--end", "2026-10-31", "--zone", "Europe/London", "--url", d.info.IngestURL, "--key", key)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 31, out)
	require.True(t, strings.HasPrefix(lines[0], "2026-10-02T02:00:00+01:00  snap_"), lines[0])
	require.True(t, strings.HasPrefix(lines[29], "2026-10-31T02:00:00Z  snap_"), lines[29])
	again := run("snapshot", "seed", "--source", src.ID, "--days", "30", "--end", "2026-10-31", "--zone", "Europe/London", "--url", d.info.IngestURL, "--key", key)
	require.Contains(t, again, "already recorded", "seeding twice records nothing twice")

	// The plan, and why.
	var plan backups.Plan
	require.Equal(t, http.StatusOK, me.call(t, http.MethodPost, base+"/retention/plan", map[string]any{}, &plan))
	require.Equal(t, backups.OutcomeBlocked, plan.Outcome, plan.Message)
	require.Equal(t, 30, plan.Counts.Active)
	require.Equal(t, 21, plan.Counts.Blocked)
	why := map[string][]string{}
	var removed []string
	for _, e := range plan.Snapshots {
		why[e.TakenAt.Format("01-02")] = e.Reasons
		if e.Reasons[0] == backups.ReasonNotKept {
			removed = append(removed, e.ID)
		}
	}
	require.Equal(t, []string{"daily snapshot", "weekly snapshot"}, why["10-31"])
	require.Equal(t, []string{"weekly snapshot"}, why["10-18"])
	require.Equal(t, backups.ReasonNotKept, why["10-17"][0])

	// Hold one the policy removes; the customer's sweep is blocked; an
	// operator confirms it.
	me.result(t, http.MethodPost, "/v1/snapshots/"+removed[0]+"/hold", map[string]string{"reason": "VAT inspection"}, nil)
	var sweep backups.SweepResult
	me.result(t, http.MethodPost, base+"/sweep", map[string]any{}, &sweep)
	require.Equal(t, backups.OutcomeBlocked, sweep.Outcome)
	require.Empty(t, sweep.Trashed)
	op.result(t, http.MethodPost, base+"/sweep", map[string]any{"max_share": 1}, &sweep)
	require.Len(t, sweep.Trashed, 20, "21 removed by the policy, one held")
	require.NotContains(t, sweep.Trashed, removed[0])

	var trash api.SnapshotList
	require.Equal(t, http.StatusOK, me.call(t, http.MethodGet, "/v1/trash", nil, &trash))
	require.Len(t, trash.Data, 20)

	// The upgrade arrives through billing's event and shows in the trail.
	ev, err := stripesim.NewEvent("customer.subscription.updated", stripesim.EventOptions{
		Customer: acc.StripeCustomerID, ObjectID: "sub_walk", Price: "price_levqor_growth_monthly", Created: time.Now().Add(time.Minute),
	})
	require.NoError(t, err)
	res, err := (&stripesim.Sender{URL: d.info.WebhookURL, Secret: d.info.WebhookSecret}).Send(ctx, ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status)

	var trail api.AuditList
	require.Eventually(t, func() bool {
		me.call(t, http.MethodGet, base+"/audit?limit=200", nil, &trail)
		return len(trail.Data) > 0 && trail.Data[0].Action == backups.AuditDefaultChanged
	}, 20*time.Second, 100*time.Millisecond, "billing's entitlements_changed reaches the retention worker")
	require.Contains(t, trail.Data[0].Reasons[0], "from starter to growth")
	require.JSONEq(t, `{"keep_daily":14,"keep_weekly":8,"keep_monthly":6}`, string(trail.Data[0].Policy))
	counts := map[string]int{}
	for _, e := range trail.Data {
		if e.Action == backups.AuditDefaultChanged && e.ID != trail.Data[0].ID {
			// The subscription's own event may reach the worker after the
			// source exists: then the trail has it too.
			require.Contains(t, e.Reasons[0], "from no tier to starter")
			continue
		}
		counts[e.Action]++
	}
	require.Equal(t, map[string]int{
		backups.AuditSourceCreated: 1, backups.AuditSnapshotRecorded: 30, backups.AuditHoldPlaced: 1,
		backups.AuditSweepBlocked: 1, backups.AuditSweepUnblocked: 1, backups.AuditSweepShareAllowed: 1,
		backups.AuditSnapshotTrashed: 20, backups.AuditDefaultChanged: 1,
	}, counts)
}
