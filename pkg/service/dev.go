package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/embeddednats"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripedev"
	"github.com/levqor/levqor/pkg/telemetry"
)

// DevSecrets are dev mode's webhook secret and operator token: taken from
// the environment when set, otherwise generated once and kept in the data
// dir so they survive restarts.
type DevSecrets struct {
	WebhookSecret string `json:"stripe_webhook_secret"`
	AdminToken    string `json:"admin_token"`
	// WebhookKey derives the signing secrets of customer webhook
	// endpoints (LEVQOR_WEBHOOK_SECRET_KEY).
	WebhookKey string `json:"webhook_secret_key,omitempty"`
	// BusKey proves Stripe events on the bus (LEVQOR_BUS_KEY).
	BusKey string `json:"bus_key,omitempty"`
	// MasterKey seals secrets in commands (LEVQOR_MASTER_KEYS).
	MasterKey string `json:"master_key,omitempty"`
	// NATSPassword is DevNATSUser's password on the embedded NATS server,
	// which refuses clients without it.
	NATSPassword string `json:"nats_password,omitempty"`
}

// DevNATSUser is the one user of dev mode's embedded NATS server: dev mode
// itself, the operator tools and the nats CLI connect as it.
const DevNATSUser = "levqor"

// DevSecretsFile is the file under the data dir that keeps DevSecrets.
const DevSecretsFile = "secrets.json"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// LoadDevSecrets reads the data dir's secrets, generating and saving them
// (mode 0600) on first use.
func LoadDevSecrets(dataDir string) (DevSecrets, error) {
	path := filepath.Join(dataDir, DevSecretsFile)
	var s DevSecrets
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s); err != nil {
			return s, fmt.Errorf("reading %s: %w (delete it to generate new secrets)", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return s, fmt.Errorf("reading %s: %w", path, err)
	}
	changed := false
	if s.WebhookSecret == "" {
		s.WebhookSecret, changed = "whsec_"+randomHex(24), true
	}
	if s.AdminToken == "" {
		s.AdminToken, changed = "lvq_dev_"+randomHex(24), true
	}
	if s.WebhookKey == "" {
		s.WebhookKey, changed = randomHex(32), true
	}
	if s.BusKey == "" {
		s.BusKey, changed = randomHex(32), true
	}
	if s.MasterKey == "" {
		s.MasterKey, changed = randomHex(32), true
	}
	if s.NATSPassword == "" {
		s.NATSPassword, changed = randomHex(24), true
	}
	if changed {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return s, err
		}
		b, _ := json.MarshalIndent(s, "", "  ")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return s, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return s, err
		}
	}
	return s, nil
}

// DevOptions lets tests start dev mode on free ports.
type DevOptions struct {
	// Ready, when set, receives the running addresses once everything is
	// up.
	Ready func(DevInfo)
}

// DevInfo is what dev mode prints on start.
type DevInfo struct {
	IngestURL  string
	WebhookURL string
	NATSURL    string
	// NATSPassword is DevNATSUser's password on NATSURL.
	NATSPassword  string
	DatabaseURL   string
	DataDir       string
	WebhookSecret string
	AdminToken    string
}

// RunDev runs everything in one process: embedded NATS with JetStream,
// SQLite (or LEVQOR_DATABASE_URL), ingest, all workers, the outbox relay
// and the scheduler. It prints where everything is to out and returns after
// a clean shutdown when ctx ends.
func RunDev(ctx context.Context, cfg config.Config, log logrus.FieldLogger, out io.Writer, opts DevOptions) error {
	files, err := Check(cfg, config.RoleDev)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("LEVQOR_DATA_DIR: %w", err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.release()
	secrets, err := LoadDevSecrets(cfg.DataDir)
	if err != nil {
		return err
	}
	webhookSecretFromEnv, adminTokenFromEnv := len(cfg.WebhookSecrets) > 0, cfg.AdminToken != ""
	if len(cfg.WebhookSecrets) == 0 {
		cfg.WebhookSecrets = []string{secrets.WebhookSecret}
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = secrets.AdminToken
	}
	if cfg.WebhookKey == "" {
		cfg.WebhookKey = secrets.WebhookKey
	}
	if cfg.BusKey == "" {
		cfg.BusKey = secrets.BusKey
	}
	if cfg.MasterKeys == "" {
		cfg.MasterKeys = secrets.MasterKey
	}
	if len(cfg.NotifyRetry) == 0 {
		// Seconds, not hours: a failing delivery is dead-lettered while
		// one watches (see docs/notifications.md).
		cfg.NotifyRetry = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	}
	if len(cfg.WebhookAllowNets) == 0 {
		// Dev mode's receivers run on the same machine.
		cfg.WebhookAllowNets = []string{"127.0.0.0/8", "::1"}
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = "sqlite:" + filepath.Join(cfg.DataDir, "levqor.db")
	}
	if cfg.SMTP.Host == "" && cfg.MailDir == "" {
		cfg.MailDir = filepath.Join(cfg.DataDir, "mail")
	}
	if cfg.BlobDir == "" {
		cfg.BlobDir = filepath.Join(cfg.DataDir, "blobs")
	}
	if len(cfg.BackupPaths) == 0 {
		cfg.BackupPaths = backups.DevPaths()
	}
	if cfg.StripeAPIKey == "" && cfg.StripeAPIBase != "" {
		cfg.StripeAPIKey = config.StripeDevAPIKey
	}

	// Take the ports first, so that a taken one fails at once and says
	// which setting to change.
	ln, err := listen("LEVQOR_HTTP_ADDR", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + ln.Addr().String()
	}
	var standIn *stripedev.Server
	var standInLn net.Listener
	if cfg.StripeAPIKey == "" && cfg.StripeAPIBase == "" {
		standIn, standInLn, err = startStripeStandIn(cfg.DataDir)
		if err != nil {
			return err
		}
		defer standInLn.Close()
		cfg.StripeAPIBase, cfg.StripeAPIKey = "http://"+standInLn.Addr().String(), config.StripeDevAPIKey
		// Reconciliation takes Stripe's list of subscriptions as the
		// truth; the stand-in knows none of those sent as webhooks, so it
		// would cancel them all. An explicit LEVQOR_SCHEDULE entry wins.
		cfg.Schedule = scheduler.JobBillingReconcile + "=off;" + cfg.Schedule
	}

	srv, err := embeddednats.Start(embeddednats.Options{
		Addr:       cfg.DevNATSAddr,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		SyncAlways: cfg.DevNATSSyncAlways,
		ServerName: "levqor-dev",
		User:       DevNATSUser,
		Password:   secrets.NATSPassword,
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return addrInUse("LEVQOR_DEV_NATS_ADDR", cfg.DevNATSAddr)
	}
	if err != nil {
		return fmt.Errorf("starting embedded NATS on %s (LEVQOR_DEV_NATS_ADDR): %w", cfg.DevNATSAddr, err)
	}
	defer srv.Stop()
	cfg.NATSURL = srv.ClientURL()
	cfg.NATSCreds, cfg.NATSUser, cfg.NATSPassword = "", DevNATSUser, secrets.NATSPassword

	env, err := connect(ctx, cfg, files, NATSRoleDev, true, log)
	if err != nil {
		return err
	}
	defer env.close()
	env.applyStreams = true
	if err := env.EnsureTopology(ctx); err != nil {
		return err
	}
	env.WatchControl(ctx)
	router, err := env.Router([]string{"all"})
	if err != nil {
		return err
	}
	// After the router, so that ingest's /readyz includes the tick watch.
	ingestSrv, err := env.Ingest(cfg.AdminToken)
	if err != nil {
		return err
	}
	relay := env.Relay()
	sched, err := env.Scheduler()
	if err != nil {
		return err
	}
	info := DevInfo{
		IngestURL:     "http://" + ln.Addr().String(),
		WebhookURL:    "http://" + ln.Addr().String() + "/webhooks/stripe",
		NATSURL:       cfg.NATSURL,
		NATSPassword:  secrets.NATSPassword,
		DatabaseURL:   store.RedactURL(cfg.DatabaseURL),
		DataDir:       cfg.DataDir,
		WebhookSecret: cfg.WebhookSecrets[0],
		AdminToken:    cfg.AdminToken,
	}

	inst, err := devInstance(cfg, info, webhookSecretFromEnv, adminTokenFromEnv, standIn != nil)
	if err != nil {
		return err
	}
	if err := writeDevInstance(inst); err != nil {
		return fmt.Errorf("LEVQOR_DATA_DIR: writing %s: %w", DevInstanceFile, err)
	}
	defer os.Remove(filepath.Join(inst.DataDir, DevInstanceFile))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return telemetry.ServeListener(gctx, telemetry.NewServer(cfg.HTTPAddr, ingestSrv.Handler()), ln, cfg.ShutdownTimeout, log)
	})
	if standIn != nil {
		g.Go(func() error {
			return telemetry.ServeListener(gctx, &http.Server{Handler: standIn, ReadHeaderTimeout: 10 * time.Second}, standInLn, cfg.ShutdownTimeout, log)
		})
	}
	g.Go(func() error { return router.Run(gctx) })
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })

	fmt.Fprintf(out, `
Levqor dev mode is running. Ctrl-C stops it.

  ingest            %s
  console           %s/app/   (sign in as a user from: levqor user create, below)
  stripe webhooks   %s
  health            %s/healthz  %s/readyz  %s/metrics (operator token)
  NATS (JetStream)  %s   (nats --server %s --user %s --password %s stream ls)
  database          %s
  data dir          %s

  STRIPE_WEBHOOK_SECRET=%s
  LEVQOR_ADMIN_TOKEN=%s   (dev operator token: Authorization: Bearer <it>)
  Stripe API        %s

Send a test event:  go run ./cmd/levqor webhook send customer.subscription.created
Create an API key:  go run ./cmd/levqor apikey create --operator --name me
First console user: go run ./cmd/levqor user create --email you@example.com --role operator   (type a password of 12+ characters, Enter)
`, info.IngestURL, info.IngestURL, info.WebhookURL, info.IngestURL, info.IngestURL, info.IngestURL,
		info.NATSURL, info.NATSURL, DevNATSUser, secrets.NATSPassword, info.DatabaseURL, info.DataDir, info.WebhookSecret, info.AdminToken, stripeTarget(cfg, standIn != nil))
	reminded := make(chan struct{})
	go func() {
		defer close(reminded)
		deadline := time.Now().Add(10 * time.Second)
		for !router.Ready() && time.Now().Before(deadline) && gctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if router.Ready() {
			// The banner has scrolled away under the start-up logs by now:
			// say again where everything is once they settle.
			select {
			case <-time.After(devSettleDefault):
				fmt.Fprint(out, readyReminder(cfg, inst))
			case <-gctx.Done():
			}
		}
		if opts.Ready != nil {
			opts.Ready(info)
		}
	}()
	err = g.Wait()
	<-reminded // nothing writes to out once RunDev has returned
	log.Info("dev mode stopped")
	return err
}

// stripeTarget says where dev mode's accounts and billing workers send
// Stripe calls.
func stripeTarget(cfg config.Config, standIn bool) string {
	switch {
	case standIn:
		return cfg.StripeAPIBase + "   offline stand-in (no STRIPE_API_KEY or STRIPE_API_BASE set), state in " +
			filepath.Join(cfg.DataDir, DevStripeStateFile) + "; billing.reconcile is off"
	case cfg.StripeAPIKey == "":
		return "not configured: creating accounts and checkout sessions fails until STRIPE_API_BASE (stripe-mock) or STRIPE_API_KEY is set"
	case cfg.StripeAPIBase != "":
		return cfg.StripeAPIBase
	default:
		return "https://api.stripe.com (STRIPE_API_KEY)"
	}
}
