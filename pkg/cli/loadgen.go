package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/loadgen"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	register("loadgen", "send signed Stripe webhooks at a rate and measure", runLoadgen)
}

func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	fs := newFlags("loadgen", "loadgen [--rate r] [--count n | --duration d] [--connections c] [--wait d] [--json]", stdout,
		"LEVQOR_HTTP_ADDR", "STRIPE_WEBHOOK_SECRET", "LEVQOR_DATABASE_URL", "LEVQOR_DATA_DIR").
		describe("Sends signed Stripe webhooks to ingest at a rate and reports throughput and latency.")
	var lc loadgen.Config
	fs.StringVar(&lc.URL, "url", "http://"+cfg.HTTPAddr+"/webhooks/stripe", "ingest webhook URL")
	fs.StringVar(&lc.Secret, "secret", "", "signing secret (default STRIPE_WEBHOOK_SECRET, else dev mode's)")
	fs.Float64Var(&lc.Rate, "rate", 0, "requests per second (0: as fast as possible)")
	fs.IntVar(&lc.Connections, "connections", 16, "concurrent connections")
	fs.IntVar(&lc.Count, "count", 0, "requests to send")
	fs.DurationVar(&lc.Duration, "duration", 0, "how long to send (e.g. 30s)")
	fs.IntVar(&lc.Accounts, "accounts", 100, "simulated Stripe customers")
	mix := fs.String("mix", "subscription=4,invoice=4,checkout=1", "event mix by kind")
	fs.Float64Var(&lc.Duplicates, "duplicates", 0.05, "share of requests resending an earlier event")
	fs.Float64Var(&lc.OutOfOrder, "out-of-order", 0.05, "share of events delivered after their successor")
	fs.Uint64Var(&lc.Seed, "seed", 0, "random seed (0: random)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	wait := fs.Duration("wait", 0, "after sending, wait up to this long for every event to be committed and report end-to-end latency")
	dbURL := fs.String("database-url", "", "ledger database for --wait (default LEVQOR_DATABASE_URL, else dev mode's)")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if lc.Mix, err = parseMix(*mix); err != nil {
		return usageError("%v", err)
	}
	if lc.Secret == "" && len(cfg.WebhookSecrets) > 0 {
		lc.Secret = cfg.WebhookSecrets[0]
	}
	if lc.Secret == "" {
		if lc.Secret, err = devSecret(opts, false); err != nil {
			return err
		}
	}
	if err := lc.Validate(); err != nil {
		return usageError("%v", err)
	}
	progress := func(r loadgen.Report) {
		fmt.Fprintf(stderr, "\r%6.1fs  sent %d  accepted %d  errors %d  %.0f/s   ", r.Elapsed.Seconds(), r.Sent, r.Accepted, r.Errors, r.Throughput)
	}
	rep, err := loadgen.Run(ctx, lc, progress)
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	out := struct {
		loadgen.Report
		EndToEnd *loadgen.EndToEnd `json:"end_to_end,omitempty"`
	}{Report: rep}
	if *wait > 0 {
		u := *dbURL
		if u == "" {
			u = cfg.DatabaseURL
		}
		if u == "" {
			u = "sqlite:" + filepath.Join(cfg.DataDir, "levqor.db")
		}
		log := logrus.New()
		log.Out = io.Discard
		st, err := store.Open(ctx, u, log)
		if err != nil {
			return err
		}
		defer st.Close()
		e, err := loadgen.WaitCommitted(ctx, st, rep.Unique, *wait)
		if err != nil {
			return err
		}
		out.EndToEnd = &e
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printReport(stdout, out.Report, out.EndToEnd)
	if out.EndToEnd != nil && out.EndToEnd.TimedOut {
		return fmt.Errorf("%d of %d accepted events not committed within %s", out.EndToEnd.Expected-out.EndToEnd.Committed, out.EndToEnd.Expected, *wait)
	}
	return nil
}

func parseMix(s string) (map[string]float64, error) {
	m := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		w, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("--mix %q: want kind=weight,…", part)
		}
		m[k] = w
	}
	return m, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func printReport(w io.Writer, r loadgen.Report, e *loadgen.EndToEnd) {
	codes := make([]string, 0, len(r.Status))
	for c := range r.Status {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var sc []string
	for _, c := range codes {
		sc = append(sc, fmt.Sprintf("%s×%d", c, r.Status[c]))
	}
	fmt.Fprintf(w, "sent        %d in %s (%d transport errors)\n", r.Sent, r.Elapsed.Round(time.Millisecond), r.Errors)
	fmt.Fprintf(w, "status      %s\n", strings.Join(sc, "  "))
	fmt.Fprintf(w, "accepted    %d (%d acknowledged as duplicates), %.0f/s\n", r.Accepted, r.Duplicates, r.Throughput)
	fmt.Fprintf(w, "latency     p50 %s  p90 %s  p99 %s  max %s\n", ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.Max))
	if e != nil {
		fmt.Fprintf(w, "committed   %d of %d unique events, %.0f/s\n", e.Committed, e.Expected, e.Throughput)
		fmt.Fprintf(w, "end to end  p50 %s  p90 %s  p99 %s  max %s\n", ms(e.Latency.P50), ms(e.Latency.P90), ms(e.Latency.P99), ms(e.Latency.Max))
	}
}
