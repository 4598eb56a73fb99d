package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/console"
	"github.com/levqor/levqor/pkg/control"
	"github.com/levqor/levqor/pkg/housekeeping"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/outbox"
	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripeapi"
	"github.com/levqor/levqor/pkg/support"
	"github.com/levqor/levqor/pkg/support/triage"
	"github.com/levqor/levqor/pkg/telemetry"
)

// Env holds a process's connections and shared parts.
type Env struct {
	Cfg   config.Config
	Log   logrus.FieldLogger
	Reg   *prometheus.Registry
	NC    *nats.Conn
	JS    jetstream.JetStream
	Store *store.Store // nil for the scheduler

	// applyStreams makes EnsureTopology change streams whose settings
	// differ (dev mode); the services only create missing ones.
	applyStreams bool

	// operatorNC and operatorJS are ingest's operator connection
	// (LEVQOR_NATS_OPERATOR_*), opened by OperatorJS.
	operatorNC *nats.Conn
	operatorJS jetstream.JetStream

	busMetrics       *bus.Metrics
	retentionMetrics *backups.Metrics
	billingMetrics   *billing.Metrics
	supportMetrics   *support.Metrics
	catalog          *catalog.Catalog
	rules            *triage.Rules
	notifyRules      *notify.Rules
	// ticks watches the scheduler from the tick consumers of the router
	// Router built; nil when it runs none.
	ticks *tickWatch
	// control holds the operators' pauses once WatchControl has read
	// them; nil until then (nothing is paused).
	control atomic.Pointer[control.Control]
}

// controlWait is how long WatchControl waits for the pauses before the
// process starts without them (and keeps trying in the background).
const controlWait = 30 * time.Second

// WatchControl reads the operators' pauses (package control) and keeps
// them current until ctx ends. It returns once they are read, so that a
// restarted worker or scheduler does not begin with a paused consumer or
// job running; if JetStream does not answer within controlWait it
// returns anyway, warning, and keeps trying in the background. Routers
// and the scheduler built by this Env honour the pauses from then on.
func (e *Env) WatchControl(ctx context.Context) {
	loaded := make(chan struct{})
	go func() {
		b := backoff.NewExponentialBackOff(backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
		for ctx.Err() == nil {
			c, err := control.Open(ctx, e.JS, e.Cfg.Topology, e.Log.WithField("component", "control"))
			if err == nil {
				err = c.Watch(ctx)
			}
			if err == nil {
				e.control.Store(c)
				close(loaded)
				return
			}
			e.Log.WithError(err).Warn("cannot read the operators' pauses yet; retrying")
			select {
			case <-ctx.Done():
			case <-time.After(b.NextBackOff()):
			}
		}
	}()
	select {
	case <-loaded:
	case <-ctx.Done():
	case <-time.After(controlWait):
		e.Log.Warn("the operators' pauses are not read yet: starting without them until they are")
	}
}

// paused reports whether an operator paused key.
func (e *Env) paused(key string) bool { return e.control.Load().Paused(key) }

// Catalog returns the product catalog of LEVQOR_CATALOG (the shipped
// example when unset), loaded once per Env.
func (e *Env) Catalog() (*catalog.Catalog, error) {
	if e.catalog == nil {
		c, err := catalog.Load(e.Cfg.Catalog)
		if err != nil {
			return nil, err
		}
		e.catalog = c
	}
	return e.catalog, nil
}

// The roles a NATS connection is opened for. Each takes its replies (and
// its consumers' deliveries) under its own inbox prefix, "_INBOX.<role>",
// so that a server granting each user only its own (deploy/nats/auth.conf)
// keeps every process from reading another's.
const (
	NATSRoleIngest    = "ingest"
	NATSRoleWorkers   = "workers"
	NATSRoleScheduler = "scheduler"
	NATSRoleOperator  = "operator"
	NATSRoleDev       = "dev"
)

// NATSOptions are the connection options of a process of role: its inbox
// prefix, cfg's NATS credentials and TLS settings (LEVQOR_NATS_CREDS or
// _USER and _PASSWORD; _TLS_CA, _TLS_CERT, _TLS_KEY).
func NATSOptions(cfg config.Config, role string) []nats.Option {
	return natsOptions(cfg, role, cfg.NATSCreds, cfg.NATSUser, cfg.NATSPassword)
}

// OperatorNATSOptions are the options of ingest's operator connection,
// which its /admin API acts with: LEVQOR_NATS_OPERATOR_CREDS or _USER and
// _PASSWORD, and the process's TLS settings. ok is false when none are
// configured (the admin API then uses the process's own connection).
func OperatorNATSOptions(cfg config.Config) (opts []nats.Option, ok bool) {
	if cfg.NATSOperatorCreds == "" && cfg.NATSOperatorUser == "" {
		return nil, false
	}
	return natsOptions(cfg, NATSRoleOperator, cfg.NATSOperatorCreds, cfg.NATSOperatorUser, cfg.NATSOperatorPassword), true
}

func natsOptions(cfg config.Config, role, creds, user, password string) []nats.Option {
	opts := []nats.Option{nats.CustomInboxPrefix("_INBOX." + role)}
	switch {
	case creds != "":
		opts = append(opts, nats.UserCredentials(creds))
	case user != "":
		opts = append(opts, nats.UserInfo(user, password))
	}
	if cfg.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSTLSCA))
	}
	if cfg.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSTLSCert, cfg.NATSTLSKey))
	}
	return opts
}

// ConnectNATS connects to url and keeps reconnecting forever: a NATS
// restart must never need a restart of Levqor's processes. The first
// connection is retried in the background too (RetryOnFailedConnect), so a
// process starts, reports not-ready, and recovers when NATS comes up.
func ConnectNATS(url, name string, log logrus.FieldLogger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1), // never buffer publishes: an unacknowledged publish must fail, not linger
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if err != nil && !c.IsClosed() && !c.IsDraining() {
				log.WithError(err).Warn("nats disconnected; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.WithField("url", c.ConnectedUrlRedacted()).Info("nats reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrPermissionViolation) {
				log.WithError(err).Error("nats refused this process's credentials or permissions (LEVQOR_NATS_*)")
			}
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS (LEVQOR_NATS_URL): %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// OperatorJS is the JetStream the operator tools act with: ingest's
// operator connection (LEVQOR_NATS_OPERATOR_*), opened on first use, or
// the process's own when none is configured (the CLI connects with the
// operator's credentials in the first place).
func (e *Env) OperatorJS() (jetstream.JetStream, error) {
	if e.operatorJS != nil {
		return e.operatorJS, nil
	}
	opts, ok := OperatorNATSOptions(e.Cfg)
	if !ok {
		return e.JS, nil
	}
	nc, js, err := ConnectNATS(e.Cfg.NATSURL, "levqor-ingest-operator", e.Log, opts...)
	if err != nil {
		return nil, fmt.Errorf("the operator connection (LEVQOR_NATS_OPERATOR_*): %w", err)
	}
	e.operatorNC, e.operatorJS = nc, js
	return js, nil
}

// EnsureTopology creates the streams that are missing, retrying with
// backoff until NATS answers or ctx ends. It changes no existing stream
// (the services' NATS users may not: a change of retention can purge a
// stream) but says which differ from the configuration, for an operator
// to apply with `levqor streams apply`; dev mode, which owns its server,
// applies them itself.
func (e *Env) EnsureTopology(ctx context.Context) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	return backoff.RetryNotify(func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if e.applyStreams {
			return e.Cfg.Topology.EnsureStreams(cctx, e.JS)
		}
		differ, err := e.Cfg.Topology.CreateMissingStreams(cctx, e.JS)
		for _, d := range differ {
			e.Log.WithField("stream", d).Warn("a stream's settings differ from this process's configuration; " +
				"an operator applies them with `levqor streams apply` (the services may not change streams)")
		}
		return err
	}, b, func(err error, d time.Duration) {
		e.Log.WithError(err).WithField("retry_in", d.String()).Warn("cannot ensure streams yet")
	})
}

// Checks are the readiness checks of the process.
func (e *Env) Checks() []telemetry.Check {
	checks := []telemetry.Check{{Name: "nats", Fn: func(context.Context) error {
		if !e.NC.IsConnected() {
			return errors.New(strings.ToLower(e.NC.Status().String()))
		}
		return nil
	}}}
	if e.Store != nil {
		checks = append(checks, telemetry.Check{Name: "database", Fn: e.Store.Ping})
	}
	if e.ticks != nil {
		checks = append(checks, e.ticks.check())
	}
	return checks
}

// Ingest builds the ingest HTTP server. devOperatorToken, when not empty,
// is accepted as an operator besides operator API keys: dev mode passes
// its token, production passes "".
func (e *Env) Ingest(devOperatorToken string) (*ingest.Server, error) {
	cat, err := e.Catalog()
	if err != nil {
		return nil, err
	}
	th, err := ops.ThresholdsFromEnv(nil)
	if err != nil {
		return nil, err
	}
	o, err := e.Ops(th)
	if err != nil {
		return nil, err
	}
	log := e.Log.WithField("component", "ingest")
	bk, err := e.BusKey()
	if err != nil {
		return nil, err
	}
	pub := bus.NewPublisher(e.JS, e.Cfg.Topology, bus.WithBusKey(bk))
	authz, err := auth.New(e.Store, auth.Config{DevOperatorToken: devOperatorToken, Logger: log})
	if err != nil {
		return nil, err
	}
	wh, err := e.Webhooks()
	if err != nil {
		return nil, err
	}
	sealer, err := e.Sealer()
	if err != nil {
		return nil, err
	}
	proxies, err := notify.ParseNets(e.Cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_TRUSTED_PROXIES: %w", err)
	}
	// Customers browse and download their snapshots through the API,
	// which reads the blob store (read-only access suffices).
	blobs, err := e.blobStore()
	if err != nil {
		return nil, err
	}
	var browser *backups.Browser
	if blobs != nil && sealer != nil {
		browser = backups.NewBrowser(e.Store, blobs, sealer, e.Cfg.Topology)
	}
	a, err := api.New(api.Config{
		Browser:        browser,
		TrustedProxies: proxies,
		Sealer:         sealer,
		Store:          e.Store, Publisher: pub, NC: e.NC, Authorizer: authz, Logger: log,
		Rate: e.Cfg.APIRate, Burst: e.Cfg.APIBurst, MaxBodyBytes: e.Cfg.APIMaxBodyBytes, Catalog: cat, AuthFailures: e.Cfg.APIAuthFailures,
		Retention: e.retentionSettings(), Webhooks: wh,
	})
	if err != nil {
		return nil, err
	}
	ppl, err := people.New(people.Config{Store: e.Store, Logger: log})
	if err != nil {
		return nil, err
	}
	mailer, err := e.mailer()
	if err != nil {
		return nil, err
	}
	providers, err := console.ParseOIDCProviders(e.Cfg.OIDCProviders)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_OIDC_PROVIDERS: %w", err)
	}
	con := func(apiRoutes http.Handler) (http.Handler, error) {
		return console.New(console.Config{People: ppl, API: apiRoutes, Logger: log, PublicURL: e.Cfg.PublicURL, ClientAddr: a.ClientAddr,
			Store: e.Store, Mailer: mailer, OIDC: providers,
			// Dev mode serves plain http on the loopback interface, where a
			// Secure cookie would never be sent back.
			Insecure: devOperatorToken != ""})
	}
	return ingest.New(ingest.Config{
		Console:        con,
		Ops:            o,
		API:            a,
		WebhookSecrets: e.Cfg.WebhookSecrets,
		Tolerance:      e.Cfg.WebhookTolerance,
		MaxBodyBytes:   e.Cfg.MaxBodyBytes,
	}, pub, e.Store, log, e.Reg, e.Checks()...)
}

// Workers lists the workers a workers process can run, in start order.
var Workers = []string{billing.WorkerName, "housekeeping", accounts.WorkerName, backups.WorkerName, support.WorkerName, notify.WorkerName}

// RenamedWorkers maps the former names of workers to their names now.
// LEVQOR_WORKERS accepts a former name, with a warning, until the release
// after the one that renamed the worker.
var RenamedWorkers = map[string]string{
	"retention": backups.WorkerName,
}

// ResolveWorkers expands "all", replaces former names (RenamedWorkers),
// saying so in warnings, and rejects unknown names.
func ResolveWorkers(names []string) (out, warnings []string, err error) {
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		return append([]string(nil), Workers...), nil, nil
	}
	for _, n := range names {
		if now, ok := RenamedWorkers[n]; ok {
			warnings = append(warnings, fmt.Sprintf("LEVQOR_WORKERS: worker %q is now called %q; write %s (the old name is accepted until the next release)", n, now, now))
			n = now
		}
		if !slices.Contains(Workers, n) {
			return nil, nil, fmt.Errorf("LEVQOR_WORKERS: unknown worker %q (known: %s, or all)", n, strings.Join(Workers, ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, warnings, nil
}

// storeFailures adapts the store to the router's FailureRecorder.
type storeFailures struct{ s *store.Store }

func (f storeFailures) RecordFailure(ctx context.Context, x bus.Failure) error {
	return f.s.RecordFailure(ctx, store.Failure{
		Consumer: x.Consumer, MsgID: x.MsgID, Subject: x.Subject, Stream: x.Stream,
		StreamSeq: x.StreamSeq, Deliveries: x.Deliveries, AccountID: x.AccountID, Error: x.Error,
		DeadLettered: x.DeadLettered, At: x.At,
	})
}

// Router builds a router running the named workers.
func (e *Env) Router(names []string) (*bus.Router, error) {
	names, _, err := ResolveWorkers(names)
	if err != nil {
		return nil, err
	}
	if e.busMetrics == nil {
		e.busMetrics = bus.NewMetrics(e.registerer())
	}
	bk, err := e.BusKey()
	if err != nil {
		return nil, err
	}
	r, err := bus.NewRouter(e.JS, bus.RouterConfig{
		BusKey:          bk,
		Paused:          func(name string) bool { return e.paused(control.ConsumerKey(name)) },
		Topology:        e.Cfg.Topology,
		Concurrency:     e.Cfg.Concurrency,
		BatchSize:       e.Cfg.BatchSize,
		BatchWait:       e.Cfg.BatchWait,
		MaxDeliver:      e.Cfg.MaxDeliver,
		ShutdownTimeout: e.Cfg.ShutdownTimeout,
		Logger:          e.Log.WithField("component", "worker"),
		AckWait:         e.Cfg.AckWait,
		Metrics:         e.busMetrics,
		Failures:        storeFailures{e.Store},
	})
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		switch n {
		case billing.WorkerName:
			w, err := e.BillingWorker()
			if err != nil {
				return nil, err
			}
			w.Register(r)
		case "housekeeping":
			(&housekeeping.Worker{Store: e.Store, JS: e.JS, Topology: e.Cfg.Topology, Registerer: e.Reg, DLQAccountThreshold: e.Cfg.DLQAccountThreshold}).Register(r)
		case accounts.WorkerName:
			w, err := e.accountsWorker()
			if err != nil {
				return nil, err
			}
			w.Register(r)
		case backups.WorkerName:
			w, err := e.backupsWorker()
			if err != nil {
				return nil, err
			}
			w.Register(r)
		case support.WorkerName:
			w, err := e.supportWorker()
			if err != nil {
				return nil, err
			}
			w.Register(r)
		case notify.WorkerName:
			w, err := e.NotifyWorker()
			if err != nil {
				return nil, err
			}
			w.Register(r)
		}
	}
	if err := e.watchTicks(r); err != nil {
		return nil, err
	}
	return r, nil
}

// accountsWorker builds the accounts worker. Without a Stripe API key it
// has no Stripe client and fails the commands that need one, saying how to
// configure it.
func (e *Env) accountsWorker() (*accounts.Worker, error) {
	blobs, err := e.blobStore()
	if err != nil {
		return nil, err
	}
	w := &accounts.Worker{
		Store:   e.Store,
		Runtime: &command.Runtime{Store: e.Store, NC: e.NC, Prefix: e.Cfg.Topology.Prefix},
		Blobs:   blobs, ErasureCoolingOff: e.Cfg.ErasureCoolingOff, OffboardGrace: e.Cfg.OffboardGrace,
		ErasureRemindBefore: e.Cfg.ErasureRemindBefore, Topology: e.Cfg.Topology,
	}
	if e.Cfg.StripeAPIKey != "" {
		w.Stripe = stripeapi.New(stripeapi.Config{Key: e.Cfg.StripeAPIKey, BaseURL: e.Cfg.StripeAPIBase, Log: e.Log.WithField("component", "stripe")})
	}
	return w, nil
}

// BillingWorker builds the billing worker. Without a Stripe API key it
// still applies Stripe events and runs dunning; its commands answer 503
// saying how to configure Stripe, and reconciliation is skipped. Tools
// that run one of its jobs by hand (`levqor billing reconcile`) build it
// here too, so the worker is put together in one place.
func (e *Env) BillingWorker() (*billing.Worker, error) {
	cat, err := e.Catalog()
	if err != nil {
		return nil, err
	}
	if e.billingMetrics == nil {
		e.billingMetrics = billing.NewMetrics(e.registerer())
	}
	log := e.Log.WithField("component", "billing")
	w := &billing.Worker{
		Store:          e.Store,
		Catalog:        cat,
		Topology:       e.Cfg.Topology,
		Grace:          e.Cfg.DunningGrace,
		TrialReminders: e.Cfg.TrialReminders,
		Log:            log,
		Runtime:        &command.Runtime{Store: e.Store, NC: e.NC, Prefix: e.Cfg.Topology.Prefix},
		Metrics:        e.billingMetrics,
	}
	if e.Cfg.StripeAPIKey != "" {
		w.Stripe = stripeapi.New(stripeapi.Config{Key: e.Cfg.StripeAPIKey, BaseURL: e.Cfg.StripeAPIBase, Log: e.Log.WithField("component", "stripe")})
	}
	return w, nil
}

// supportWorker builds the support worker with the rules of
// LEVQOR_SUPPORT_RULES (the shipped rules when unset).
func (e *Env) supportWorker() (*support.Worker, error) {
	rules := e.rules
	if rules == nil {
		var err error
		if rules, err = triage.Load(e.Cfg.SupportRules); err != nil {
			return nil, err
		}
		e.rules = rules
	}
	cat, err := e.Catalog()
	if err != nil {
		return nil, err
	}
	if e.supportMetrics == nil {
		e.supportMetrics = support.NewMetrics(e.registerer())
	}
	return &support.Worker{
		Store:            e.Store,
		Rules:            rules,
		Catalog:          cat,
		Runtime:          &command.Runtime{Store: e.Store, NC: e.NC, Prefix: e.Cfg.Topology.Prefix},
		Topology:         e.Cfg.Topology,
		Metrics:          e.supportMetrics,
		AutoCloseAfter:   e.Cfg.SupportAutoCloseAfter,
		DFYFollowupAfter: e.Cfg.DFYFollowupAfter,
	}, nil
}

// Relay builds the outbox relay.
func (e *Env) Relay() *outbox.Relay {
	bk, _ := e.BusKey() // checked with the configuration (config.Check)
	r := &outbox.Relay{Store: e.Store, Publisher: bus.NewPublisher(e.JS, e.Cfg.Topology, bus.WithBusKey(bk)), Log: e.Log.WithField("component", "outbox")}
	r.Register(e.Reg)
	return r
}

// Scheduler builds the scheduler with the catalog and the deployment's
// overrides.
func (e *Env) Scheduler() (*scheduler.Scheduler, error) {
	jobs, warnings, err := scheduler.Override(scheduler.Catalog(), e.Cfg.Schedule)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		e.Log.Warn(w)
	}
	bk, err := e.BusKey()
	if err != nil {
		return nil, err
	}
	s, err := scheduler.New(e.JS, scheduler.Config{
		BusKey:        bk,
		Topology:      e.Cfg.Topology,
		Jobs:          jobs,
		CatchUpWindow: e.Cfg.CatchUpWindow,
		Logger:        e.Log.WithField("component", "scheduler"),
		Paused:        func(job string) bool { return e.paused(control.JobKey(job)) },
	})
	if err != nil {
		return nil, err
	}
	s.Register(e.Reg)
	return s, nil
}

// registerer is where the process's metrics go: nil, so that they stay
// unregistered, for a tool that builds a component without a registry (a
// nil *prometheus.Registry in an interface would not compare equal to nil).
func (e *Env) registerer() prometheus.Registerer {
	if e.Reg == nil {
		return nil
	}
	return e.Reg
}

// Sealer is LEVQOR_MASTER_KEYS, which seals the secrets commands carry;
// nil when unset (config requires it of ingest and the workers).
func (e *Env) Sealer() (*keys.Sealer, error) {
	if e.Cfg.MasterKeys == "" {
		return nil, nil
	}
	return keys.ParseMasterKeys(e.Cfg.MasterKeys)
}

// BusKey is LEVQOR_BUS_KEY, which proves Stripe events on the bus; nil
// when unset (config requires it of ingest and the workers).
func (e *Env) BusKey() (*keys.BusKey, error) {
	if e.Cfg.BusKey == "" {
		return nil, nil
	}
	return keys.ParseBusKey(e.Cfg.BusKey)
}

// Webhooks builds customer webhook delivery from LEVQOR_WEBHOOK_*: nil
// when no LEVQOR_WEBHOOK_SECRET_KEY is set (the endpoints are off).
func (e *Env) Webhooks() (*notify.Webhooks, error) {
	if e.Cfg.WebhookKey == "" {
		return nil, nil
	}
	key, err := notify.ParseWebhookKey(e.Cfg.WebhookKey)
	if err != nil {
		return nil, err
	}
	allow, err := notify.ParseNets(e.Cfg.WebhookAllowNets)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_WEBHOOK_ALLOW_NETS: %w", err)
	}
	return notify.NewWebhooks(notify.WebhookConfig{
		Key: key, Guard: notify.Guard{Allow: allow}, Timeout: e.Cfg.WebhookTimeout,
		DisableAfter: e.Cfg.WebhookDisableAfter, SecretOverlap: e.Cfg.WebhookSecretOverlap,
	})
}

// NotifyWorker builds the notify worker with the rules of
// LEVQOR_NOTIFY_RULES (the shipped rules when unset) and the mailer the
// configuration names: SMTP when LEVQOR_SMTP_HOST is set, else .eml files
// in LEVQOR_MAIL_DIR when that is, else none (notifications are recorded
// unsent, and RunWorkers says so at start).
func (e *Env) NotifyWorker() (*notify.Worker, error) {
	rules := e.notifyRules
	if rules == nil {
		var err error
		if rules, err = notify.Load(e.Cfg.NotifyRules); err != nil {
			return nil, err
		}
		e.notifyRules = rules
	}
	wh, err := e.Webhooks()
	if err != nil {
		return nil, err
	}
	w := &notify.Worker{
		Store: e.Store, Rules: rules, Topology: e.Cfg.Topology, PublicURL: e.Cfg.PublicURL, Chat: notify.NewChat(0), Webhooks: wh,
		Retry: e.Cfg.NotifyRetry, Retention: e.Cfg.NotificationRetention, DigestWindow: e.Cfg.NotifyDigestWindow,
		Runtime: &command.Runtime{Store: e.Store, NC: e.NC, Prefix: e.Cfg.Topology.Prefix},
	}
	if w.Mailer, err = e.mailer(); err != nil {
		return nil, err
	}
	return w, nil
}

// mailer is the mailer the configuration names: SMTP when
// LEVQOR_SMTP_HOST is set, else .eml files in LEVQOR_MAIL_DIR when that
// is, else nil.
func (e *Env) mailer() (notify.Sender, error) {
	switch {
	case e.Cfg.SMTP.Host != "":
		return notify.NewSMTP(e.Cfg.SMTP)
	case e.Cfg.MailDir != "":
		return notify.DirMailer{Dir: e.Cfg.MailDir, From: e.Cfg.SMTP.From}, nil
	}
	return nil, nil
}
