package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/levqor/levqor/pkg/notify"
)

// listenBodyLimit bounds a delivery's body: Levqor's are a few KiB.
const listenBodyLimit = 1 << 20

// runWebhookListen is a small receiver of Levqor's customer webhooks: it
// verifies each delivery's Standard Webhooks signature with the
// endpoint's secret (WEBHOOK_SECRET) and prints it. --fail answers 503 to
// every delivery, to watch retries and the dead-letter queue.
func runWebhookListen(ctx context.Context, args []string, stdout, _ io.Writer, opts Options) error {
	fs := newFlags("webhook listen", "webhook listen [flags]   receive Levqor's webhooks: verify each delivery's signature with WEBHOOK_SECRET and print it", stdout,
		"WEBHOOK_SECRET")
	addr := fs.String("addr", "127.0.0.1:8089", "address to listen on")
	fail := fs.Bool("fail", false, "answer 503 to every delivery (after verifying it), as a receiver that is down would")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	secret := opts.Getenv("WEBHOOK_SECRET")
	if !strings.HasPrefix(secret, notify.WebhookSecretPrefix) {
		return usageError("webhook listen: set WEBHOOK_SECRET to the endpoint's secret (whsec_…), as POST /v1/webhook-endpoints showed it")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	var mu sync.Mutex // one delivery printed at a time
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, listenBodyLimit))
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("webhook-id")
		if err != nil {
			fmt.Fprintf(stdout, "refused %s: %v\n", id, err)
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if err := notify.VerifyWebhook(secret, r.Header, body, time.Now()); err != nil {
			fmt.Fprintf(stdout, "refused %s: %v\n", id, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		status := http.StatusNoContent
		if *fail {
			status = http.StatusServiceUnavailable
		}
		fmt.Fprintf(stdout, "verified %s, answered %d\n%s\n", id, status, strings.TrimSpace(string(body)))
		w.WriteHeader(status)
	})}
	fmt.Fprintf(stdout, "listening on http://%s/ for webhooks signed with WEBHOOK_SECRET\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shut)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
