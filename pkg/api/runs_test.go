package api_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/telemetry"
)

// entryNames are the names of a listing's entries.
func entryNames(l backups.Listing) []string {
	var out []string
	for _, e := range l.Entries {
		out = append(out, e.Name)
	}
	return out
}

// untar reads a tar stream into name → content.
func untar(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[h.Name] = string(data)
	}
}

// allowPaths serves the API again with LEVQOR_BACKUP_PATHS set to a fresh
// directory, which it returns; the retention worker started afterwards
// gets it too.
func (h *harness) allowPaths(t *testing.T) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	h.env.Cfg.BackupPaths = []string{root}
	h.env.Cfg.BlobDir = t.TempDir() // ingest reads snapshots for browsing
	h.env.Reg = telemetry.NewRegistry()
	srv, err := h.env.Ingest("")
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	h.url = hs.URL
	return root
}

// TestBackupRunsThroughTheAPI walks backups that run as an operator and a
// customer would: an operator adds a directory source, the customer runs
// it and follows the run, verifies the snapshot, pauses the source; only
// an operator restores, and only under LEVQOR_BACKUP_PATHS.
func TestBackupRunsThroughTheAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	root := h.allowPaths(t)
	roomy := starterTier
	roomy.Sources = 5
	h.subscribe(t, h.accA, roomy)
	h.subscribe(t, h.accB, roomy)
	h.runRetention(t)
	data := filepath.Join(root, "www")
	require.NoError(t, os.MkdirAll(filepath.Join(data, "img"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "index.html"), []byte("<h1>hello</h1>"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(data, "img", "logo.svg"), []byte("<svg/>"), 0o600))

	dirSource := map[string]any{"account_id": h.accA, "name": "website", "kind": "directory", "config": map[string]string{"path": data}}

	t.Run("AnAccountKeyCannotCreateARunnableSource", func(t *testing.T) {
		body := map[string]any{"name": "website", "kind": "directory", "config": map[string]string{"path": data}}
		r := h.do(t, http.MethodPost, "/v1/sources", h.keyA, body)
		require.Equal(t, http.StatusForbidden, r.status, string(r.body))
		require.Equal(t, "kind", r.errorOf(t)["field"])
	})
	t.Run("PathsOutsideTheAllowListAreRefused", func(t *testing.T) {
		outside := map[string]any{"account_id": h.accA, "name": "etc", "kind": "directory", "config": map[string]string{"path": "/etc"}}
		r := h.do(t, http.MethodPost, "/v1/sources", h.opKey, outside)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
		e := r.errorOf(t)
		require.Equal(t, "config.path", e["field"])
		require.Contains(t, e["message"], "LEVQOR_BACKUP_PATHS")
		link := filepath.Join(root, "escape")
		require.NoError(t, os.Symlink("/etc", link))
		outside["config"] = map[string]string{"path": link}
		r = h.do(t, http.MethodPost, "/v1/sources", h.opKey, outside)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, "a link out of the allow-list does not pass: %s", r.body)
	})

	var src backups.SourceView
	h.do(t, http.MethodPost, "/v1/sources?wait=15s", h.opKey, dirSource).result(t, http.StatusCreated, &src)
	require.True(t, src.Runnable)
	require.Equal(t, data, src.Config.Path)
	require.Equal(t, backups.DefaultSchedule("starter"), src.Schedule, "the tier's schedule")

	t.Run("ADSNIsStoredButNeverShown", func(t *testing.T) {
		dsn := "postgres://backup:hunter2-secret@db.internal:5432/orders?sslmode=require"
		r := h.do(t, http.MethodPost, "/v1/sources?wait=15s", h.opKey, map[string]any{
			"account_id": h.accA, "name": "orders", "kind": "postgres", "schedule": "0 3 * * *", "config": map[string]string{"dsn": dsn}})
		var pg backups.SourceView
		r.result(t, http.StatusCreated, &pg)
		require.NotContains(t, string(r.body), "hunter2-secret")
		require.Equal(t, "postgres://backup:***@db.internal:5432/orders?sslmode=require", pg.Config.DSN)
		r = h.do(t, http.MethodGet, "/v1/sources/"+pg.ID, h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status)
		require.NotContains(t, string(r.body), "hunter2-secret")
		r = h.do(t, http.MethodGet, "/v1/sources/"+pg.ID+"/audit", h.keyA, nil)
		require.NotContains(t, string(r.body), "hunter2-secret")
		require.NotContains(t, h.logs.String(), "hunter2-secret")
	})

	base := "/v1/sources/" + src.ID
	var run backups.RunView
	r := h.do(t, http.MethodPost, base+"/runs?wait=20s", h.keyA, nil)
	c := r.result(t, http.StatusCreated, &run)
	require.Equal(t, backups.RunID(c.CommandID), r.header.Get(api.HeaderRunID))
	require.Equal(t, store.RunSucceeded, run.State)
	require.NotNil(t, run.Snapshot)
	require.EqualValues(t, len("<h1>hello</h1>")+len("<svg/>"), run.SourceBytes)

	t.Run("ReadTheRun", func(t *testing.T) {
		var got backups.RunView
		r := h.do(t, http.MethodGet, "/v1/runs/"+run.ID, h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		r.json(t, &got)
		require.Equal(t, store.RunSucceeded, got.State)
		require.Equal(t, run.SnapshotID, got.Snapshot.ID)
		require.Equal(t, got.Snapshot.SizeBytes, got.StoredBytes)
		var list api.RunList
		h.do(t, http.MethodGet, base+"/runs", h.keyA, nil).json(t, &list)
		require.Len(t, list.Data, 1)
		require.Equal(t, run.ID, list.Data[0].ID)
	})
	t.Run("AnotherAccountSeesNothing", func(t *testing.T) {
		require.Equal(t, http.StatusNotFound, h.do(t, http.MethodGet, "/v1/runs/"+run.ID, h.keyB, nil).status)
		require.Equal(t, http.StatusNotFound, h.do(t, http.MethodGet, base+"/runs", h.keyB, nil).status)
		require.Equal(t, http.StatusNotFound, h.do(t, http.MethodPost, base+"/runs", h.keyB, nil).status)
		require.Equal(t, http.StatusNotFound, h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/verify", h.keyB, nil).status)
	})
	t.Run("AQueuedRunIsReadFromItsCommand", func(t *testing.T) {
		r := h.do(t, http.MethodGet, "/v1/runs/run_"+strings.Repeat("a", 26), h.keyA, nil)
		require.Equal(t, http.StatusNotFound, r.status)
	})
	t.Run("VerifyOnRequest", func(t *testing.T) {
		var snap store.Snapshot
		h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/verify?wait=20s", h.keyA, nil).result(t, http.StatusOK, &snap)
		require.Equal(t, store.SnapshotVerified, snap.Integrity)
	})
	t.Run("OnlyOperatorsRestore", func(t *testing.T) {
		target := map[string]any{"target_path": filepath.Join(root, "restored")}
		r := h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore", h.keyA, target)
		require.Equal(t, http.StatusForbidden, r.status, string(r.body))
		r = h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore", h.opKey, map[string]any{"target_path": "/tmp/../etc/levqor"})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
		require.Equal(t, "target_path", r.errorOf(t)["field"])
		var res backups.RestoreDataResult
		h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore?wait=20s", h.opKey, target).result(t, http.StatusOK, &res)
		require.Equal(t, 2, res.Files)
		b, err := os.ReadFile(filepath.Join(root, "restored", "img", "logo.svg"))
		require.NoError(t, err)
		require.Equal(t, "<svg/>", string(b))
		r = h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore?wait=20s", h.opKey, target)
		require.Equal(t, http.StatusConflict, r.status, string(r.body))
		require.Equal(t, "target_not_empty", r.command(t).Error.Code)
	})
	t.Run("BrowseAndDownload", func(t *testing.T) {
		files := "/v1/snapshots/" + run.SnapshotID + "/files"
		var root backups.Listing
		h.do(t, http.MethodGet, files, h.keyA, nil).json(t, &root)
		require.Equal(t, []string{"img", "index.html"}, entryNames(root))
		require.Equal(t, "dir", root.Entries[0].Type)
		require.EqualValues(t, len("<h1>hello</h1>"), root.Entries[1].Size)
		var img backups.Listing
		r := h.do(t, http.MethodGet, files+"?path=/img/", h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		r.json(t, &img)
		require.Equal(t, "img", img.Path)
		require.Equal(t, []string{"logo.svg"}, entryNames(img))
		require.Equal(t, "0600", img.Entries[0].Mode)

		for path, want := range map[string][2]any{
			"nope":       {http.StatusNotFound, "path"},
			"../etc":     {http.StatusUnprocessableEntity, "path"},
			"index.html": {http.StatusUnprocessableEntity, "path"},
		} {
			r := h.do(t, http.MethodGet, files+"?path="+url.QueryEscape(path), h.keyA, nil)
			require.Equal(t, want[0], r.status, "%s: %s", path, r.body)
			require.Equal(t, want[1], r.errorOf(t)["field"], path)
		}
		require.Equal(t, http.StatusNotFound, h.do(t, http.MethodGet, files, h.keyB, nil).status, "another account's snapshot is not found")
		require.Equal(t, http.StatusNotFound, h.do(t, http.MethodGet, "/v1/snapshots/"+run.SnapshotID+"/download", h.keyB, nil).status)

		dl := "/v1/snapshots/" + run.SnapshotID + "/download"
		r = h.do(t, http.MethodGet, dl+"?path=index.html", h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, "<h1>hello</h1>", string(r.body))
		require.Equal(t, `attachment; filename=index.html`, r.header.Get("Content-Disposition"))
		require.Equal(t, "application/octet-stream", r.header.Get("Content-Type"))

		r = h.do(t, http.MethodGet, dl+"?path=img", h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		require.Equal(t, "application/x-tar", r.header.Get("Content-Type"))
		require.Equal(t, map[string]string{"img/": "", "img/logo.svg": "<svg/>"}, untar(t, r.body))
		r = h.do(t, http.MethodGet, dl, h.keyA, nil)
		require.Equal(t, map[string]string{"img/": "", "img/logo.svg": "<svg/>", "index.html": "<h1>hello</h1>"}, untar(t, r.body))
	})
	t.Run("APartialRestore", func(t *testing.T) {
		target := filepath.Join(root, "only-img")
		var res backups.RestoreDataResult
		h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore?wait=20s", h.opKey,
			map[string]any{"target_path": target, "include": []string{"img/logo.svg"}}).result(t, http.StatusOK, &res)
		require.Equal(t, 1, res.Files)
		require.Equal(t, []string{"img/logo.svg"}, res.Include)
		_, err := os.Stat(filepath.Join(target, "index.html"))
		require.ErrorIs(t, err, os.ErrNotExist, "only what was included")
		b, err := os.ReadFile(filepath.Join(target, "img", "logo.svg"))
		require.NoError(t, err)
		require.Equal(t, "<svg/>", string(b))

		r := h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore?wait=20s", h.opKey,
			map[string]any{"target_path": filepath.Join(root, "none"), "include": []string{"img/missing.png"}})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
		require.Equal(t, "include", r.command(t).Error.Field)
		r = h.do(t, http.MethodPost, "/v1/snapshots/"+run.SnapshotID+"/restore", h.opKey,
			map[string]any{"target_path": filepath.Join(root, "none"), "include": []string{"img/../../etc"}})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
		require.Equal(t, "include[0]", r.errorOf(t)["field"])
	})
	t.Run("PauseAndResume", func(t *testing.T) {
		var v backups.SourceView
		h.do(t, http.MethodPost, base+"/pause?wait=15s", h.keyA, nil).result(t, http.StatusOK, &v)
		require.NotNil(t, v.PausedAt)
		r := h.do(t, http.MethodPost, base+"/pause?wait=15s", h.keyA, nil)
		require.Equal(t, http.StatusConflict, r.status, string(r.body))
		var resumed backups.SourceView
		h.do(t, http.MethodPost, base+"/resume?wait=15s", h.keyA, nil).result(t, http.StatusOK, &resumed)
		require.Nil(t, resumed.PausedAt)
	})
	t.Run("RecordOnlySourcesDoNotRun", func(t *testing.T) {
		var agent backups.SourceView
		h.do(t, http.MethodPost, "/v1/sources?wait=15s", h.keyA, map[string]string{"name": "s3", "kind": "s3", "schedule": "@daily"}).
			result(t, http.StatusCreated, &agent)
		r := h.do(t, http.MethodPost, "/v1/sources/"+agent.ID+"/runs", h.keyA, nil)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
		require.Equal(t, "not_runnable", r.errorOf(t)["code"])
	})
	t.Run("OnlyOperatorsChangeConfig", func(t *testing.T) {
		r := h.do(t, http.MethodPut, base+"/config", h.keyA, map[string]any{"config": map[string]string{"path": root}})
		require.Equal(t, http.StatusForbidden, r.status, string(r.body))
		var v backups.SourceView
		h.do(t, http.MethodPut, base+"/config?wait=15s", h.opKey, map[string]any{"config": map[string]string{"path": filepath.Join(root, "www", "img")}}).
			result(t, http.StatusOK, &v)
		require.Equal(t, filepath.Join(root, "www", "img"), v.Config.Path)
	})
}
