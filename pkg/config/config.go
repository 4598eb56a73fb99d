// Package config reads Levqor's configuration from the environment
// (LEVQOR_*, STRIPE_*), fills defaults in one place and validates it before
// anything starts, so that bad configuration fails at once with a message
// naming the variable.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/console"
	"github.com/levqor/levqor/pkg/housekeeping"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/support"
	"github.com/levqor/levqor/pkg/support/triage"
)

// Defaults. Dev mode works with no configuration at all.
const (
	DataDirDefault         = ".levqor"
	HTTPAddrDefault        = "127.0.0.1:8080"
	AdminAddrDefault       = "127.0.0.1:9090"
	DevNATSAddrDefault     = "127.0.0.1:4223"
	LogFormatDefault       = "text"
	LogLevelDefault        = "info"
	ShutdownTimeoutDefault = 15 * time.Second
	WorkersDefault         = "all"
	// StripeDevAPIKey is the key dev mode uses against STRIPE_API_BASE
	// (stripe-mock) when STRIPE_API_KEY is not set. stripe-mock accepts
	// any sk_test_ key of letters and digits.
	StripeDevAPIKey = "sk_test_levqordev"
)

// Config is every setting of every Levqor process. Each process validates
// the part it needs with ValidateFor.
type Config struct {
	// DataDir holds dev mode's NATS store, SQLite database and generated
	// secrets (LEVQOR_DATA_DIR).
	DataDir string
	// NATSURL is the NATS server to use in production (LEVQOR_NATS_URL).
	NATSURL string
	// The process's NATS credentials: a creds file, as nsc writes them
	// (LEVQOR_NATS_CREDS), or a user and password (LEVQOR_NATS_USER,
	// LEVQOR_NATS_PASSWORD); and TLS: the CA to trust (LEVQOR_NATS_TLS_CA)
	// and, for mutual TLS, a client certificate and key
	// (LEVQOR_NATS_TLS_CERT, LEVQOR_NATS_TLS_KEY).
	NATSCreds, NATSUser, NATSPassword  string
	NATSTLSCA, NATSTLSCert, NATSTLSKey string
	// Ingest's operator credentials, which its /admin API acts with on
	// NATS (replays, purges, pauses, ticks published by hand):
	// LEVQOR_NATS_OPERATOR_CREDS, or LEVQOR_NATS_OPERATOR_USER and
	// LEVQOR_NATS_OPERATOR_PASSWORD. Unset, it uses its own.
	NATSOperatorCreds, NATSOperatorUser, NATSOperatorPassword string
	// DatabaseURL is postgres://… in production, sqlite:<path> in dev
	// (LEVQOR_DATABASE_URL).
	DatabaseURL string
	// HTTPAddr is where ingest listens (LEVQOR_HTTP_ADDR).
	HTTPAddr string
	// AdminAddr is the health/metrics listener of workers and the scheduler
	// (LEVQOR_ADMIN_ADDR).
	AdminAddr string
	// DevNATSAddr is where dev mode's embedded NATS listens, so the `nats`
	// CLI can inspect it (LEVQOR_DEV_NATS_ADDR).
	DevNATSAddr string
	// DevNATSSyncAlways makes the embedded server fsync every write
	// (LEVQOR_DEV_NATS_SYNC_ALWAYS).
	DevNATSSyncAlways bool
	// Topology: subject prefix (LEVQOR_SUBJECT_PREFIX) and stream replicas
	// (LEVQOR_STREAM_REPLICAS).
	Topology bus.Topology
	// Workers is the subset of workers a workers process runs
	// (LEVQOR_WORKERS, comma-separated, or "all").
	Workers []string
	// Concurrency is messages handled at once per consumer, or batches
	// on a consumer that handles batches (LEVQOR_WORKER_CONCURRENCY).
	Concurrency int
	// BatchSize is the most messages a batch consumer (billing's Stripe
	// events) handles in one transaction; 1 turns batching off
	// (LEVQOR_BATCH_SIZE).
	BatchSize int
	// BatchWait is how long a batch that is not full waits for more
	// messages before it starts; 0 starts at once (LEVQOR_BATCH_WAIT).
	BatchWait time.Duration
	// MaxDeliver is deliveries before a message is dead-lettered
	// (LEVQOR_MAX_DELIVER).
	MaxDeliver int
	// AckWait is how long JetStream waits for a worker's ack before
	// redelivering to another (LEVQOR_ACK_WAIT).
	AckWait time.Duration
	// WebhookSecrets verify Stripe signatures; several during a rotation
	// (STRIPE_WEBHOOK_SECRET, comma-separated).
	WebhookSecrets []string
	// WebhookTolerance is the accepted age of a signature timestamp
	// (LEVQOR_WEBHOOK_TOLERANCE).
	WebhookTolerance time.Duration
	// AdminToken is dev mode's operator token (LEVQOR_ADMIN_TOKEN; dev
	// generates one when unset). Production processes ignore it: they
	// accept operator API keys only (`levqor apikey create --operator`).
	AdminToken string
	// MaxBodyBytes limits webhook bodies (LEVQOR_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// APIRate is the requests per second each API key may make on
	// average (LEVQOR_API_RATE), APIBurst how many at once
	// (LEVQOR_API_BURST): a token bucket per key.
	APIRate  float64
	APIBurst int
	// APIMaxBodyBytes limits product API request bodies
	// (LEVQOR_API_MAX_BODY_BYTES).
	APIMaxBodyBytes int64
	// StripeAPIKey is the secret key workers call the Stripe API with
	// (STRIPE_API_KEY, sk_… or rk_…). Required by workers that call Stripe
	// (accounts); dev mode falls back to StripeDevAPIKey when
	// StripeAPIBase is set.
	StripeAPIKey string
	// StripeAPIBase replaces https://api.stripe.com, e.g.
	// http://127.0.0.1:12111 for stripe-mock (STRIPE_API_BASE).
	StripeAPIBase string
	// LogFormat is text or json (LEVQOR_LOG_FORMAT); LogLevel a logrus
	// level (LEVQOR_LOG_LEVEL).
	LogFormat string
	LogLevel  string
	// ShutdownTimeout bounds a graceful stop (LEVQOR_SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// Schedule overrides the job catalog: "job=cron spec;job2=off"
	// (LEVQOR_SCHEDULE).
	Schedule string
	// CatchUpWindow is how far back the scheduler publishes missed slots
	// (LEVQOR_CATCHUP_WINDOW).
	CatchUpWindow time.Duration
	// BlobDir is where the backups worker keeps snapshot blobs
	// (LEVQOR_BLOB_DIR): required by a workers process that runs it; dev
	// mode defaults to <LEVQOR_DATA_DIR>/blobs.
	BlobDir string
	// SelfBackupKeep is how many self-backups of Levqor's database the
	// levqor.selfbackup job keeps (LEVQOR_SELFBACKUP_KEEP).
	SelfBackupKeep int
	// BlobS3 configures an S3-compatible blob store (LEVQOR_BLOB_S3_*);
	// when its endpoint is set the backups worker keeps its blobs there
	// instead of in BlobDir.
	BlobS3 BlobS3
	// SweepMaxShare is the largest share (0 to 1] of a source's snapshots
	// one retention sweep may send to the trash; beyond it the sweep stops
	// for that source and alerts operators (LEVQOR_SWEEP_MAX_SHARE).
	SweepMaxShare float64
	// TrashGrace is how long trashed snapshots stay restorable before
	// their blobs are purged (LEVQOR_TRASH_GRACE).
	TrashGrace time.Duration
	// Catalog is the product catalog file, YAML or JSON (LEVQOR_CATALOG);
	// "" uses the example shipped with Levqor (docs/catalog.md).
	Catalog string
	// DunningGrace is how long an account stays past due after a failed
	// payment before billing suspends it (LEVQOR_DUNNING_GRACE).
	DunningGrace time.Duration
	// SupportRules is the support rules file, YAML or JSON: triage,
	// routing and SLA targets (LEVQOR_SUPPORT_RULES); "" uses the rules
	// shipped with Levqor (docs/support.md).
	SupportRules string
	// SupportAutoCloseAfter is how long a resolved ticket waits for a reply
	// before support.autoclose closes it (LEVQOR_SUPPORT_AUTOCLOSE_AFTER).
	SupportAutoCloseAfter time.Duration
	// TrialReminders are how long before a trial ends its customer is
	// reminded (LEVQOR_TRIAL_REMINDERS, comma-separated durations); nil
	// takes billing.TrialRemindersDefault.
	TrialReminders []time.Duration
	// DFYFollowupAfter is how long a Done-For-You work item may stay open
	// with no change before dfy.followup chases it
	// (LEVQOR_DFY_FOLLOWUP_AFTER).
	DFYFollowupAfter time.Duration
	// SentryDSN, when set, sends error-level log entries and recovered
	// panics to that Sentry-compatible endpoint (SENTRY_DSN), tagged with
	// SentryEnvironment (SENTRY_ENVIRONMENT).
	SentryDSN, SentryEnvironment string
	// NotifyRules is the notify rules file, YAML or JSON: who hears about
	// which event (LEVQOR_NOTIFY_RULES); "" uses the rules shipped with
	// Levqor (docs/notifications.md).
	NotifyRules string
	// PublicURL is where people reach Levqor, the base of the links in
	// notifications (LEVQOR_PUBLIC_URL); dev mode defaults to its ingest
	// URL.
	PublicURL string
	// OIDCProviders is LEVQOR_OIDC_PROVIDERS: the identity providers the
	// console offers for sign-in, a JSON array (console.ParseOIDCProviders).
	OIDCProviders string
	// SMTP is the mail server notifications go through (LEVQOR_SMTP_*,
	// LEVQOR_MAIL_FROM); unset unless LEVQOR_SMTP_HOST is.
	SMTP notify.SMTPConfig
	// MasterKeys seal the secrets commands carry (LEVQOR_MASTER_KEYS,
	// comma-separated; the first seals, all open; ingest and workers).
	// Dev mode generates one.
	MasterKeys string
	// BusKey proves, on each Stripe event ingest puts on the bus, that
	// ingest verified its signature; the billing worker refuses events
	// without the proof (LEVQOR_BUS_KEY: 32 bytes or more, hex or base64;
	// ingest and workers, the same). Dev mode generates one.
	BusKey string
	// WebhookKey derives the signing secrets of customer webhook
	// endpoints (LEVQOR_WEBHOOK_SECRET_KEY: 32 bytes or more, hex or
	// base64); unset turns the endpoints off. Dev mode generates one and
	// keeps it with its other secrets.
	WebhookKey string
	// TrustedProxies are the proxies in front of ingest whose
	// X-Forwarded-For names the client for the per-address limits
	// (LEVQOR_TRUSTED_PROXIES, comma-separated CIDRs or addresses).
	TrustedProxies []string
	// WebhookAllowNets are the networks webhooks may call although they
	// are loopback, private or link-local (LEVQOR_WEBHOOK_ALLOW_NETS,
	// comma-separated CIDRs or addresses); dev mode allows loopback.
	WebhookAllowNets []string
	// WebhookTimeout bounds one delivery (LEVQOR_WEBHOOK_TIMEOUT);
	// WebhookDisableAfter is how long an endpoint may keep failing before
	// it is disabled (LEVQOR_WEBHOOK_DISABLE_AFTER); WebhookSecretOverlap
	// how long a rotated secret still signs (LEVQOR_WEBHOOK_SECRET_OVERLAP).
	WebhookTimeout, WebhookDisableAfter, WebhookSecretOverlap time.Duration
	// APIAuthFailures is how many failed authentications one client
	// address may make before ingest answers it 429 (LEVQOR_API_AUTH_FAILURES).
	APIAuthFailures int
	// NotificationRetention is how long notifications and the webhook
	// delivery log are kept (LEVQOR_NOTIFICATION_RETENTION).
	NotificationRetention time.Duration
	// NotifyRetry is how long a failed notification delivery waits before
	// each next attempt (LEVQOR_NOTIFY_RETRY, comma-separated durations);
	// nil takes notify.RetrySchedule. Dev mode waits 1s, 2s, 4s, 8s, so
	// that a delivery that keeps failing reaches the DLQ in seconds.
	NotifyRetry []time.Duration
	// NotifyDigestWindow gathers a burst of one event to one recipient
	// into a digest (LEVQOR_NOTIFY_DIGEST_WINDOW); 0 sends each on its
	// own.
	NotifyDigestWindow time.Duration
	// MailDir, when set and SMTP is not, is where notifications are
	// written as .eml files instead of sent (LEVQOR_MAIL_DIR); dev mode
	// defaults to <LEVQOR_DATA_DIR>/mail.
	MailDir string
	// BackupPaths are the absolute directories directory sources and
	// restores may use (LEVQOR_BACKUP_PATHS, comma-separated); unset
	// refuses them, except in dev mode, which allows the working directory
	// and the OS temporary directory.
	BackupPaths []string
	// BackupMaxRuns bounds the backups one worker process streams at once
	// (LEVQOR_BACKUP_MAX_RUNS); BackupMaxRunsPerAccount the runs of one
	// account across all workers (LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT).
	BackupMaxRuns           int
	BackupMaxRunsPerAccount int
	// BackupTimeout bounds one backup run, restore or verification
	// (LEVQOR_BACKUP_TIMEOUT).
	BackupTimeout time.Duration
	// ErasureCoolingOff is how long a requested erasure waits, cancellable
	// (LEVQOR_ERASURE_COOLING_OFF); OffboardGrace how long after a
	// cancellation offboarding erases the account (LEVQOR_OFFBOARD_GRACE).
	ErasureCoolingOff, OffboardGrace time.Duration
	// ErasureRemindBefore is how long before a requested erasure its owner
	// is reminded (LEVQOR_ERASURE_REMIND_BEFORE).
	ErasureRemindBefore time.Duration
	// DrillEvery is how often each entitled source is restore-drilled
	// (LEVQOR_DRILL_EVERY); DrillPostgresURL the server where drills of
	// postgres sources create their scratch databases
	// (LEVQOR_DRILL_POSTGRES_URL; unset skips them, saying so).
	DrillEvery       time.Duration
	DrillPostgresURL string
	// BlobGCAge is how old a blob no snapshot holds, or an abandoned
	// upload, must be before blob.gc removes it (LEVQOR_BLOB_GC_AGE); it
	// must exceed BackupTimeout.
	BlobGCAge time.Duration
	// BlobLockDays (LEVQOR_BLOB_LOCK_DAYS) locks every pack of the backup
	// repositories for that many days from when it is written, extended
	// while a kept snapshot uses it (repo.Repo.LockWindow); 0 locks
	// nothing. It defaults to BlobLockDaysDefault when
	// LEVQOR_BLOB_S3_OBJECT_LOCK is set, and needs it with the S3 store.
	BlobLockDays int
	// BackupBusyWait is how long one delivery of a run or restore waits in
	// process for a free slot under those limits before it is redelivered
	// later (LEVQOR_BACKUP_BUSY_WAIT).
	BackupBusyWait time.Duration
	// VerifySample is how many snapshots each backup.verify tick re-reads
	// (LEVQOR_VERIFY_SAMPLE).
	VerifySample int
	// OverdueGrace is how late past its schedule a source's last good
	// snapshot may be before backup.overdue alerts (LEVQOR_OVERDUE_GRACE).
	OverdueGrace time.Duration
	// RunReapAfter is how long a run may show no sign of life before
	// backup.reap_stale_runs fails it (LEVQOR_RUN_REAP_AFTER).
	RunReapAfter time.Duration
	// DLQAccountThreshold is how many of one account's messages a consumer
	// must dead-letter between two watches before the watch raises
	// ops.dlq_growing for the account (LEVQOR_DLQ_ACCOUNT_THRESHOLD).
	DLQAccountThreshold int
}

// BlobLockDaysDefault is LEVQOR_BLOB_LOCK_DAYS when
// LEVQOR_BLOB_S3_OBJECT_LOCK is set and it is not.
const BlobLockDaysDefault = 30

// BlobLockWindow is how long packs are locked (BlobLockDays).
func (c Config) BlobLockWindow() time.Duration { return time.Duration(c.BlobLockDays) * 24 * time.Hour }

// BlobS3PartSizeMiBDefault is the default multipart part size of the S3
// blob store, in MiB: each upload in flight holds one part in memory.
const BlobS3PartSizeMiBDefault = blob.S3PartSizeDefault >> 20

// BlobS3 is the S3-compatible blob store's configuration. Its String
// method leaves the secret key out.
type BlobS3 struct {
	// Endpoint is host[:port] or http(s)://host[:port]
	// (LEVQOR_BLOB_S3_ENDPOINT); setting it selects the S3 store.
	Endpoint string
	// Bucket holds the blobs and must exist (LEVQOR_BLOB_S3_BUCKET).
	Bucket string
	// Region is the bucket's region; "" asks the endpoint
	// (LEVQOR_BLOB_S3_REGION).
	Region string
	// Prefix is put before every blob key, so a bucket can be shared
	// (LEVQOR_BLOB_S3_PREFIX).
	Prefix string
	// AccessKey and SecretKey sign requests (LEVQOR_BLOB_S3_ACCESS_KEY,
	// LEVQOR_BLOB_S3_SECRET_KEY; AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY when those are unset).
	AccessKey string
	SecretKey string
	// Insecure talks plain HTTP to a host[:port] endpoint
	// (LEVQOR_BLOB_S3_INSECURE).
	Insecure bool
	// PartSizeMiB is the multipart part size (LEVQOR_BLOB_S3_PART_SIZE_MIB):
	// the memory one upload holds, and 1/10000 of the largest blob.
	PartSizeMiB int
	// ObjectLock (LEVQOR_BLOB_S3_OBJECT_LOCK), governance or compliance,
	// puts the backup repositories' packs under S3 Object Lock retention;
	// the bucket must have Object Lock enabled. "" leaves them unlocked.
	ObjectLock string
}

// Enabled tells whether the S3 store is selected.
func (b BlobS3) Enabled() bool { return b.Endpoint != "" }

// StoreConfig is the blob store's view of the configuration.
func (b BlobS3) StoreConfig() blob.S3Config {
	return blob.S3Config{
		Endpoint:  b.Endpoint,
		Insecure:  b.Insecure,
		Bucket:    b.Bucket,
		Region:    b.Region,
		Prefix:    b.Prefix,
		AccessKey: b.AccessKey,
		SecretKey: b.SecretKey,
		PartSize:  int64(b.PartSizeMiB) << 20,
		LockMode:  b.ObjectLock,
	}
}

// String describes the configuration without the secret key.
func (b BlobS3) String() string { return b.StoreConfig().String() }

// GoString is String, so %#v cannot leak the secret key either.
func (b BlobS3) GoString() string { return b.String() }

// validate checks the S3 settings, naming the variable at fault and never
// repeating a key.
func (b BlobS3) validate() []error {
	var errs []error
	bad := func(variable, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", variable, fmt.Sprintf(format, args...)))
	}
	if !b.Enabled() {
		for _, v := range []struct {
			variable string
			set      bool
		}{
			{"LEVQOR_BLOB_S3_BUCKET", b.Bucket != ""},
			{"LEVQOR_BLOB_S3_REGION", b.Region != ""},
			{"LEVQOR_BLOB_S3_PREFIX", b.Prefix != ""},
			{"LEVQOR_BLOB_S3_INSECURE", b.Insecure},
		} {
			if v.set {
				bad(v.variable, "set, but LEVQOR_BLOB_S3_ENDPOINT is not: set the endpoint to keep blobs in S3 (without it they go to LEVQOR_BLOB_DIR)")
			}
		}
		return errs
	}
	insecure := b.Insecure
	if b.Insecure && strings.HasPrefix(strings.ToLower(b.Endpoint), "https://") {
		bad("LEVQOR_BLOB_S3_INSECURE", "true, but LEVQOR_BLOB_S3_ENDPOINT is an https:// URL: drop one of them")
		insecure = false
	}
	if _, _, err := blob.ParseS3Endpoint(b.Endpoint, insecure); err != nil {
		bad("LEVQOR_BLOB_S3_ENDPOINT", "%v (e.g. s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000)", err)
	}
	if b.Bucket == "" {
		bad("LEVQOR_BLOB_S3_BUCKET", "required with LEVQOR_BLOB_S3_ENDPOINT: the bucket that keeps the snapshot blobs")
	} else if err := blob.ValidateBucketName(b.Bucket); err != nil {
		bad("LEVQOR_BLOB_S3_BUCKET", "%v", err)
	}
	if err := blob.ValidatePrefix(b.Prefix); err != nil {
		bad("LEVQOR_BLOB_S3_PREFIX", "%v", err)
	}
	if b.AccessKey == "" {
		bad("LEVQOR_BLOB_S3_ACCESS_KEY", "required with LEVQOR_BLOB_S3_ENDPOINT (or AWS_ACCESS_KEY_ID)")
	}
	if b.SecretKey == "" {
		bad("LEVQOR_BLOB_S3_SECRET_KEY", "required with LEVQOR_BLOB_S3_ENDPOINT (or AWS_SECRET_ACCESS_KEY)")
	}
	if size := int64(b.PartSizeMiB) << 20; size < blob.S3MinPartSize || size > blob.S3MaxPartSize {
		bad("LEVQOR_BLOB_S3_PART_SIZE_MIB", "%d: want %d to %d", b.PartSizeMiB, blob.S3MinPartSize>>20, blob.S3MaxPartSize>>20)
	}
	if b.ObjectLock != "" && b.ObjectLock != "governance" && b.ObjectLock != "compliance" {
		bad("LEVQOR_BLOB_S3_OBJECT_LOCK", "%q: want governance or compliance (or unset)", b.ObjectLock)
	}
	return errs
}

// Role names a process, for ValidateFor.
type Role string

// Process roles.
const (
	RoleIngest    Role = "ingest"
	RoleWorkers   Role = "workers"
	RoleScheduler Role = "scheduler"
	RoleDev       Role = "dev"
	RoleMigrate   Role = "migrate"
)

// FromEnv reads the configuration with getenv (os.Getenv when nil) and
// fills in defaults. Values that do not parse are errors naming the
// variable.
func FromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := parser{getenv: getenv}
	c := Config{
		DataDir:              p.str("LEVQOR_DATA_DIR", DataDirDefault),
		NATSURL:              p.str("LEVQOR_NATS_URL", ""),
		NATSCreds:            p.str("LEVQOR_NATS_CREDS", ""),
		NATSUser:             p.str("LEVQOR_NATS_USER", ""),
		NATSPassword:         p.str("LEVQOR_NATS_PASSWORD", ""),
		NATSTLSCA:            p.str("LEVQOR_NATS_TLS_CA", ""),
		NATSTLSCert:          p.str("LEVQOR_NATS_TLS_CERT", ""),
		NATSTLSKey:           p.str("LEVQOR_NATS_TLS_KEY", ""),
		NATSOperatorCreds:    p.str("LEVQOR_NATS_OPERATOR_CREDS", ""),
		NATSOperatorUser:     p.str("LEVQOR_NATS_OPERATOR_USER", ""),
		NATSOperatorPassword: p.str("LEVQOR_NATS_OPERATOR_PASSWORD", ""),
		DatabaseURL:          p.str("LEVQOR_DATABASE_URL", ""),
		HTTPAddr:             p.str("LEVQOR_HTTP_ADDR", HTTPAddrDefault),
		AdminAddr:            p.str("LEVQOR_ADMIN_ADDR", AdminAddrDefault),
		DevNATSAddr:          p.str("LEVQOR_DEV_NATS_ADDR", DevNATSAddrDefault),
		DevNATSSyncAlways:    p.boolean("LEVQOR_DEV_NATS_SYNC_ALWAYS"),
		Topology: bus.Topology{
			Prefix:   p.str("LEVQOR_SUBJECT_PREFIX", bus.PrefixDefault),
			Replicas: p.integer("LEVQOR_STREAM_REPLICAS", bus.ReplicasDefault),
		}.WithDefaults(),
		Workers:               p.list("LEVQOR_WORKERS", WorkersDefault),
		Concurrency:           p.integer("LEVQOR_WORKER_CONCURRENCY", bus.ConcurrencyDefault),
		MaxDeliver:            p.integer("LEVQOR_MAX_DELIVER", bus.MaxDeliverDefault),
		AckWait:               p.duration("LEVQOR_ACK_WAIT", bus.AckWaitDefault),
		BatchSize:             p.integer("LEVQOR_BATCH_SIZE", bus.BatchSizeDefault),
		BatchWait:             p.duration("LEVQOR_BATCH_WAIT", bus.BatchWaitDefault),
		WebhookSecrets:        p.list("STRIPE_WEBHOOK_SECRET", ""),
		WebhookTolerance:      p.duration("LEVQOR_WEBHOOK_TOLERANCE", ingest.ToleranceDefault),
		AdminToken:            p.str("LEVQOR_ADMIN_TOKEN", ""),
		MaxBodyBytes:          int64(p.integer("LEVQOR_MAX_BODY_BYTES", ingest.MaxBodyBytesDefault)),
		APIRate:               p.float("LEVQOR_API_RATE", api.RateDefault),
		APIBurst:              p.integer("LEVQOR_API_BURST", api.BurstDefault),
		APIMaxBodyBytes:       int64(p.integer("LEVQOR_API_MAX_BODY_BYTES", api.MaxBodyBytesDefault)),
		StripeAPIKey:          p.str("STRIPE_API_KEY", ""),
		StripeAPIBase:         p.str("STRIPE_API_BASE", ""),
		LogFormat:             p.str("LEVQOR_LOG_FORMAT", LogFormatDefault),
		LogLevel:              p.str("LEVQOR_LOG_LEVEL", LogLevelDefault),
		ShutdownTimeout:       p.duration("LEVQOR_SHUTDOWN_TIMEOUT", ShutdownTimeoutDefault),
		Schedule:              p.str("LEVQOR_SCHEDULE", ""),
		CatchUpWindow:         p.duration("LEVQOR_CATCHUP_WINDOW", scheduler.CatchUpWindowDefault),
		BlobDir:               p.str("LEVQOR_BLOB_DIR", ""),
		SelfBackupKeep:        p.integer("LEVQOR_SELFBACKUP_KEEP", backups.SelfBackupKeepDefault),
		SweepMaxShare:         p.float("LEVQOR_SWEEP_MAX_SHARE", backups.MaxShareDefault),
		TrashGrace:            p.duration("LEVQOR_TRASH_GRACE", backups.TrashGraceDefault),
		Catalog:               p.str("LEVQOR_CATALOG", ""),
		DunningGrace:          p.duration("LEVQOR_DUNNING_GRACE", billing.GraceDefault),
		SupportRules:          p.str(triage.EnvVar, ""),
		SupportAutoCloseAfter: p.duration("LEVQOR_SUPPORT_AUTOCLOSE_AFTER", support.AutoCloseAfterDefault),
		DFYFollowupAfter:      p.duration("LEVQOR_DFY_FOLLOWUP_AFTER", support.DFYFollowupAfterDefault),
		TrialReminders:        p.durations("LEVQOR_TRIAL_REMINDERS"),
		NotifyRules:           p.str("LEVQOR_NOTIFY_RULES", ""),
		SentryDSN:             p.str("SENTRY_DSN", ""),
		SentryEnvironment:     p.str("SENTRY_ENVIRONMENT", ""),
		PublicURL:             p.str("LEVQOR_PUBLIC_URL", ""),
		OIDCProviders:         p.str("LEVQOR_OIDC_PROVIDERS", ""),
		MailDir:               p.str("LEVQOR_MAIL_DIR", ""),
		WebhookKey:            p.str("LEVQOR_WEBHOOK_SECRET_KEY", ""),
		BusKey:                p.str("LEVQOR_BUS_KEY", ""),
		MasterKeys:            p.str("LEVQOR_MASTER_KEYS", ""),
		NotifyRetry:           p.durations("LEVQOR_NOTIFY_RETRY"),
		NotifyDigestWindow:    p.duration("LEVQOR_NOTIFY_DIGEST_WINDOW", notify.DigestWindowDefault),
		APIAuthFailures:       p.integer("LEVQOR_API_AUTH_FAILURES", api.AuthFailureBurst),
		NotificationRetention: p.duration("LEVQOR_NOTIFICATION_RETENTION", notify.RetentionDefault),
		WebhookAllowNets:      p.list("LEVQOR_WEBHOOK_ALLOW_NETS", ""),
		TrustedProxies:        p.list("LEVQOR_TRUSTED_PROXIES", ""),
		WebhookTimeout:        p.duration("LEVQOR_WEBHOOK_TIMEOUT", notify.WebhookTimeoutDefault),
		WebhookDisableAfter:   p.duration("LEVQOR_WEBHOOK_DISABLE_AFTER", notify.WebhookDisableAfterDefault),
		WebhookSecretOverlap:  p.duration("LEVQOR_WEBHOOK_SECRET_OVERLAP", notify.WebhookSecretOverlapDefault),
		BackupPaths:           p.list("LEVQOR_BACKUP_PATHS", ""),
		BackupMaxRuns:         p.integer("LEVQOR_BACKUP_MAX_RUNS", backups.MaxRunsDefault),
		BackupTimeout:         p.duration("LEVQOR_BACKUP_TIMEOUT", backups.RunTimeoutDefault),
		BlobGCAge:             p.duration("LEVQOR_BLOB_GC_AGE", backups.GCAgeDefault),
		BlobLockDays:          p.integer("LEVQOR_BLOB_LOCK_DAYS", 0),
		DrillEvery:            p.duration("LEVQOR_DRILL_EVERY", backups.DrillEveryDefault),
		ErasureCoolingOff:     p.duration("LEVQOR_ERASURE_COOLING_OFF", accounts.ErasureCoolingOffDefault),
		OffboardGrace:         p.duration("LEVQOR_OFFBOARD_GRACE", accounts.OffboardGraceDefault),
		ErasureRemindBefore:   p.duration("LEVQOR_ERASURE_REMIND_BEFORE", accounts.ErasureRemindBeforeDefault),
		DrillPostgresURL:      p.str("LEVQOR_DRILL_POSTGRES_URL", ""),
		VerifySample:          p.integer("LEVQOR_VERIFY_SAMPLE", backups.VerifySampleDefault),
		OverdueGrace:          p.duration("LEVQOR_OVERDUE_GRACE", backups.OverdueGraceDefault),
		RunReapAfter:          p.duration("LEVQOR_RUN_REAP_AFTER", backups.RunReapAfterDefault),
	}
	c.BackupMaxRunsPerAccount = p.integer("LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT", backups.MaxRunsPerAccountDefault)
	c.BackupBusyWait = p.duration("LEVQOR_BACKUP_BUSY_WAIT", backups.BusyWaitDefault)
	c.DLQAccountThreshold = p.integer("LEVQOR_DLQ_ACCOUNT_THRESHOLD", housekeeping.DLQAccountThresholdDefault)
	c.SMTP = notify.SMTPConfig{
		Host:     p.str("LEVQOR_SMTP_HOST", ""),
		Port:     p.integer("LEVQOR_SMTP_PORT", notify.SMTPPortDefault),
		TLS:      p.str("LEVQOR_SMTP_TLS", notify.TLSStartTLS),
		Username: p.str("LEVQOR_SMTP_USERNAME", ""),
		Password: p.str("LEVQOR_SMTP_PASSWORD", ""),
		From:     p.str("LEVQOR_MAIL_FROM", notify.FromDefault),
	}
	c.BlobS3 = BlobS3{
		Endpoint:    p.str("LEVQOR_BLOB_S3_ENDPOINT", ""),
		Bucket:      p.str("LEVQOR_BLOB_S3_BUCKET", ""),
		Region:      p.str("LEVQOR_BLOB_S3_REGION", ""),
		Prefix:      p.str("LEVQOR_BLOB_S3_PREFIX", ""),
		AccessKey:   p.str("LEVQOR_BLOB_S3_ACCESS_KEY", p.str("AWS_ACCESS_KEY_ID", "")),
		SecretKey:   p.str("LEVQOR_BLOB_S3_SECRET_KEY", p.str("AWS_SECRET_ACCESS_KEY", "")),
		Insecure:    p.boolean("LEVQOR_BLOB_S3_INSECURE"),
		PartSizeMiB: p.integer("LEVQOR_BLOB_S3_PART_SIZE_MIB", BlobS3PartSizeMiBDefault),
		ObjectLock:  p.str("LEVQOR_BLOB_S3_OBJECT_LOCK", ""),
	}
	if p.str("LEVQOR_BLOB_LOCK_DAYS", "") == "" && c.BlobS3.ObjectLock != "" {
		c.BlobLockDays = BlobLockDaysDefault
	}
	return c, errors.Join(p.errs...)
}

// ValidateFor checks what role needs, naming the variable at fault.
func (c Config) ValidateFor(role Role) error {
	var errs []error
	bad := func(variable, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", variable, fmt.Sprintf(format, args...)))
	}
	if err := c.Topology.Validate(); err != nil {
		bad("LEVQOR_SUBJECT_PREFIX/LEVQOR_STREAM_REPLICAS", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LEVQOR_LOG_FORMAT", "%q: want text or json", c.LogFormat)
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		bad("LEVQOR_WORKER_CONCURRENCY", "%d: want 1 to 1024", c.Concurrency)
	}
	if c.BatchSize < 1 || c.BatchSize > bus.BatchSizeMax {
		bad("LEVQOR_BATCH_SIZE", "%d: want 1 (no batching) to %d", c.BatchSize, bus.BatchSizeMax)
	}
	if c.BatchWait < 0 || c.BatchWait > time.Minute {
		bad("LEVQOR_BATCH_WAIT", "%s: want 0 to 1m (e.g. 20ms)", c.BatchWait)
	}
	if c.MaxDeliver < 1 || c.MaxDeliver > 100 {
		bad("LEVQOR_MAX_DELIVER", "%d: want 1 to 100", c.MaxDeliver)
	}
	if c.MaxBodyBytes < 1024 {
		bad("LEVQOR_MAX_BODY_BYTES", "%d: want at least 1024", c.MaxBodyBytes)
	}
	if c.ShutdownTimeout <= 0 {
		bad("LEVQOR_SHUTDOWN_TIMEOUT", "must be positive")
	}
	if c.AckWait < time.Second/10 {
		bad("LEVQOR_ACK_WAIT", "want at least 100ms")
	}
	if c.CatchUpWindow < 0 {
		bad("LEVQOR_CATCHUP_WINDOW", "must not be negative")
	}
	if c.SweepMaxShare <= 0 || c.SweepMaxShare > 1 {
		bad("LEVQOR_SWEEP_MAX_SHARE", "%g: want a share more than 0 and at most 1 (0.5 lets one sweep delete half a source's snapshots)", c.SweepMaxShare)
	}
	if c.TrashGrace <= 0 {
		bad("LEVQOR_TRASH_GRACE", "must be positive (e.g. 168h for a week)")
	}
	if c.SMTP.Host != "" {
		if err := c.SMTP.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("LEVQOR_PUBLIC_URL", "%q: want an http(s) URL such as https://levqor.example.com", c.PublicURL)
		}
	}
	if _, err := console.ParseOIDCProviders(c.OIDCProviders); err != nil {
		bad("LEVQOR_OIDC_PROVIDERS", "%v", err)
	}
	if c.NotifyDigestWindow < 0 || c.NotifyDigestWindow > 24*time.Hour {
		bad("LEVQOR_NOTIFY_DIGEST_WINDOW", "%s: want 0 (no digests) to 24h", c.NotifyDigestWindow)
	}
	if c.NotificationRetention < 24*time.Hour {
		bad("LEVQOR_NOTIFICATION_RETENTION", "%s: want at least 24h (e.g. 2160h for 90 days)", c.NotificationRetention)
	}
	if c.WebhookKey != "" {
		if _, err := notify.ParseWebhookKey(c.WebhookKey); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := notify.ParseNets(c.WebhookAllowNets); err != nil {
		bad("LEVQOR_WEBHOOK_ALLOW_NETS", "%v", err)
	}
	if _, err := notify.ParseNets(c.TrustedProxies); err != nil {
		bad("LEVQOR_TRUSTED_PROXIES", "%v", err)
	}
	if c.WebhookTimeout <= 0 || c.WebhookTimeout > 2*time.Minute {
		bad("LEVQOR_WEBHOOK_TIMEOUT", "want more than 0 and at most 2m")
	}
	if c.WebhookDisableAfter <= 0 {
		bad("LEVQOR_WEBHOOK_DISABLE_AFTER", "must be positive (e.g. 120h)")
	}
	if c.WebhookSecretOverlap <= 0 {
		bad("LEVQOR_WEBHOOK_SECRET_OVERLAP", "must be positive (e.g. 24h)")
	}
	if c.APIRate <= 0 || c.APIRate > 100000 {
		bad("LEVQOR_API_RATE", "%g: want requests per second, more than 0", c.APIRate)
	}
	if c.APIAuthFailures < 1 {
		bad("LEVQOR_API_AUTH_FAILURES", "%d: want at least 1", c.APIAuthFailures)
	}
	if c.APIBurst < 1 || c.APIBurst > 100000 {
		bad("LEVQOR_API_BURST", "%d: want at least 1", c.APIBurst)
	}
	if c.APIMaxBodyBytes < 1024 {
		bad("LEVQOR_API_MAX_BODY_BYTES", "%d: want at least 1024", c.APIMaxBodyBytes)
	}
	if c.StripeAPIKey != "" && !strings.HasPrefix(c.StripeAPIKey, "sk_") && !strings.HasPrefix(c.StripeAPIKey, "rk_") {
		// Never echo the value: it may be a secret pasted into the wrong
		// variable.
		bad("STRIPE_API_KEY", "want a secret or restricted key (sk_… or rk_…), not a publishable key or another secret")
	}
	if c.StripeAPIBase != "" {
		if u, err := url.Parse(c.StripeAPIBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("STRIPE_API_BASE", "%q: want http(s)://host[:port], e.g. http://127.0.0.1:12111 for stripe-mock", c.StripeAPIBase)
		}
	}
	if c.DunningGrace <= 0 {
		bad("LEVQOR_DUNNING_GRACE", "must be positive (e.g. 168h for a week)")
	}
	for _, p := range c.BackupPaths {
		if !filepath.IsAbs(p) {
			bad("LEVQOR_BACKUP_PATHS", "%q: want absolute directories, comma-separated", p)
		}
	}
	if c.BackupMaxRuns < 1 || c.BackupMaxRuns > 1024 {
		bad("LEVQOR_BACKUP_MAX_RUNS", "%d: want 1 to 1024", c.BackupMaxRuns)
	}
	if c.BackupMaxRunsPerAccount < 1 || c.BackupMaxRunsPerAccount > 1024 {
		bad("LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT", "%d: want 1 to 1024", c.BackupMaxRunsPerAccount)
	}
	if c.BackupTimeout < time.Minute {
		bad("LEVQOR_BACKUP_TIMEOUT", "want at least 1m (e.g. 12h)")
	}
	if c.BackupBusyWait < time.Second || c.BackupBusyWait >= c.BackupTimeout {
		bad("LEVQOR_BACKUP_BUSY_WAIT", "%s: want at least 1s and less than LEVQOR_BACKUP_TIMEOUT (%s), e.g. 15m", c.BackupBusyWait, c.BackupTimeout)
	}
	if c.VerifySample < 1 || c.VerifySample > 10000 {
		bad("LEVQOR_VERIFY_SAMPLE", "%d: want 1 to 10000 snapshots per tick", c.VerifySample)
	}
	if c.OverdueGrace < 0 {
		bad("LEVQOR_OVERDUE_GRACE", "must not be negative (e.g. 1h)")
	}
	if c.DFYFollowupAfter < time.Hour {
		bad("LEVQOR_DFY_FOLLOWUP_AFTER", "%s: want at least 1h (e.g. 72h)", c.DFYFollowupAfter)
	}
	if c.SupportAutoCloseAfter < time.Hour {
		bad("LEVQOR_SUPPORT_AUTOCLOSE_AFTER", "%s: want at least 1h (e.g. 168h for a week)", c.SupportAutoCloseAfter)
	}
	if c.ErasureCoolingOff < time.Hour {
		bad("LEVQOR_ERASURE_COOLING_OFF", "%s: want at least 1h (e.g. 168h): a requested erasure must be cancellable", c.ErasureCoolingOff)
	}
	if c.ErasureRemindBefore <= 0 || c.ErasureRemindBefore >= c.ErasureCoolingOff {
		bad("LEVQOR_ERASURE_REMIND_BEFORE", "%s: want more than 0 and less than LEVQOR_ERASURE_COOLING_OFF (%s)", c.ErasureRemindBefore, c.ErasureCoolingOff)
	}
	if c.OffboardGrace < 24*time.Hour {
		bad("LEVQOR_OFFBOARD_GRACE", "%s: want at least 24h (e.g. 720h)", c.OffboardGrace)
	}
	if c.DrillEvery < time.Hour {
		bad("LEVQOR_DRILL_EVERY", "%s: want at least 1h (e.g. 720h for monthly)", c.DrillEvery)
	}
	if c.DrillPostgresURL != "" {
		if u, err := url.Parse(c.DrillPostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("LEVQOR_DRILL_POSTGRES_URL", "want a postgres:// URL of a server where Levqor may create and drop databases")
		}
	}
	switch {
	case c.BlobLockDays < 0 || c.BlobLockDays > 36500:
		bad("LEVQOR_BLOB_LOCK_DAYS", "%d: want 0 (no locks) to 36500 days", c.BlobLockDays)
	case c.BlobLockDays > 0 && c.BlobS3.Enabled() && c.BlobS3.ObjectLock == "":
		bad("LEVQOR_BLOB_LOCK_DAYS", "%d: the S3 store locks packs with Object Lock: set LEVQOR_BLOB_S3_OBJECT_LOCK (governance or compliance) on a bucket made with Object Lock", c.BlobLockDays)
	}
	if c.BlobGCAge <= c.BackupTimeout {
		bad("LEVQOR_BLOB_GC_AGE", "%s: want more than LEVQOR_BACKUP_TIMEOUT (%s): an upload still running must never be taken for abandoned", c.BlobGCAge, c.BackupTimeout)
	}
	if floor := c.BackupBusyWait + c.AckWait; c.RunReapAfter <= floor {
		bad("LEVQOR_RUN_REAP_AFTER", "%s: want more than LEVQOR_BACKUP_BUSY_WAIT + LEVQOR_ACK_WAIT (%s): a redelivered run waiting for a slot does not beat, and reaping it would tell the customer it failed", c.RunReapAfter, floor)
	}
	if c.DLQAccountThreshold < 1 || c.DLQAccountThreshold > 1000000 {
		bad("LEVQOR_DLQ_ACCOUNT_THRESHOLD", "%d: want 1 to 1000000 dead letters of one account between two watches", c.DLQAccountThreshold)
	}
	if role == RoleWorkers || role == RoleDev {
		errs = append(errs, c.BlobS3.validate()...)
	}
	needNATS := role == RoleIngest || role == RoleWorkers || role == RoleScheduler
	needDB := role == RoleIngest || role == RoleWorkers || role == RoleMigrate
	if needNATS {
		if c.NATSURL == "" {
			bad("LEVQOR_NATS_URL", "required (e.g. nats://127.0.0.1:4222)")
		} else if u, err := url.Parse(c.NATSURL); err != nil || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
			bad("LEVQOR_NATS_URL", "%q: want nats://host:port", c.NATSURL)
		}
	}
	if needDB {
		if c.DatabaseURL == "" {
			bad("LEVQOR_DATABASE_URL", "required (e.g. postgres://user:pass@host:5432/levqor?sslmode=disable)")
		} else if !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") && !strings.HasPrefix(c.DatabaseURL, "sqlite:") {
			bad("LEVQOR_DATABASE_URL", "want postgres://… or sqlite:<path>")
		}
	}
	if role == RoleIngest || role == RoleDev {
		if err := checkAddr(c.HTTPAddr); err != nil {
			bad("LEVQOR_HTTP_ADDR", "%v", err)
		}
		if c.WebhookTolerance <= 0 {
			bad("LEVQOR_WEBHOOK_TOLERANCE", "must be positive")
		}
	}
	if c.BusKey != "" {
		if _, err := keys.ParseBusKey(c.BusKey); err != nil {
			errs = append(errs, err)
		}
	} else if role == RoleIngest || role == RoleWorkers || role == RoleScheduler {
		bad("LEVQOR_BUS_KEY", "required, the same for ingest, the workers and the scheduler: 32 random bytes in hex (openssl rand -hex 32); every message they publish is proved with it, and the workers refuse ticks, events and Stripe events without the proof")
	}
	switch {
	case c.NATSCreds != "" && (c.NATSUser != "" || c.NATSPassword != ""):
		bad("LEVQOR_NATS_CREDS", "give a creds file or LEVQOR_NATS_USER and LEVQOR_NATS_PASSWORD, not both")
	case (c.NATSUser == "") != (c.NATSPassword == ""):
		bad("LEVQOR_NATS_USER", "LEVQOR_NATS_USER and LEVQOR_NATS_PASSWORD go together")
	case (c.NATSTLSCert == "") != (c.NATSTLSKey == ""):
		bad("LEVQOR_NATS_TLS_CERT", "LEVQOR_NATS_TLS_CERT and LEVQOR_NATS_TLS_KEY go together")
	case c.NATSOperatorCreds != "" && (c.NATSOperatorUser != "" || c.NATSOperatorPassword != ""):
		bad("LEVQOR_NATS_OPERATOR_CREDS", "give a creds file or LEVQOR_NATS_OPERATOR_USER and LEVQOR_NATS_OPERATOR_PASSWORD, not both")
	case (c.NATSOperatorUser == "") != (c.NATSOperatorPassword == ""):
		bad("LEVQOR_NATS_OPERATOR_USER", "LEVQOR_NATS_OPERATOR_USER and LEVQOR_NATS_OPERATOR_PASSWORD go together")
	}
	for _, kf := range [][2]string{{"LEVQOR_NATS_CREDS", c.NATSCreds}, {"LEVQOR_NATS_OPERATOR_CREDS", c.NATSOperatorCreds}, {"LEVQOR_NATS_TLS_CA", c.NATSTLSCA},
		{"LEVQOR_NATS_TLS_CERT", c.NATSTLSCert}, {"LEVQOR_NATS_TLS_KEY", c.NATSTLSKey}} {
		if kf[1] == "" {
			continue
		}
		if _, err := os.Stat(kf[1]); err != nil {
			bad(kf[0], "%s: %v", kf[1], errors.Unwrap(err))
		}
	}
	if c.MasterKeys != "" {
		if _, err := keys.ParseMasterKeys(c.MasterKeys); err != nil {
			errs = append(errs, err)
		}
	} else if role == RoleIngest || role == RoleWorkers {
		bad("LEVQOR_MASTER_KEYS", "required, the same for ingest and the workers: 32 random bytes in hex (openssl rand -hex 32), comma-separated to rotate (the first seals); secrets in commands, such as a source's DSN, are sealed with it")
	}
	if role == RoleIngest {
		if len(c.WebhookSecrets) == 0 {
			bad("STRIPE_WEBHOOK_SECRET", "required: the signing secret(s) of your Stripe webhook endpoint, comma-separated")
		}
	}
	if role == RoleDev && c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("LEVQOR_ADMIN_TOKEN", "at least 16 characters (e.g. openssl rand -hex 32), or unset to generate one")
	}
	if role == RoleWorkers || role == RoleScheduler {
		if err := checkAddr(c.AdminAddr); err != nil {
			bad("LEVQOR_ADMIN_ADDR", "%v", err)
		}
	}
	if role == RoleDev {
		if err := checkAddr(c.DevNATSAddr); err != nil {
			bad("LEVQOR_DEV_NATS_ADDR", "%v", err)
		}
		if c.DataDir == "" {
			bad("LEVQOR_DATA_DIR", "must not be empty")
		}
	}
	return errors.Join(errs...)
}

func checkAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q: want host:port", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port", a)
	}
	return nil
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) str(k, def string) string {
	if v := strings.TrimSpace(p.getenv(k)); v != "" {
		return v
	}
	return def
}

func (p *parser) list(k, def string) []string {
	var out []string
	for _, s := range strings.Split(p.str(k, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) integer(k string, def int) int {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %q is not an integer", k, v))
		return def
	}
	return n
}

func (p *parser) duration(k string, def time.Duration) time.Duration {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %q is not a duration (e.g. 30s, 5m)", k, v))
		return def
	}
	return d
}

// durations reads a comma-separated list of positive durations; unset
// is nil.
func (p *parser) durations(k string) []time.Duration {
	var out []time.Duration
	for _, v := range p.list(k, "") {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			p.errs = append(p.errs, fmt.Errorf("%s: %q is not a positive duration (e.g. 5s,5m,30m)", k, v))
			return nil
		}
		out = append(out, d)
	}
	return out
}

func (p *parser) float(k string, def float64) float64 {
	v := p.str(k, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %q is not a number", k, v))
		return def
	}
	return f
}

func (p *parser) boolean(k string) bool {
	v := p.str(k, "")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %q is not a boolean", k, v))
	}
	return b
}
