package service

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/stripedev"
)

// devSettleDefault is how long dev mode waits after every worker is ready
// before it reprints where everything is, so the reminder comes after the
// last start-up log lines rather than among them.
const devSettleDefault = 300 * time.Millisecond

// DevStripeStateFile is the file in the data dir where the offline Stripe
// stand-in keeps the customers and sessions it created.
const DevStripeStateFile = "stripe-dev.json"

// startStripeStandIn builds the offline Stripe stand-in with its state in
// dataDir and a loopback listener for it on a free port.
func startStripeStandIn(dataDir string) (*stripedev.Server, net.Listener, error) {
	sd, err := stripedev.New(stripedev.Config{StatePath: filepath.Join(dataDir, DevStripeStateFile)})
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("starting the offline Stripe stand-in: %w", err)
	}
	return sd, ln, nil
}

// devInstance describes the running dev mode for DevInstanceFile.
func devInstance(cfg config.Config, info DevInfo, webhookFromEnv, adminFromEnv, standIn bool) (DevInstance, error) {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return DevInstance{}, fmt.Errorf("LEVQOR_DATA_DIR: %w", err)
	}
	return DevInstance{
		PID:                  os.Getpid(),
		DataDir:              dir,
		IngestURL:            info.IngestURL,
		WebhookURL:           info.WebhookURL,
		NATSURL:              info.NATSURL,
		StripeAPIBase:        cfg.StripeAPIBase,
		StripeStandIn:        standIn,
		SecretsFile:          filepath.Join(dir, DevSecretsFile),
		WebhookSecretFromEnv: webhookFromEnv,
		AdminTokenFromEnv:    adminFromEnv,
		StartedAt:            time.Now().UTC(),
		Running:              true,
	}, nil
}

// readyReminder is what dev mode prints once everything is ready: the
// banner's URLs and where the secrets are, short enough to stay on screen.
func readyReminder(cfg config.Config, inst DevInstance) string {
	where := filepath.Join(cfg.DataDir, DevSecretsFile)
	var b strings.Builder
	fmt.Fprintf(&b, "\nLevqor dev mode is ready (pid %d, data dir %s).\n\n", inst.PID, cfg.DataDir)
	fmt.Fprintf(&b, "  ingest            %s\n", inst.IngestURL)
	fmt.Fprintf(&b, "  console           %s/app/\n", inst.IngestURL)
	fmt.Fprintf(&b, "  stripe webhooks   %s\n", inst.WebhookURL)
	fmt.Fprintf(&b, "  NATS (JetStream)  %s   (user %s; its password is nats_password in the secrets)\n", inst.NATSURL, DevNATSUser)
	fmt.Fprintf(&b, "  Stripe API        %s\n", stripeTarget(cfg, inst.StripeStandIn))
	fmt.Fprintf(&b, "  secrets           %s (STRIPE_WEBHOOK_SECRET, LEVQOR_ADMIN_TOKEN)\n", where)
	for _, e := range []struct {
		name    string
		fromEnv bool
	}{{"STRIPE_WEBHOOK_SECRET", inst.WebhookSecretFromEnv}, {"LEVQOR_ADMIN_TOKEN", inst.AdminTokenFromEnv}} {
		if e.fromEnv {
			fmt.Fprintf(&b, "                    %s: the one in the environment is used instead\n", e.name)
		}
	}
	b.WriteString("\n")
	return b.String()
}
