package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/stripesim"
)

func runWebhook(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	if len(args) == 0 {
		return usageError("webhook send <event type> [flags] | webhook types")
	}
	switch args[0] {
	case "types":
		for _, t := range stripesim.SupportedTypes() {
			fmt.Fprintln(stdout, t)
		}
		return nil
	case "send":
		return runWebhookSend(ctx, args[1:], stdout, stderr, opts)
	default:
		return usageError("unknown webhook command %q (send, types)", args[0])
	}
}

func runWebhookSend(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := flag.NewFlagSet("webhook send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	url := fs.String("url", "http://"+cfg.HTTPAddr+"/webhooks/stripe", "ingest webhook URL")
	secret := fs.String("secret", "", "webhook signing secret (default STRIPE_WEBHOOK_SECRET, else dev mode's secret from LEVQOR_DATA_DIR)")
	dataFile := fs.String("data", "", "JSON file deep-merged into data.object")
	id := fs.String("id", "", "event id (default: random evt_…); reuse one to send a duplicate")
	customer := fs.String("customer", "", "Stripe customer id (default: random cus_…)")
	object := fs.String("object", "", "id of data.object (default: random)")
	price := fs.String("price", "", "price id on subscription items and invoice lines")
	account := fs.String("account", "", "Levqor account id, as checkout's client_reference_id")
	printOnly := fs.Bool("print", false, "print the signed event instead of sending it")
	// Accept the event type before or after the flags.
	var eventType string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		eventType, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return usageError("%v", err)
	}
	if eventType == "" && fs.NArg() > 0 {
		eventType = fs.Arg(0)
	}
	if eventType == "" {
		return usageError("webhook send <event type>: see `levqor webhook types`")
	}
	eo := stripesim.EventOptions{ID: *id, Customer: *customer, ObjectID: *object, Price: *price, AccountRef: *account}
	if *dataFile != "" {
		b, err := os.ReadFile(*dataFile)
		if err != nil {
			return fmt.Errorf("--data: %w", err)
		}
		if !json.Valid(b) {
			return usageError("--data %s: not valid JSON", *dataFile)
		}
		eo.Data = b
	}
	payload, err := stripesim.NewEvent(eventType, eo)
	if err != nil {
		return usageError("%v", err)
	}
	if *printOnly {
		_, err := stdout.Write(append(payload, '\n'))
		return err
	}
	if *secret == "" && len(cfg.WebhookSecrets) > 0 {
		*secret = cfg.WebhookSecrets[0]
	}
	if *secret == "" {
		s, err := service.LoadDevSecrets(cfg.DataDir)
		if err != nil {
			return err
		}
		*secret = s.WebhookSecret
	}
	sender := &stripesim.Sender{URL: *url, Secret: *secret}
	res, err := sender.Send(ctx, payload)
	if err != nil {
		return fmt.Errorf("sending to %s: %w", *url, err)
	}
	fmt.Fprintf(stdout, "%s %s → %d %s\n", eventType, res.EventID, res.Status, strings.TrimSpace(string(res.Body)))
	if res.Status < 200 || res.Status > 299 {
		return fmt.Errorf("ingest answered %d", res.Status)
	}
	return nil
}
