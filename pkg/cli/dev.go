package cli

import (
	"flag"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/service"
)

// devURL is where the running dev mode found by service.FindDev listens:
// its webhook URL (webhook true) or its ingest URL; "" when no dev mode
// runs there. Tools default --url to it, so a dev mode on another port is
// still found.
func devURL(opts Options, webhook bool) string {
	if opts.Getenv("LEVQOR_HTTP_ADDR") != "" {
		return "" // the operator said where ingest is
	}
	inst, err := service.FindDev("", opts.Getenv)
	if err != nil || !inst.Running {
		return ""
	}
	if webhook {
		return inst.WebhookURL
	}
	return inst.IngestURL
}

// flagSet reports whether the command line set flag name.
func flagSet(fs *cmdFlags, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// devSecret returns one of dev mode's secrets for a tool that was given
// none: the webhook signing secret (admin false) or the operator token
// (admin true) of the dev mode whose data directory service.FindDev finds
// from the working directory (LEVQOR_DATA_DIR, else the nearest .levqor).
// It never creates a secret: one the running dev mode does not know would
// only be refused. When that dev mode took the secret from its own
// environment, the file's is not the one it uses, and the error says which
// variable to set.
func devSecret(opts Options, admin bool) (string, error) {
	inst, err := service.FindDev("", opts.Getenv)
	if err != nil {
		return "", err
	}
	name, fromEnv := "STRIPE_WEBHOOK_SECRET", inst.WebhookSecretFromEnv
	if admin {
		name, fromEnv = "LEVQOR_API_KEY (or LEVQOR_ADMIN_TOKEN)", inst.AdminTokenFromEnv
	}
	if inst.Running && fromEnv {
		return "", fmt.Errorf("the dev mode running on %s (pid %d) was given its secret in its environment: set %s here too, or pass it as a flag",
			inst.DataDir, inst.PID, name)
	}
	s, err := inst.Secrets()
	if err != nil {
		return "", err
	}
	if admin {
		return s.AdminToken, nil
	}
	return s.WebhookSecret, nil
}

// devBusKey is the LEVQOR_BUS_KEY of the dev mode service.FindDev finds,
// or "": what the operator tools publish (replays, backfills, ticks) is
// proved with the key that dev mode's workers check. Set LEVQOR_BUS_KEY
// here if that dev mode was given one in its environment.
func devBusKey(opts Options) string {
	inst, err := service.FindDev("", opts.Getenv)
	if err != nil {
		return ""
	}
	s, err := inst.Secrets()
	if err != nil {
		return ""
	}
	return s.BusKey
}

// cliNATS is where an operator tool connects to NATS, and how:
// LEVQOR_NATS_URL with the operator's credentials (LEVQOR_NATS_OPERATOR_*,
// as ingest has them, else LEVQOR_NATS_*), or, when the URL is unset, dev
// mode's embedded server (LEVQOR_DEV_NATS_ADDR) with the credentials dev
// mode generated (unless the environment names others).
func cliNATS(cfg config.Config, opts Options) (string, []nats.Option) {
	if cfg.NATSOperatorCreds != "" || cfg.NATSOperatorUser != "" {
		cfg.NATSCreds, cfg.NATSUser, cfg.NATSPassword = cfg.NATSOperatorCreds, cfg.NATSOperatorUser, cfg.NATSOperatorPassword
	}
	if cfg.NATSURL != "" {
		return cfg.NATSURL, service.NATSOptions(cfg, service.NATSRoleOperator)
	}
	if cfg.NATSCreds == "" && cfg.NATSUser == "" {
		if inst, err := service.FindDev("", opts.Getenv); err == nil {
			if s, err := inst.Secrets(); err == nil && s.NATSPassword != "" {
				cfg.NATSUser, cfg.NATSPassword = service.DevNATSUser, s.NATSPassword
			}
		}
	}
	return "nats://" + cfg.DevNATSAddr, service.NATSOptions(cfg, service.NATSRoleOperator)
}

// cliBusKey is LEVQOR_BUS_KEY, else dev mode's; nil when there is none
// (then what is published is refused by workers that check).
func cliBusKey(cfg config.Config, opts Options) (*keys.BusKey, error) {
	k := cfg.BusKey
	if k == "" {
		k = devBusKey(opts)
	}
	if k == "" {
		return nil, nil
	}
	return keys.ParseBusKey(k)
}
