package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/telemetry"
)

// connect opens NATS as role and (when withDB) the database, migrating
// it.
func connect(ctx context.Context, cfg config.Config, files Files, role string, withDB bool, log logrus.FieldLogger) (*Env, error) {
	env := &Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), catalog: files.Catalog, rules: files.Rules, notifyRules: files.NotifyRules}
	nc, js, err := ConnectNATS(cfg.NATSURL, "levqor-"+role, log, NATSOptions(cfg, role)...)
	if err != nil {
		return nil, err
	}
	env.NC, env.JS = nc, js
	if withDB {
		st, err := store.Open(ctx, cfg.DatabaseURL, log.WithField("component", "store"))
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("opening database (LEVQOR_DATABASE_URL): %w", err)
		}
		if err := st.Migrate(ctx); err != nil {
			nc.Close()
			_ = st.Close()
			return nil, fmt.Errorf("migrating database: %w", err)
		}
		env.Store = st
	}
	return env, nil
}

// close drains NATS (delivering acks still in flight) and closes the
// database.
func (e *Env) close() {
	for _, nc := range []*nats.Conn{e.NC, e.operatorNC} {
		if nc == nil {
			continue
		}
		if err := nc.Drain(); err != nil {
			nc.Close()
		}
		deadline := time.Now().Add(5 * time.Second)
		for !nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if e.Store != nil {
		_ = e.Store.Close()
	}
}

// RunIngest runs the ingest process until ctx ends.
func RunIngest(ctx context.Context, cfg config.Config, log logrus.FieldLogger) error {
	files, err := Check(cfg, config.RoleIngest)
	if err != nil {
		return err
	}
	ln, err := listen("LEVQOR_HTTP_ADDR", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	env, err := connect(ctx, cfg, files, NATSRoleIngest, true, log)
	if err != nil {
		return err
	}
	defer env.close()
	if cfg.AdminToken != "" {
		log.Warn("LEVQOR_ADMIN_TOKEN is ignored outside dev mode: operators authenticate with API keys (levqor apikey create --operator)")
	}
	srv, err := env.Ingest("")
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { _ = env.EnsureTopology(gctx); return nil }) // fails only when stopping
	g.Go(func() error {
		log.WithField("addr", cfg.HTTPAddr).Info("ingest listening")
		return telemetry.ServeListener(gctx, telemetry.NewServer(cfg.HTTPAddr, srv.Handler()), ln, cfg.ShutdownTimeout, log)
	})
	return g.Wait()
}

// adminServer serves /healthz, /readyz and /metrics for processes without
// a public API.
func (e *Env) adminServer(addr string) *http.Server {
	mux := http.NewServeMux()
	telemetry.Mount(mux, e.Reg, e.Checks()...)
	return telemetry.NewServer(addr, mux)
}

// RunWorkers runs the configured workers and the outbox relay until ctx
// ends.
func RunWorkers(ctx context.Context, cfg config.Config, log logrus.FieldLogger) error {
	files, err := Check(cfg, config.RoleWorkers)
	if err != nil {
		return err
	}
	names, warnings, err := ResolveWorkers(cfg.Workers)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	if slices.Contains(names, accounts.WorkerName) && cfg.StripeAPIKey == "" {
		return errors.New("STRIPE_API_KEY: required by the accounts worker, which creates Stripe customers (or leave it out of LEVQOR_WORKERS)")
	}
	if slices.Contains(names, backups.WorkerName) && cfg.BlobDir == "" && !cfg.BlobS3.Enabled() {
		return errors.New("LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_ENDPOINT: one is required by the backups worker, which keeps snapshot blobs " +
			"in that directory or S3-compatible bucket (or leave backups out of LEVQOR_WORKERS)")
	}
	if slices.Contains(names, notify.WorkerName) && cfg.SMTP.Host == "" && cfg.MailDir == "" {
		log.Warn("LEVQOR_SMTP_HOST is not set (nor LEVQOR_MAIL_DIR): the notify worker records every notification " +
			"as unsent, and nobody is told of failed backups or payments")
	}
	if slices.Contains(names, billing.WorkerName) && cfg.StripeAPIKey == "" {
		// Billing applies Stripe's events without the API; only its
		// sessions and reconciliation need it.
		log.Warn("STRIPE_API_KEY is not set: the billing worker applies Stripe events and runs dunning, " +
			"but answers checkout and portal commands with 503 and skips reconciliation")
	}
	ln, err := listen("LEVQOR_ADMIN_ADDR", cfg.AdminAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	env, err := connect(ctx, cfg, files, NATSRoleWorkers, true, log)
	if err != nil {
		return err
	}
	defer env.close()
	env.WatchControl(ctx)
	router, err := env.Router(cfg.Workers)
	if err != nil {
		return err
	}
	relay := env.Relay()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return telemetry.ServeListener(gctx, env.adminServer(cfg.AdminAddr), ln, cfg.ShutdownTimeout, log)
	})
	g.Go(func() error {
		if err := env.EnsureTopology(gctx); err != nil {
			return nil // stopping
		}
		return router.Run(gctx)
	})
	g.Go(func() error { return relay.Run(gctx) })
	return g.Wait()
}

// RunScheduler runs the scheduler until ctx ends.
func RunScheduler(ctx context.Context, cfg config.Config, log logrus.FieldLogger) error {
	_, err := Check(cfg, config.RoleScheduler)
	if err != nil {
		return err
	}
	ln, err := listen("LEVQOR_ADMIN_ADDR", cfg.AdminAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	env, err := connect(ctx, cfg, Files{}, NATSRoleScheduler, false, log)
	if err != nil {
		return err
	}
	defer env.close()
	env.WatchControl(ctx)
	sched, err := env.Scheduler()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return telemetry.ServeListener(gctx, env.adminServer(cfg.AdminAddr), ln, cfg.ShutdownTimeout, log)
	})
	g.Go(func() error {
		if err := env.EnsureTopology(gctx); err != nil {
			return nil
		}
		return sched.Run(gctx)
	})
	return g.Wait()
}

// Migrate applies the database migrations and returns.
func Migrate(ctx context.Context, cfg config.Config, log logrus.FieldLogger) error {
	_, err := Check(cfg, config.RoleMigrate)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Migrate(ctx)
}
