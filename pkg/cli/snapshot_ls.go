package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/repo"
)

// runSnapshotLs is `levqor snapshot ls <snap_…> [PATH]`: one directory of
// a snapshot, as GET /v1/snapshots/{id}/files lists it, one entry a line
// in the manner of ls -l.
func runSnapshotLs(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	flags := newFlags("snapshot ls", snapshotLsUsage, stdout, envAPI...).describe(
		"Lists one directory of a snapshot taken in the backup repository's format (2): its root without PATH.\n" +
			"An account key lists its own snapshots only. Download a file or a directory (as tar) with\n" +
			"GET /v1/snapshots/{id}/download?path=PATH.")
	af := addAPIFlags(flags, cfg)
	asJSON := flags.Bool("json", false, "print the listing as JSON")
	pos, err := flags.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		return usageError("snapshot ls: give the snapshot id and, optionally, a directory of it (see `levqor snapshot ls --help`)")
	}
	snap, dir := pos[0], ""
	if len(pos) == 2 {
		dir = pos[1]
	}
	if _, err := flags.parseID([]string{snap}, backups.SnapshotIDPrefix, "snapshot"); err != nil {
		return err
	}
	c, err := af.client(cfg, opts)
	if err != nil {
		return err
	}
	status, _, body, err := c.do(ctx, http.MethodGet, "/v1/snapshots/"+snap+"/files?path="+url.QueryEscape(dir), nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return apiError(status, body)
	}
	var l backups.Listing
	if err := json.Unmarshal(body, &l); err != nil {
		return fmt.Errorf("reading the listing: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, l)
	}
	for _, e := range l.Entries {
		fmt.Fprintln(stdout, entryLine(e))
	}
	return nil
}

// entryLine is e as ls -l shows it: mode, size, time, name.
func entryLine(e backups.Entry) string {
	perm, _ := strconv.ParseUint(e.Mode, 8, 32)
	mode, size, name := fs.FileMode(perm), "-", e.Name
	switch e.Type {
	case repo.TypeDir:
		mode |= fs.ModeDir
		name += "/"
	case repo.TypeSymlink:
		mode |= fs.ModeSymlink
		name += " -> " + e.Target
	default:
		size = formatBytes(e.Size)
	}
	return fmt.Sprintf("%s  %9s  %s  %s", mode, size, e.ModTime.Format("2006-01-02 15:04:05"), name)
}
