package telemetry

import (
	"fmt"
	"regexp"
	"time"

	"github.com/getsentry/sentry-go"
	sentrylogrus "github.com/getsentry/sentry-go/logrus"
	"github.com/sirupsen/logrus"
)

// reportedLevels are the log levels reported as errors: error-level
// entries (a dead letter, a failure that could not be recorded, a
// recovered panic) and worse.
var reportedLevels = []logrus.Level{logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel}

// SentryFlushTimeout bounds how long a stopping process waits for reports
// still in flight.
const SentryFlushTimeout = 5 * time.Second

// ReportErrors sends log's error-level entries to the Sentry-compatible
// endpoint of dsn (SENTRY_DSN), each with its fields as tags (correlation
// id, consumer, message id, account) and its error as the exception, with
// secrets redacted (Redact). An empty dsn reports nothing. The returned
// flush waits, up to SentryFlushTimeout, for the reports in flight: call
// it before the process exits.
func ReportErrors(log *logrus.Logger, dsn, environment, release string) (flush func(), err error) {
	if dsn == "" {
		return func() {}, nil
	}
	hook, err := sentrylogrus.NewEventHook(reportedLevels, sentry.ClientOptions{
		Dsn:         dsn,
		Environment: environment,
		Release:     release,
		// Frames carry no source lines: a binary in production has no
		// sources beside it, and a report holds only what the process saw.
		Integrations: func(in []sentry.Integration) []sentry.Integration {
			out := in[:0]
			for _, i := range in {
				if i.Name() != "ContextifyFrames" {
					out = append(out, i)
				}
			}
			return out
		},
		BeforeSend: func(ev *sentry.Event, _ *sentry.EventHint) *sentry.Event {
			redactEvent(ev)
			return ev
		},
	})
	if err != nil {
		return nil, fmt.Errorf("SENTRY_DSN: %w", err)
	}
	log.AddHook(hook)
	return func() { hook.Flush(SentryFlushTimeout) }, nil
}

// secretPatterns match what must never leave the process: API keys, webhook
// and Stripe secrets, passwords in URLs, bearer tokens.
var secretPatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\b(lvq_dev|lvq|whsec|sk_live|sk_test|rk_live|rk_test)_[A-Za-z0-9_]+`), "${1}_[redacted]"},
	{regexp.MustCompile(`(://[^:/@\s]+):[^@/\s]+@`), "${1}:[redacted]@"},
	{regexp.MustCompile(`(?i)(password\s*=\s*)\S+`), "${1}[redacted]"},
	{regexp.MustCompile(`(?i)(bearer\s+)\S+`), "${1}[redacted]"},
}

// Redact returns s without the secrets it may hold: Levqor's API keys,
// Stripe keys and webhook secrets, URL passwords (DSNs), password=
// parameters and bearer tokens.
func Redact(s string) string {
	for _, p := range secretPatterns {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	return s
}

// redactEvent redacts every text of ev that a log entry fills in.
func redactEvent(ev *sentry.Event) {
	ev.Message = Redact(ev.Message)
	for k, v := range ev.Tags {
		ev.Tags[k] = Redact(v)
	}
	for i := range ev.Exception {
		ev.Exception[i].Value = Redact(ev.Exception[i].Value)
	}
	for i := range ev.Breadcrumbs {
		ev.Breadcrumbs[i].Message = Redact(ev.Breadcrumbs[i].Message)
	}
	if ev.Request != nil {
		ev.Request.URL = Redact(ev.Request.URL)
		ev.Request.QueryString = Redact(ev.Request.QueryString)
		ev.Request.Cookies = ""
		for k, v := range ev.Request.Headers {
			ev.Request.Headers[k] = Redact(v)
		}
	}
}
