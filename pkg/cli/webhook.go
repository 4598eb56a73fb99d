package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/stripesim"
)

func runWebhookTypes(_ context.Context, args []string, stdout, _ io.Writer, _ Options) error {
	f := newFlags("webhook types", "webhook types   list the event types webhook send knows", stdout)
	if err := f.parseNone(args); err != nil {
		return err
	}
	for _, t := range stripesim.SupportedTypes() {
		fmt.Fprintln(stdout, t)
	}
	return nil
}

func runWebhookSend(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("webhook send", "webhook send <event type> [flags]   sign a test Stripe event and send it to ingest", stdout,
		"LEVQOR_HTTP_ADDR", "STRIPE_WEBHOOK_SECRET", "LEVQOR_DATA_DIR")
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
	asJSON := fs.Bool("json", false, "print ingest's answer as JSON: {event_id, type, status, body}")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("webhook send <event type>: name one event type (see `levqor webhook types`)")
	}
	eventType := pos[0]
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
	if !flagSet(fs, "url") {
		if u := devURL(opts, true); u != "" {
			*url = u
		}
	}
	if *secret == "" {
		if *secret, err = devSecret(opts, false); err != nil {
			return fmt.Errorf("no signing secret: give --secret or STRIPE_WEBHOOK_SECRET (%w)", err)
		}
	}
	sender := &stripesim.Sender{URL: *url, Secret: *secret}
	res, err := sender.Send(ctx, payload)
	if err != nil {
		return fmt.Errorf("sending to %s: %w", *url, err)
	}
	if *asJSON {
		body := json.RawMessage(res.Body)
		if !json.Valid(body) {
			b, _ := json.Marshal(string(res.Body))
			body = b
		}
		answer := map[string]any{"event_id": res.EventID, "type": eventType, "status": res.Status, "body": body}
		if id := res.Header.Get(ingest.HeaderTraceID); id != "" {
			answer["trace_id"] = id // while ingest traces
		}
		if err := writeJSON(stdout, answer); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s %s → %d %s\n", eventType, res.EventID, res.Status, strings.TrimSpace(string(res.Body)))
	}
	if res.Status < 200 || res.Status > 299 {
		return fmt.Errorf("ingest answered %d", res.Status)
	}
	return nil
}
