package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

func schedule(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cli.RunWith(context.Background(), append([]string{"schedule"}, args...), &out, &errOut, cli.Options{Getenv: getenv(env)})
	return out.String(), errOut.String(), err
}

func scheduleJSON(t *testing.T, env map[string]string) map[string]cli.ScheduleEntry {
	t.Helper()
	out, errOut, err := schedule(t, env, "list", "--json")
	require.NoError(t, err, errOut)
	var entries []cli.ScheduleEntry
	require.NoError(t, json.Unmarshal([]byte(out), &entries))
	byName := map[string]cli.ScheduleEntry{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	return byName
}

func TestScheduleListAndTrigger(t *testing.T) {
	t.Parallel()
	nenv := bustest.Start(t)
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "levqor.db")
	st := migratedURL(t, dbURL)
	env := map[string]string{"LEVQOR_NATS_URL": nenv.Server.ClientURL(), "LEVQOR_DATABASE_URL": dbURL, "USER": "ana"}
	before := time.Now()

	t.Run("ListShowsTheWholeCatalog", func(t *testing.T) {
		entries := scheduleJSON(t, env)
		require.Len(t, entries, len(scheduler.Catalog()))
		for _, j := range scheduler.Catalog() {
			e, ok := entries[j.Name]
			require.True(t, ok, j.Name)
			require.Equal(t, j.Spec, e.Spec)
			require.Equal(t, j.Description, e.Description)
			require.False(t, e.Disabled)
			require.Len(t, e.Next, 3, "three next fire times")
			require.True(t, e.Next[0].After(before))
			require.True(t, e.Next[1].After(e.Next[0]) && e.Next[2].After(e.Next[1]))
			require.Nil(t, e.LastSlot, "nothing published yet")
		}
		watch := entries[scheduler.JobHousekeepingWatch]
		require.Equal(t, time.Minute, watch.Next[1].Sub(watch.Next[0]), "the watch runs every minute")
		require.Zero(t, watch.Next[0].Second())

		out, _, err := schedule(t, env, "list")
		require.NoError(t, err)
		for _, j := range scheduler.Catalog() {
			require.Contains(t, out, j.Name)
			require.Contains(t, out, j.Spec)
		}
		require.Contains(t, out, "none in the TICKS stream")
	})

	t.Run("BackfillPublishesTheMissingSlotsOnce", func(t *testing.T) {
		before := len(nenv.Messages(t, bus.Ticks))
		out, errOut, err := schedule(t, env, "backfill", scheduler.JobBackupOverdue, "--since", "50m", "--until", "1m")
		require.NoError(t, err, errOut)
		published := len(nenv.Messages(t, bus.Ticks)) - before
		require.GreaterOrEqual(t, published, 3, "every 15 minutes over 49 minutes")
		require.LessOrEqual(t, published, 4)
		require.Contains(t, out, "published "+scheduler.JobBackupOverdue+"@")
		require.Contains(t, out, "already in the TICKS stream")

		jsonOut, _, err := schedule(t, env, "backfill", scheduler.JobBackupOverdue, "--since", "50m", "--until", "1m", "--json")
		require.NoError(t, err)
		var res scheduler.BackfillResult
		require.NoError(t, json.Unmarshal([]byte(jsonOut), &res))
		require.Empty(t, res.Published, "a second backfill publishes nothing")
		require.Len(t, res.Present, published)

		_, _, err = schedule(t, env, "backfill", scheduler.JobBackupOverdue, "--since", "5d", "--until", "4d")
		require.ErrorContains(t, err, "older than the TICKS stream keeps")
		trail, err := st.ListAudit(t.Context(), store.ListAuditParams{Action: ops.ActionScheduleBackfill, Limit: 10})
		require.NoError(t, err)
		require.Len(t, trail, 2, "every backfill is in the audit trail; a refused one did nothing")
		// The ticks are cleared for the subtests that count them.
		ticks, err := nenv.JS.Stream(t.Context(), nenv.Topo.StreamName(bus.Ticks))
		require.NoError(t, err)
		require.NoError(t, ticks.Purge(t.Context()))
	})

	t.Run("PauseAndResumeAJob", func(t *testing.T) {
		out, errOut, err := schedule(t, env, "pause", scheduler.JobBackupDue, "--reason", "storage migration")
		require.NoError(t, err, errOut)
		require.Equal(t, "backup.due paused\n", out)
		out, _, err = schedule(t, env, "pause", scheduler.JobBackupDue)
		require.NoError(t, err)
		require.Contains(t, out, "was paused already; nothing changed")
		var sOut, sErr bytes.Buffer
		require.NoError(t, cli.RunWith(t.Context(), []string{"status"}, &sOut, &sErr, cli.Options{Getenv: getenv(env)}), sErr.String())
		require.Contains(t, sOut.String(), "backup.due: PAUSED by ana")
		require.Contains(t, sOut.String(), "(storage migration); levqor schedule resume backup.due")
		out, _, err = schedule(t, env, "resume", scheduler.JobBackupDue)
		require.NoError(t, err)
		require.Equal(t, "backup.due resumed\n", out)
		_, _, err = schedule(t, env, "pause", "backup.nope")
		require.True(t, errors.Is(err, cli.ErrUsage), "%v", err)
		require.ErrorContains(t, err, "--job: no job named")
		trail, err := st.ListAudit(t.Context(), store.ListAuditParams{Action: ops.ActionSchedulePause, Limit: 10})
		require.NoError(t, err)
		require.Len(t, trail, 2, "each pause is audited; a job that does not exist was not paused")
	})

	t.Run("TriggerPublishesAManualTick", func(t *testing.T) {
		out, _, err := schedule(t, env, "trigger", scheduler.JobHousekeepingWatch)
		require.NoError(t, err)
		require.Contains(t, out, "published manual tick housekeeping.watch@")
		msgs := nenv.Messages(t, bus.Ticks)
		require.Len(t, msgs, 1)
		tk, err := scheduler.ParseTick(msgs[0].Data)
		require.NoError(t, err)
		require.True(t, tk.Manual)
		require.Contains(t, out, msgs[0].Header.Get(bus.HeaderMsgID))

		jsonOut, _, err := schedule(t, env, "trigger", "--json", scheduler.JobHousekeepingWatch)
		require.NoError(t, err)
		var p scheduler.Published
		require.NoError(t, json.Unmarshal([]byte(jsonOut), &p))
		require.NotEqual(t, msgs[0].Header.Get(bus.HeaderMsgID), p.MsgID, "a second trigger is a second tick")
		require.Len(t, nenv.Messages(t, bus.Ticks), 2)

		trail, err := st.ListAudit(t.Context(), store.ListAuditParams{Action: ops.ActionScheduleTrigger, Limit: 10})
		require.NoError(t, err)
		require.Len(t, trail, 2, "each trigger is in the audit trail")
		require.Equal(t, "ana", trail[0].Actor)
		require.Contains(t, string(trail[0].Params), p.MsgID, "the newest names its tick")

		entries := scheduleJSON(t, env)
		watch := entries[scheduler.JobHousekeepingWatch]
		require.NotNil(t, watch.LastManual)
		require.Equal(t, p.Tick.Slot, watch.LastManual.Slot)
		require.Nil(t, watch.LastSlot, "a manual tick is not a scheduled slot")
	})

	t.Run("ListShowsTheLastScheduledSlot", func(t *testing.T) {
		slot := time.Now().UTC().Truncate(time.Minute)
		b, err := json.Marshal(scheduler.Tick{Job: scheduler.JobHousekeepingPrune, Slot: slot})
		require.NoError(t, err)
		_, err = bus.NewPublisher(nenv.JS, nenv.Topo).Publish(context.Background(),
			nenv.Topo.Subject(bus.Ticks, scheduler.JobHousekeepingPrune), scheduler.MsgID(scheduler.JobHousekeepingPrune, slot), nil, b)
		require.NoError(t, err)
		prune := scheduleJSON(t, env)[scheduler.JobHousekeepingPrune]
		require.NotNil(t, prune.LastSlot)
		require.True(t, slot.Equal(*prune.LastSlot))
		out, _, err := schedule(t, env, "list")
		require.NoError(t, err)
		require.Contains(t, out, slot.Format("2006-01-02 15:04:05 MST"))
	})

	t.Run("OverridesShow", func(t *testing.T) {
		env := map[string]string{
			"LEVQOR_NATS_URL":     nenv.Server.ClientURL(),
			"LEVQOR_DATABASE_URL": dbURL,
			"LEVQOR_SCHEDULE":     "housekeeping.prune=off;housekeeping.watch=CRON_TZ=Europe/London 0 30 1 * * *",
		}
		entries := scheduleJSON(t, env)
		prune := entries[scheduler.JobHousekeepingPrune]
		require.True(t, prune.Disabled)
		require.Empty(t, prune.Next, "a disabled job does not fire")
		watch := entries[scheduler.JobHousekeepingWatch]
		require.Equal(t, "Europe/London", watch.TimeZone)
		require.Equal(t, "01:30", watch.Next[0].Format("15:04"), "shown in the job's zone")
		out, _, err := schedule(t, env, "list")
		require.NoError(t, err)
		require.Contains(t, out, "housekeeping.prune  (disabled by LEVQOR_SCHEDULE)")

		_, errOut, err := schedule(t, env, "trigger", scheduler.JobHousekeepingPrune)
		require.NoError(t, err)
		require.Contains(t, errOut, "disabled", "the operator is told the job is disabled")
	})
}

func TestScheduleErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args  []string
		env   map[string]string
		usage bool
		want  string
	}{
		"NoSubcommand":     {nil, nil, true, "schedule list"},
		"UnknownSub":       {[]string{"frob"}, nil, true, "frob"},
		"TriggerNoJob":     {[]string{"trigger"}, nil, true, "name one job"},
		"TriggerTwoJobs":   {[]string{"trigger", "a", "b"}, nil, true, "name one job"},
		"TriggerUnknown":   {[]string{"trigger", "billing.nope"}, nil, true, "housekeeping.watch"},
		"ListArgs":         {[]string{"list", "x"}, nil, true, "no arguments"},
		"BackfillNoRange":  {[]string{"backfill", "housekeeping.watch"}, nil, true, "--since and --until are required"},
		"BackfillBadTime":  {[]string{"backfill", "housekeeping.watch", "--since", "yesterday-ish", "--until", "1h"}, nil, true, "--since"},
		"BackfillUnknown":  {[]string{"backfill", "billing.nope", "--since", "2h", "--until", "1h"}, nil, true, "housekeeping.watch"},
		"BadFlag":          {[]string{"list", "--yaml"}, nil, true, "yaml"},
		"BadOverride":      {[]string{"list"}, map[string]string{"LEVQOR_SCHEDULE": "housekeeping.prune=every day"}, false, "LEVQOR_SCHEDULE"},
		"CatchUpTooLong":   {[]string{"list"}, map[string]string{"LEVQOR_CATCHUP_WINDOW": "96h"}, false, "LEVQOR_CATCHUP_WINDOW"},
		"TriggerNoNATS":    {[]string{"trigger", "housekeeping.watch"}, map[string]string{"LEVQOR_NATS_URL": "nats://127.0.0.1:1"}, false, "LEVQOR_NATS_URL"},
		"ListNoNATS":       {[]string{"list"}, map[string]string{"LEVQOR_NATS_URL": "nats://127.0.0.1:1"}, false, "last slots unknown"},
		"DevNATSByDefault": {[]string{"list"}, map[string]string{"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:1"}, false, "127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := schedule(t, tc.env, tc.args...)
			require.Error(t, err)
			require.Equal(t, tc.usage, errors.Is(err, cli.ErrUsage), "%v", err)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("ListWithoutNATSStillShowsTheCatalog", func(t *testing.T) {
		out, _, err := schedule(t, map[string]string{"LEVQOR_NATS_URL": "nats://operator:s3cret-pass@127.0.0.1:1"}, "list")
		require.Error(t, err)
		require.Equal(t, 1, cli.ExitCode(err))
		require.NotContains(t, err.Error(), "s3cret-pass", "credentials are never printed")
		require.NotContains(t, err.Error(), "operator")
		for _, j := range scheduler.Catalog() {
			require.Contains(t, out, j.Name)
		}
	})
}

func TestScheduleInDevMode(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LEVQOR_DATA_DIR":      t.TempDir(),
		"LEVQOR_HTTP_ADDR":     "127.0.0.1:0",
		"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:0",
		"LEVQOR_LOG_LEVEL":     "warn",
	}
	d := startDev(t, env)
	// An operator's shell in dev mode sets nothing but the dev NATS address.
	cliEnv := map[string]string{"LEVQOR_DEV_NATS_ADDR": strings.TrimPrefix(d.info.NATSURL, "nats://"), "LEVQOR_DATA_DIR": env["LEVQOR_DATA_DIR"]}
	out, errOut, err := schedule(t, cliEnv, "list")
	require.NoError(t, err, errOut)
	t.Logf("levqor schedule list:\n%s", out)
	for _, j := range scheduler.Catalog() {
		require.Contains(t, out, j.Name)
	}
	out, _, err = schedule(t, cliEnv, "trigger", scheduler.JobHousekeepingWatch)
	require.NoError(t, err)
	require.Contains(t, out, "published manual tick")

	// --wait returns once the worker has handled the tick, and says so.
	out, errOut, err = schedule(t, cliEnv, "trigger", scheduler.JobHousekeepingPrune, "--wait", "--json", "--timeout", "30s")
	require.NoError(t, err, errOut)
	var res cli.TriggerResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, []ops.Handling{{Consumer: "housekeeping-tick", State: ops.HandlingDone}}, res.Handling)
}
