package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
)

// opsWorld is a running deployment for the operator commands: NATS, a
// migrated database, and the real billing worker behind a switchable bug.
type opsWorld struct {
	t    *testing.T
	nats *bustest.Env
	st   *store.Store
	env  map[string]string
	pub  *bus.Publisher
	// bug makes the billing handler fail permanently on
	// invoice.payment_failed events, as a bad deploy would.
	bug atomic.Bool
}

func newOpsWorld(t *testing.T, dbURL string) *opsWorld {
	t.Helper()
	w := &opsWorld{t: t, nats: bustest.Start(t)}
	st, err := store.Open(t.Context(), dbURL, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	w.st = st
	w.pub = bus.NewPublisher(w.nats.JS, w.nats.Topo)
	w.env = map[string]string{
		"LEVQOR_NATS_URL": w.nats.Server.ClientURL(),
		"LEVQOR_BUS_KEY":  "abababababababababababababababababababababababababababababababab", "LEVQOR_MASTER_KEYS": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		"LEVQOR_DATABASE_URL": dbURL,
		"LEVQOR_LOG_LEVEL":    "warn",
		"USER":                "ana",
	}
	return w
}

// runWorkers runs the billing worker, as `levqor workers` would.
func (w *opsWorld) runWorkers() {
	t := w.t
	t.Helper()
	cfg, err := config.FromEnv(getenv(w.env))
	require.NoError(t, err)
	log := logrus.New()
	log.SetOutput(t.Output())
	log.SetLevel(logrus.ErrorLevel)
	env := &service.Env{Cfg: cfg, Log: log, Reg: prometheus.NewRegistry(), NC: w.nats.NC, JS: w.nats.JS, Store: w.st}
	r, err := env.Router([]string{"billing"})
	require.NoError(t, err)
	r.Use(func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			if w.bug.Load() && strings.HasSuffix(m.Subject, ".invoice.payment_failed") {
				return bus.Permanentf("billing: cannot read amount_due of %s", m.ID())
			}
			return next(ctx, m)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
	t.Cleanup(func() { cancel(); <-done })
}

// send publishes a Stripe event as ingest does and returns its id.
func (w *opsWorld) send(typ string) string {
	w.t.Helper()
	payload, err := stripesim.NewEvent(typ, stripesim.EventOptions{})
	require.NoError(w.t, err)
	var env struct{ ID string }
	require.NoError(w.t, json.Unmarshal(payload, &env))
	key, err := keys.ParseBusKey(w.env["LEVQOR_BUS_KEY"])
	require.NoError(w.t, err)
	h := nats.Header{keys.HeaderBusProof: {key.ProveMessage(payload)}}
	_, err = w.pub.Publish(w.t.Context(), w.nats.Topo.Subject(bus.Stripe, typ), env.ID, h, payload)
	require.NoError(w.t, err)
	return env.ID
}

func (w *opsWorld) waitRecorded(id string) {
	w.t.Helper()
	require.Eventually(w.t, func() bool {
		_, err := w.st.GetStripeEvent(w.t.Context(), id)
		return err == nil
	}, 15*time.Second, 20*time.Millisecond, "event %s recorded", id)
}

func (w *opsWorld) waitDLQ(n uint64) {
	w.t.Helper()
	require.Eventually(w.t, func() bool { return w.nats.StreamMsgs(w.t, bus.DLQ) == n }, 15*time.Second, 20*time.Millisecond)
}

type result struct {
	code           int
	stdout, stderr string
}

// levqor runs the command line as the binary would and returns its exit
// code and output.
func (w *opsWorld) levqor(stdin string, args ...string) result {
	w.t.Helper()
	var out, errOut bytes.Buffer
	err := cli.RunWith(context.Background(), args, &out, &errOut, cli.Options{
		Getenv: getenv(w.env), Stdin: strings.NewReader(stdin),
	})
	if err != nil {
		errOut.WriteString("levqor: " + err.Error() + "\n")
	}
	return result{code: cli.ExitCode(err), stdout: out.String(), stderr: errOut.String()}
}

func (w *opsWorld) dlqSeqs() []uint64 {
	w.t.Helper()
	r := w.levqor("", "dlq", "list", "--json", "--limit", "0")
	require.Zero(w.t, r.code, r.stderr)
	var list ops.DLQList
	require.NoError(w.t, json.Unmarshal([]byte(r.stdout), &list))
	var seqs []uint64
	for _, d := range list.DeadLetters {
		seqs = append(seqs, d.Seq)
	}
	return seqs
}

func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	for name, dbURL := range map[string]func(t *testing.T) string{
		"SQLite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "levqor.db") },
		"Postgres": func(t *testing.T) string { return storetest.PostgresURL(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testOperatorCommands(t, newOpsWorld(t, dbURL(t)))
		})
	}
}

func testOperatorCommands(t *testing.T, w *opsWorld) {
	w.bug.Store(true)
	w.runWorkers()
	good := w.send("invoice.paid")
	w.waitRecorded(good)
	bad := w.send("invoice.payment_failed")
	w.waitDLQ(1)

	t.Run("StatusShowsTheDeadLetter", func(t *testing.T) {
		r := w.levqor("", "status")
		require.Zero(t, r.code, r.stderr)
		require.Regexp(t, `billing-stripe\s+STRIPE\s+HEALTHY\s+0\s+0\s+0\s+-\s+1`, r.stdout)
		require.Contains(t, r.stdout, "1 dead letter in the DLQ; see levqor dlq list --consumer billing-stripe")
		r = w.levqor("", "status", "--json")
		require.Zero(t, r.code, r.stderr)
		var rep ops.Report
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
		var bill *ops.ConsumerStatus
		for i, c := range rep.Consumers {
			if c.Name == "billing-stripe" {
				bill = &rep.Consumers[i]
			}
		}
		require.NotNil(t, bill, r.stdout)
		require.EqualValues(t, 1, bill.DeadLetters)
		require.Equal(t, ops.StateHealthy, bill.State)
		require.EqualValues(t, 2, rep.Streams[0].Messages)
	})

	t.Run("NothingStuck", func(t *testing.T) {
		r := w.levqor("", "stuck")
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Nothing stuck")
	})

	var seq uint64
	t.Run("ListAndShowWithTheReason", func(t *testing.T) {
		r := w.levqor("", "dlq", "list", "--consumer", "billing-stripe")
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "levqor.stripe.invoice.payment_failed")
		require.Contains(t, r.stdout, "permanent: billing: cannot read amount_due of "+bad)
		seqs := w.dlqSeqs()
		require.Len(t, seqs, 1)
		seq = seqs[0]

		r = w.levqor("", "dlq", "show", strconv.FormatUint(seq, 10))
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Levqor-Dlq-Reason: permanent: billing: cannot read amount_due")
		require.Contains(t, r.stdout, "Levqor-Msg-Id: "+bad)
		require.Contains(t, r.stdout, `  "id": "`+bad+`",`, "the payload is pretty-printed")
	})

	t.Run("ReplayAfterTheFixIsProcessedOnce", func(t *testing.T) {
		r := w.levqor("", "dlq", "replay", strconv.FormatUint(seq, 10), "--dry-run")
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Dry run: 1 dead letter would be replayed")
		require.Equal(t, []uint64{seq}, w.dlqSeqs())

		w.bug.Store(false)
		r = w.levqor("", "dlq", "replay", strconv.FormatUint(seq, 10))
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Replayed 1 of 1 dead letter.")
		w.waitRecorded(bad)
		require.Empty(t, w.dlqSeqs())
		n, err := w.st.CountStripeEvents(t.Context())
		require.NoError(t, err)
		require.EqualValues(t, 2, n)

		r = w.levqor("", "dlq", "replay", strconv.FormatUint(seq, 10))
		require.Equal(t, 1, r.code, "replaying what is gone fails: %s", r.stdout)
		require.Contains(t, r.stdout, "no dead letter with seq")
	})

	t.Run("PartialReplayExitsThree", func(t *testing.T) {
		w.bug.Store(true)
		id := w.send("invoice.payment_failed")
		w.waitDLQ(1)
		w.bug.Store(false)
		seqs := w.dlqSeqs()
		r := w.levqor("", "dlq", "replay", strconv.FormatUint(seqs[0], 10), "99999")
		require.Equal(t, cli.ExitPartial, r.code, r.stdout+r.stderr)
		require.Contains(t, r.stdout, "Replayed 1 of 2 dead letters; 1 failed.")
		w.waitRecorded(id)
	})

	t.Run("PurgeAsksAndRemovesOnlyItsSelection", func(t *testing.T) {
		w.bug.Store(true)
		w.send("invoice.payment_failed")
		w.send("invoice.payment_failed")
		w.waitDLQ(2)
		w.bug.Store(false)
		seqs := w.dlqSeqs()
		r := w.levqor("n\n", "dlq", "purge", "--all", "--reason", "AMOUNT_DUE")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stdout, "Purge 2 dead letters for good?")
		require.Contains(t, r.stderr, "purge not confirmed: nothing purged")
		require.Equal(t, seqs, w.dlqSeqs())

		r = w.levqor("y\n", "dlq", "purge", strconv.FormatUint(seqs[0], 10))
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Purged 1 of 1 dead letter.")
		require.Equal(t, seqs[1:], w.dlqSeqs())

		r = w.levqor("", "dlq", "purge", "--all", "--subject", "levqor.stripe.customer.*", "--yes")
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "No dead letters match")
		require.Equal(t, seqs[1:], w.dlqSeqs(), "a filter matching nothing purges nothing")
	})

	t.Run("ReplayWindow", func(t *testing.T) {
		// The stream holds 7 events; the two dead-lettered in the purge
		// test were never processed by billing-stripe.
		r := w.levqor("", "replay", "--consumer", "billing-stripe", "--stream", "STRIPE", "--since", "1h", "--dry-run")
		require.Zero(t, r.code, r.stderr)
		require.Regexp(t, `Dry run: 7 messages of STRIPE from .* for billing-stripe; 2 would be replayed, 5 skipped as already processed`, r.stdout)
		before, err := w.st.CountStripeEvents(t.Context())
		require.NoError(t, err)

		r = w.levqor("", "replay", "--consumer", "billing-stripe", "--since", "1h", "--wait", "--timeout", "30s")
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Replayed 7 messages of STRIPE")
		require.Contains(t, r.stdout, "2 published, 5 skipped as already processed, 0 failed.")
		require.Contains(t, r.stdout, "billing-stripe handled 2 and dead-lettered 0 of them.")
		after, err := w.st.CountStripeEvents(t.Context())
		require.NoError(t, err)
		require.Equal(t, before+2, after, "the two lost events are recorded now")

		r = w.levqor("", "replay", "--consumer", "billing-stripe", "--since", "1h", "--subject", "levqor.stripe.invoice.paid", "--force", "--json")
		require.Zero(t, r.code, r.stderr)
		var res ops.WindowResult
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		require.Equal(t, [4]int{1, 1, 0, 0}, [4]int{res.Selected, res.Replayed, res.Skipped, res.Failed}, "just the one invoice.paid, forced")
		require.False(t, res.Waited)

		// Without --wait the command says where the replays are.
		r = w.levqor("", "replay", "--consumer", "billing-stripe", "--since", "1h", "--subject", "levqor.stripe.invoice.paid", "--force")
		require.Zero(t, r.code, r.stderr)
		require.Regexp(t, `billing-stripe's workers run them now \(stream seq \d+ to \d+\); --wait waits for them.`, r.stdout)
	})

	t.Run("StripeBackfill", func(t *testing.T) {
		w.env["STRIPE_API_BASE"] = stripemock.Start(t)
		w.env["STRIPE_API_KEY"] = stripemock.TestKey
		r := w.levqor("", "stripe", "backfill", "--since", "3d")
		require.Zero(t, r.code, r.stderr)
		require.Contains(t, r.stdout, "Stripe lists 1 event since")
		require.Contains(t, r.stdout, "0 already recorded, 1 published")
		w.waitRecorded("evt_1Pgc76B7WZ01zgkWwyRHS12y")
		r = w.levqor("", "stripe", "backfill", "--since", "3d", "--json")
		require.Zero(t, r.code, r.stderr)
		var res ops.BackfillResult
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		require.Equal(t, [2]int{1, 0}, [2]int{res.Recorded, res.Published}, "seen events are not published again")
	})

	t.Run("AuditSaysWhoDidWhat", func(t *testing.T) {
		r := w.levqor("", "audit", "--json", "--limit", "100")
		require.Zero(t, r.code, r.stderr)
		var out struct{ Entries []store.AuditEntry }
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
		var actions []string
		for _, e := range out.Entries {
			require.Equal(t, "ana", e.Actor)
			actions = append(actions, e.Action+"/"+e.Outcome)
		}
		require.Equal(t, []string{
			"stripe.backfill/ok", "stripe.backfill/ok",
			"replay.window/ok", "replay.window/ok", "replay.window/ok", "replay.window/dry_run",
			"dlq.purge/ok", "dlq.purge/ok",
			"dlq.replay/partial", "dlq.replay/failed", "dlq.replay/ok", "dlq.replay/dry_run",
			"dlq.show/ok",
		}, actions)
		r = w.levqor("", "audit", "--action", "dlq.purge")
		require.Zero(t, r.code, r.stderr)
		require.Regexp(t, regexp.MustCompile(`ana\s+dlq.purge\s+ok`), r.stdout)
	})
}

func TestOperatorCommandsRefuseBadInput(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t, "sqlite:"+filepath.Join(t.TempDir(), "levqor.db"))
	w.runWorkers() // the consumers a window replay is checked against
	for name, tc := range map[string]struct {
		args    []string
		code    int
		message string
	}{
		"NoDLQCommand":       {[]string{"dlq"}, 2, "dlq needs a subcommand"},
		"ReplayWithoutSeqs":  {[]string{"dlq", "replay"}, 2, "needs DLQ sequences, or --all"},
		"SeqNotANumber":      {[]string{"dlq", "show", "abc"}, 2, `want a DLQ sequence`},
		"BadSince":           {[]string{"dlq", "list", "--since", "last tuesday"}, 2, "--since"},
		"BadSubject":         {[]string{"dlq", "list", "--subject", "a..b"}, 2, "--subject"},
		"WindowNoSince":      {[]string{"replay", "--consumer", "billing-stripe"}, 2, "needs --consumer and --since"},
		"WindowUnknown":      {[]string{"replay", "--consumer", "nobody", "--since", "1h"}, 2, "--consumer: unknown consumer \"nobody\""},
		"WindowWrongStream":  {[]string{"replay", "--consumer", "billing-stripe", "--stream", "TICKS", "--since", "1h"}, 2, "--stream"},
		"BackfillNoSince":    {[]string{"stripe", "backfill"}, 2, "needs --since"},
		"BackfillNoKey":      {[]string{"stripe", "backfill", "--since", "1h"}, 1, "STRIPE_API_KEY"},
		"UnknownFlag":        {[]string{"status", "--verbose"}, 2, "flag provided but not defined"},
		"ShowUnknownSeq":     {[]string{"dlq", "show", "777"}, 1, "no dead letter with seq 777"},
		"StuckUnknownTarget": {[]string{"stuck", "--consumer", "nobody"}, 1, "not found"},
	} {
		t.Run(name, func(t *testing.T) {
			r := w.levqor("", tc.args...)
			require.Equal(t, tc.code, r.code, r.stdout+r.stderr)
			require.Contains(t, r.stderr, tc.message)
		})
	}

	t.Run("NoDevDatabaseSaysWhatToDo", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := cli.RunWith(context.Background(), []string{"status"}, &out, &errOut, cli.Options{
			Getenv: getenv(map[string]string{"LEVQOR_DATA_DIR": t.TempDir()}),
		})
		require.ErrorContains(t, err, "start `levqor dev` here, or set LEVQOR_DATABASE_URL")
		require.Equal(t, 1, cli.ExitCode(err))
	})

	t.Run("NATSDownFailsFast", func(t *testing.T) {
		env := map[string]string{"LEVQOR_NATS_URL": "nats://127.0.0.1:1", "LEVQOR_DATABASE_URL": w.env["LEVQOR_DATABASE_URL"]}
		start := time.Now()
		err := cli.RunWith(context.Background(), []string{"status"}, &bytes.Buffer{}, &bytes.Buffer{}, cli.Options{Getenv: getenv(env)})
		require.ErrorContains(t, err, "connecting to NATS at nats://127.0.0.1:1 (LEVQOR_NATS_URL)")
		require.Less(t, time.Since(start), 10*time.Second)
	})
	require.Empty(t, func() []store.AuditEntry {
		e, err := w.st.ListAudit(t.Context(), store.ListAuditParams{})
		require.NoError(t, err)
		return e
	}(), "refused commands leave no audit entry")
}
