package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// runProbe exits 0 when the URL answers 2xx: the healthcheck of containers
// whose image has no shell or curl.
func runProbe(ctx context.Context, args []string, stdout, _ io.Writer, _ Options) error {
	f := newFlags("probe", "probe <http://host:port/path>   exit 0 if the URL answers 2xx within 3s", stdout)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("probe: give one URL, e.g. levqor probe http://127.0.0.1:8080/healthz")
	}
	if u, err := url.Parse(pos[0]); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError("probe: %q is not an http(s) URL, e.g. http://127.0.0.1:8080/healthz", pos[0])
	}
	args = pos
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
