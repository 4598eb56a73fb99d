package api

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// browser is the snapshot reader, or false after answering 503 when
// ingest has no blob store.
func (s *Server) browser(w http.ResponseWriter) (*backups.Browser, bool) {
	if s.cfg.Browser == nil {
		httpjson.Error(w, http.StatusServiceUnavailable, "blobs_not_configured",
			"browsing and downloading snapshots needs the blob store on ingest: set LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_* as for the workers (read-only access suffices)", "")
		return nil, false
	}
	return s.cfg.Browser, true
}

// browseFailed answers an error of the browser: the client's, or 503.
func (s *Server) browseFailed(w http.ResponseWriter, r *http.Request, err error) {
	var ce *command.Error
	if errors.As(err, &ce) {
		writeError(w, err)
		return
	}
	s.unavailable(w, r, err, "cannot read the snapshot")
}

// browsable is the snapshot of the request, if the key may see it and
// the query holds only path, and the browser to read it; or false after
// answering.
func (s *Server) browsable(w http.ResponseWriter, r *http.Request) (*store.Snapshot, *backups.Browser, bool) {
	snap, ok := s.visibleSnapshot(w, r)
	if !ok || !checkQuery(w, r, "path") {
		return nil, nil, false
	}
	b, ok := s.browser(w)
	return snap, b, ok
}

// listSnapshotFiles serves GET /v1/snapshots/{id}/files?path=…: one
// directory of a snapshot ("" or absent: its root).
func (s *Server) listSnapshotFiles(w http.ResponseWriter, r *http.Request) {
	snap, b, ok := s.browsable(w, r)
	if !ok {
		return
	}
	l, err := b.List(r.Context(), snap, r.URL.Query().Get("path"))
	if err != nil {
		s.browseFailed(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, l)
}

// downloadSnapshot serves GET /v1/snapshots/{id}/download?path=…: a
// file's bytes, or a directory (absent path: the whole snapshot) as a
// tar stream, streamed as it is read and checked.
func (s *Server) downloadSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, b, ok := s.browsable(w, r)
	if !ok {
		return
	}
	d, err := b.Download(r.Context(), snap, r.URL.Query().Get("path"))
	if err != nil {
		s.browseFailed(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", d.ContentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": d.Name}))
	h.Set("X-Content-Type-Options", "nosniff")
	if d.Size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(d.Size, 10))
	}
	// A long download is not cut by the server's write deadline.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	if err := d.Write(r.Context(), w); err != nil {
		s.log.WithFields(logrus.Fields{"snapshot_id": snap.ID, "error": err.Error(), "correlation_id": correlationID(w, r)}).
			Error("a snapshot download stopped part-way")
		// The status is sent: breaking the connection is how the client
		// learns the download is not whole.
		panic(http.ErrAbortHandler)
	}
}
