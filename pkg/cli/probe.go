package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runProbe exits 0 when the URL answers 2xx: the healthcheck of containers
// whose image has no shell or curl.
func runProbe(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError("probe <url>")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return usageError("probe: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", args[0], err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe %s: status %d", args[0], resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
