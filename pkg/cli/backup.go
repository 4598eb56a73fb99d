package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	registerGroup("backup", "run <src_…> [--wait] | pause <src_…> | resume <src_…>: back a source up now, pause or resume its schedule",
		backupUsage, map[string]commandFunc{"run": backupCommand("run"), "pause": backupCommand("pause"), "resume": backupCommand("resume")})
	register("restore", "<snap_…> --to <dir> [--include PATH]… | --dsn <postgres://…> [--overwrite]: restore a snapshot's data (operators)", runRestore)
}

// backupSynopsis is each backup subcommand's usage line.
var backupSynopsis = map[string]string{
	"run":    "backup run <src_…> [--wait] [--json] [--url URL] [--key KEY]",
	"pause":  "backup pause <src_…> [--json] [--url URL] [--key KEY]",
	"resume": "backup resume <src_…> [--json] [--url URL] [--key KEY]",
}

const (
	backupUsage  = "backup run <src_…> [--wait] [--json]\nbackup pause <src_…> [--json]\nbackup resume <src_…> [--json]"
	restoreUsage = "restore <snap_…> --to <dir> [--include PATH]… | --dsn <postgres://…> [--overwrite] [--json] [--url URL] [--key KEY]"
)

// pollEvery is how often a waiting CLI reads a run or command.
const pollEvery = 500 * time.Millisecond

// apiFlags are the flags of the commands that call the product API.
type apiFlags struct {
	fs       *cmdFlags
	url, key *string
}

// urlSet reports whether --url was given.
func (f apiFlags) urlSet() bool { return flagSet(f.fs, "url") }

func addAPIFlags(fs *cmdFlags, cfg config.Config) apiFlags {
	return apiFlags{
		fs:  fs,
		url: fs.String("url", "http://"+cfg.HTTPAddr, "the ingest URL (default: the running dev mode's, else LEVQOR_HTTP_ADDR's)"),
		key: fs.String("key", "", "API key (default LEVQOR_API_KEY, else dev mode's operator token from LEVQOR_DATA_DIR)"),
	}
}

// client resolves the key as `levqor snapshot seed` does.
func (f apiFlags) client(cfg config.Config, opts Options) (*apiCaller, error) {
	key := *f.key
	if key == "" {
		key = opts.Getenv("LEVQOR_API_KEY")
	}
	if key == "" && cfg.AdminToken != "" {
		key = cfg.AdminToken
	}
	if key == "" {
		var err error
		if key, err = devSecret(opts, true); err != nil {
			return nil, fmt.Errorf("no API key: give --key or LEVQOR_API_KEY (%w)", err)
		}
	}
	url := *f.url
	if !f.urlSet() {
		if u := devURL(opts, false); u != "" {
			url = u
		}
	}
	return &apiCaller{url: strings.TrimSuffix(url, "/"), key: key, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// backupCommand is `levqor backup <sub>`.
func backupCommand(sub string) commandFunc {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
		return runBackup(ctx, sub, args, stdout, opts)
	}
}

func runBackup(ctx context.Context, sub string, args []string, stdout io.Writer, opts Options) error {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	fs := newFlags("backup "+sub, backupSynopsis[sub], stdout, envAPI...)
	af := addAPIFlags(fs, cfg)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	wait := new(bool)
	if sub == "run" {
		wait = fs.Bool("wait", false, "wait for the run to end, printing its progress (with --json: only the finished run)")
	}
	src, err := fs.parseID(args, backups.SourceIDPrefix, "source")
	if err != nil {
		return err
	}
	c, err := af.client(cfg, opts)
	if err != nil {
		return err
	}
	if sub != "run" {
		v, err := c.command(ctx, http.MethodPost, "/v1/sources/"+src+"/"+sub, nil)
		if err != nil {
			return err
		}
		var s backups.SourceView
		if err := json.Unmarshal(v.Result, &s); err != nil {
			return fmt.Errorf("reading the source: %w", err)
		}
		if *asJSON {
			return writeJSON(stdout, s)
		}
		state := "running on schedule " + s.Schedule + " (" + s.TimeZone + ")"
		if s.PausedAt != nil {
			state = "paused since " + s.PausedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%s %s\n", s.ID, state)
		return nil
	}
	status, hdr, body, err := c.do(ctx, http.MethodPost, "/v1/sources/"+src+"/runs", nil)
	if err != nil {
		return err
	}
	if status != http.StatusAccepted && status != http.StatusOK && status != http.StatusCreated {
		return apiError(status, body)
	}
	runID := hdr.Get(api.HeaderRunID)
	var cmd api.CommandView
	if err := json.Unmarshal(body, &cmd); err != nil || runID == "" {
		return fmt.Errorf("the API answered %d without a run", status)
	}
	switch {
	case *wait:
		if !*asJSON {
			fmt.Fprintf(stdout, "run %s queued (command %s)\n", runID, cmd.CommandID)
		}
		return c.followRun(ctx, runID, stdout, *asJSON)
	case *asJSON:
		return writeJSON(stdout, map[string]string{"run_id": runID, "command_id": cmd.CommandID})
	}
	fmt.Fprintf(stdout, "run %s queued (command %s)\n", runID, cmd.CommandID)
	return nil
}

// followRun polls the run until it ends, printing a progress line each
// time its state or bytes change; asJSON prints only the finished run, as
// JSON.
func (c *apiCaller) followRun(ctx context.Context, id string, stdout io.Writer, asJSON bool) error {
	out := stdout
	if asJSON {
		stdout = io.Discard
	}
	last := ""
	for {
		status, _, body, err := c.do(ctx, http.MethodGet, "/v1/runs/"+id, nil)
		if err != nil {
			return err
		}
		if status == http.StatusTooManyRequests {
			// The key's token bucket is shared with whatever else uses
			// it; a poll refused for now is asked again, not fatal.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if status != http.StatusOK {
			return apiError(status, body)
		}
		var r backups.RunView
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("reading the run: %w", err)
		}
		line := fmt.Sprintf("%s  %s read", r.State, formatBytes(r.BytesDone))
		switch r.State {
		case store.RunSucceeded:
			if asJSON {
				return writeJSON(out, r)
			}
			fmt.Fprintf(stdout, "succeeded  %s read, %s stored  snapshot %s  sha256 %s\n",
				formatBytes(r.SourceBytes), formatBytes(r.StoredBytes), r.SnapshotID, r.SHA256)
			return nil
		case store.RunFailed:
			if r.Attempts == 0 {
				return fmt.Errorf("run %s failed: %s", id, r.Error)
			}
			// A failed attempt may still be retried by the worker; the
			// command says whether it gave up.
			cs, _, cb, err := c.do(ctx, http.MethodGet, "/v1/commands/"+r.CommandID, nil)
			if err != nil {
				return err
			}
			var cmd api.CommandView
			if cs == http.StatusOK && json.Unmarshal(cb, &cmd) == nil && !(cmd.Status == store.CommandQueued || cmd.Status == store.CommandRunning) {
				return fmt.Errorf("run %s failed: %s", id, r.Error)
			}
			line = fmt.Sprintf("retrying  attempt %d failed: %s", r.Attempts, r.Error)
		}
		if line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	fs := newFlags("restore", restoreUsage, stdout, envAPI...)
	af := addAPIFlags(fs, cfg)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	to := fs.String("to", "", "the directory to restore a directory snapshot into (under LEVQOR_BACKUP_PATHS)")
	dsn := fs.String("dsn", "", "the database to restore a postgres snapshot into")
	overwrite := fs.Bool("overwrite", false, "restore into a non-empty target, replacing what has the same name")
	var include pathList
	fs.Var(&include, "include", "restore only this file or directory of the snapshot (a path in it, as `levqor snapshot ls` shows); repeat for more")
	snap, err := fs.parseID(args, backups.SnapshotIDPrefix, "snapshot")
	if err != nil {
		return err
	}
	if (*to == "") == (*dsn == "") {
		return usageError("restore: give one of --to or --dsn (see `levqor restore --help`)")
	}
	if len(include) > 0 && *to == "" {
		return usageError("restore: --include picks paths of a directory snapshot, restored --to a directory")
	}
	if *to != "" {
		// A relative directory is the caller's, resolved here: the worker
		// runs elsewhere and accepts absolute paths only.
		if *to, err = filepath.Abs(*to); err != nil {
			return usageError("--to: %v", err)
		}
	}
	c, err := af.client(cfg, opts)
	if err != nil {
		return err
	}
	body := backups.RestoreDataBody{TargetPath: *to, TargetDSN: *dsn, Overwrite: *overwrite, Include: include}
	v, err := c.command(ctx, http.MethodPost, "/v1/snapshots/"+snap+"/restore", body)
	if err != nil {
		return err
	}
	var res backups.RestoreDataResult
	if err := json.Unmarshal(v.Result, &res); err != nil {
		return fmt.Errorf("reading the restore's result: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	target := res.TargetPath
	if target == "" {
		target = res.TargetDSN
	}
	what := res.SnapshotID
	if len(res.Include) > 0 {
		what += " (" + strings.Join(res.Include, ", ") + ")"
	}
	fmt.Fprintf(stdout, "restored %s to %s: %d files, %s, every checksum verified\n", what, target, res.Files, formatBytes(res.Bytes))
	return nil
}

// pathList is a flag given once per path.
type pathList []string

func (l *pathList) String() string { return strings.Join(*l, ",") }

func (l *pathList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// apiCaller calls the product API with one key.
type apiCaller struct {
	url, key string
	http     *http.Client
}

func (c *apiCaller) do(ctx context.Context, method, path string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, resp.Header, b, err
}

// command sends a change request and waits, as long as it takes, for the
// command's outcome; a failed command is an error naming the field.
func (c *apiCaller) command(ctx context.Context, method, path string, body any) (*api.CommandView, error) {
	status, _, b, err := c.do(ctx, method, path+"?wait=25s", body)
	if err != nil {
		return nil, err
	}
	for {
		var v api.CommandView
		if status >= 300 && status != http.StatusAccepted {
			return nil, apiError(status, b)
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("the API answered %d: %w", status, err)
		}
		switch v.Status {
		case store.CommandSucceeded:
			return &v, nil
		case store.CommandFailed:
			return nil, apiError(v.HTTPStatus, b)
		}
		if status, _, b, err = c.do(ctx, http.MethodGet, "/v1/commands/"+v.CommandID+"?wait=25s", nil); err != nil {
			return nil, err
		}
	}
}

// formatBytes is n in decimal units.
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// apiError is the error of an answer: a failed command's, or the API's
// own error shape with the answer's status.
func apiError(status int, body []byte) error {
	var v api.CommandView
	if json.Unmarshal(body, &v) == nil && v.CommandID != "" && v.Error != nil {
		return detailError(v.HTTPStatus, *v.Error)
	}
	var e httpjson.ErrorBody
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return detailError(status, e.Error)
	}
	return fmt.Errorf("the API answered %d", status)
}
