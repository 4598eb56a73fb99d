package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	apicommand "github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	registerGroup("snapshot", "ls <snap_…> [PATH] | seed --source src_… --days N: list a snapshot's files; record test snapshots", snapshotUsage,
		map[string]commandFunc{"ls": runSnapshotLs, "seed": runSnapshotsSeed})
}

const (
	snapshotsUsage  = `snapshot seed --source <src_…> [--days 30] [--at 02:00] [--zone UTC] [--end YYYY-MM-DD] [--tags a,b] [--url URL] [--key KEY]`
	snapshotLsUsage = `snapshot ls <snap_…> [PATH] [--json] [--url URL] [--key KEY]`
	snapshotUsage   = snapshotLsUsage + "\n" + snapshotsUsage
)

// seedMaxRetries bounds how often one snapshot is retried after a rate
// limit or an unavailable answer.
const seedMaxRetries = 20

// runSnapshotsSeed records one snapshot a day for --days days through the
// product API, as a backup agent would: each a POST
// /v1/sources/{id}/snapshots with a small inline content, waiting for the
// backups worker's outcome. The Idempotency-Key is derived from the
// source and the time, so running it again records nothing twice.
func runSnapshotsSeed(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	fs := newFlags("snapshot seed", snapshotsUsage, stdout, envAPI...)
	asJSON := fs.Bool("json", false, "print the recorded snapshots as JSON (no progress lines)")
	source := fs.String("source", "", "the source (src_…)")
	days := fs.Int("days", 30, "how many days of snapshots, one a day, the newest on --end")
	at := fs.String("at", "02:00", "the time of day each snapshot is taken, HH:MM")
	zone := fs.String("zone", "UTC", "the IANA time zone of --at; snapshots carry its UTC offset")
	end := fs.String("end", "", "the day of the newest snapshot, YYYY-MM-DD (default: today in --zone)")
	tags := fs.String("tags", "", "comma-separated tags for every snapshot")
	url := fs.String("url", "http://"+cfg.HTTPAddr, "the ingest URL")
	key := fs.String("key", "", "API key (default LEVQOR_API_KEY, else dev mode's operator token from LEVQOR_DATA_DIR)")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if !apicommand.ValidID(*source, backups.SourceIDPrefix) {
		return usageError("--source must be a source id (src_…); create one with POST /v1/sources")
	}
	if *days < 1 || *days > 3660 {
		return usageError("--days must be from 1 to 3660")
	}
	loc, err := time.LoadLocation(*zone)
	if err != nil {
		return usageError("--zone %q: %v", *zone, err)
	}
	clock, err := time.Parse("15:04", *at)
	if err != nil {
		return usageError("--at %q: want HH:MM", *at)
	}
	last := time.Now().In(loc)
	if *end != "" {
		if last, err = time.ParseInLocation("2006-01-02", *end, loc); err != nil {
			return usageError("--end %q: want YYYY-MM-DD", *end)
		}
	}
	var tagList []string
	for _, t := range strings.Split(*tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tagList = append(tagList, t)
		}
	}
	if *key == "" {
		*key = opts.Getenv("LEVQOR_API_KEY")
	}
	if *key == "" && cfg.AdminToken != "" {
		*key = cfg.AdminToken
	}
	if *key == "" {
		if *key, err = devSecret(opts, true); err != nil {
			return fmt.Errorf("no API key: give --key or LEVQOR_API_KEY (%w)", err)
		}
	}
	c := &seedClient{url: strings.TrimSuffix(*url, "/"), key: *key, http: &http.Client{Timeout: 40 * time.Second}, stderr: stderr}
	recorded := 0
	var all []store.Snapshot
	for i := *days - 1; i >= 0; i-- {
		d := last.AddDate(0, 0, -i)
		taken := time.Date(d.Year(), d.Month(), d.Day(), clock.Hour(), clock.Minute(), 0, 0, loc)
		snap, replayed, err := c.record(ctx, *source, taken, tagList)
		if err != nil {
			return fmt.Errorf("snapshot of %s: %w", taken.Format(time.RFC3339), err)
		}
		all = append(all, *snap)
		recorded++
		if *asJSON {
			continue
		}
		note := ""
		if replayed {
			note = "  (already recorded by an earlier run)"
		}
		fmt.Fprintf(stdout, "%s  %s  %d bytes%s\n", snap.TakenAt.Format(time.RFC3339), snap.ID, snap.SizeBytes, note)
	}
	if *asJSON {
		return writeJSON(stdout, all)
	}
	fmt.Fprintf(stdout, "%d snapshots of %s\n", recorded, *source)
	return nil
}

type seedClient struct {
	url, key string
	http     *http.Client
	stderr   io.Writer
}

// record posts one snapshot and waits for its outcome, retrying with the
// same Idempotency-Key after a rate limit, an unavailable API or a command
// still pending at the deadline; a command that failed is an error.
func (c *seedClient) record(ctx context.Context, source string, taken time.Time, tags []string) (*store.Snapshot, bool, error) {
	body, err := json.Marshal(backups.SnapshotBody{
		TakenAt: taken.Format(time.RFC3339), Tags: tags,
		ContentBase64: base64.StdEncoding.EncodeToString([]byte("levqor seed: backup of " + source + " taken " + taken.Format(time.RFC3339) + "\n")),
	})
	if err != nil {
		return nil, false, err
	}
	idem := "seed-" + source + "-" + strconv.FormatInt(taken.Unix(), 10)
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/sources/"+source+"/snapshots?wait=15s", bytes.NewReader(body))
		if err != nil {
			return nil, false, err
		}
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, false, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, false, err
		}
		var v api.CommandView
		failed := json.Unmarshal(b, &v) == nil && v.Status == store.CommandFailed
		if !failed && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusAccepted) && attempt < seedMaxRetries {
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		if resp.StatusCode == http.StatusCreated && v.Status == store.CommandSucceeded {
			var s store.Snapshot
			if err := json.Unmarshal(v.Result, &s); err != nil {
				return nil, false, fmt.Errorf("reading the snapshot: %w", err)
			}
			return &s, resp.Header.Get("Idempotent-Replayed") == "true", nil
		}
		return nil, false, answerError(resp.StatusCode, b)
	}
}

// answerError turns an error answer (the error shape, or a failed
// command) into an error naming the field.
func answerError(status int, body []byte) error {
	var v api.CommandView
	if json.Unmarshal(body, &v) == nil && v.Error != nil {
		return detailError(v.HTTPStatus, *v.Error)
	}
	var e httpjson.ErrorBody
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return detailError(status, e.Error)
	}
	return fmt.Errorf("the API answered %d", status)
}

func detailError(status int, d httpjson.ErrorDetail) error {
	if d.Field != "" {
		return fmt.Errorf("%d %s (%s): %s", status, d.Code, d.Field, d.Message)
	}
	return fmt.Errorf("%d %s: %s", status, d.Code, d.Message)
}
