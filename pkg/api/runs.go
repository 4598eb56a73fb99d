package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// HeaderRunID names the run a POST /v1/sources/{id}/runs queued, so a
// client can follow GET /v1/runs/{id} while the command is running.
const HeaderRunID = "Levqor-Run-Id"

// registerRuns adds the routes of backups that run: runs, pausing, a
// source's config, restores and verification. Changes become backup.*
// commands for backup-cmd.
func (s *Server) registerRuns(handle func(pattern string, h http.Handler)) {
	anyKey := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.AnyKey, f) }
	operator := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.OperatorOnly, f) }
	handle("POST /v1/sources/{id}/runs", anyKey(s.startRun))
	handle("GET /v1/sources/{id}/runs", anyKey(s.listRuns))
	handle("GET /v1/runs/{id}", anyKey(s.getRun))
	handle("POST /v1/sources/{id}/pause", anyKey(s.pauseSource(backups.ActionPause)))
	handle("POST /v1/sources/{id}/resume", anyKey(s.pauseSource(backups.ActionResume)))
	handle("PUT /v1/sources/{id}/config", operator(s.setSourceConfig))
	handle("POST /v1/snapshots/{id}/restore", operator(s.restoreData))
	handle("POST /v1/snapshots/{id}/verify", anyKey(s.verifySnapshot))
}

// RunList is a page of a source's runs, newest first.
type RunList struct {
	Data       []store.BackupRun `json:"data"`
	NextCursor *string           `json:"next_cursor"`
}

// startRun serves POST /v1/sources/{id}/runs: the command backup.run. The
// answer is the command (202); the run's id is in Levqor-Run-Id.
func (s *Server) startRun(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok {
		return
	}
	// The run's id is the command's: name it once Location is known.
	serveCommand(s, &runHeaderWriter{ResponseWriter: w}, r, true, func(struct{}) (commandSpec, error) {
		if !backups.Runs(src) {
			return commandSpec{}, command.Fail(http.StatusUnprocessableEntity, "not_runnable", "id",
				"source "+src.ID+" is a record-only "+src.Kind+" source: an external agent records its snapshots")
		}
		p := backups.RunParams{SourceID: src.ID, Trigger: store.RunManual}
		return commandSpec{backups.RunDomain, backups.ActionRun, src.AccountID, p}, nil
	})
}

// runHeaderWriter adds Levqor-Run-Id from the Location header (the
// command's) before the status is written.
type runHeaderWriter struct {
	http.ResponseWriter
	wrote bool
}

func (rw *runHeaderWriter) WriteHeader(code int) {
	if !rw.wrote {
		rw.wrote = true
		if loc := rw.Header().Get("Location"); loc != "" {
			id := loc[len(commandLocation("")):]
			if command.ValidID(id, command.IDPrefix) {
				rw.Header().Set(HeaderRunID, backups.RunID(id))
			}
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *runHeaderWriter) Write(b []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriter.Write(b)
}

// listRuns serves GET /v1/sources/{id}/runs, newest first.
func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok || !checkQuery(w, r, "limit", "cursor") {
		return
	}
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	p := store.ListRunsParams{SourceID: src.ID, Limit: limit + 1}
	if raw := r.URL.Query().Get("cursor"); raw != "" {
		t, id, err := decodePage(raw, backups.RunIDPrefix)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		p.After = &store.RunCursor{CreatedAt: t, ID: id}
	}
	page, err := s.store.ListRuns(r.Context(), p)
	if err != nil {
		s.unavailable(w, r, err, "cannot list runs")
		return
	}
	out := RunList{Data: page}
	if len(page) > limit {
		out.Data = page[:limit]
		last := out.Data[limit-1]
		next := encodePage(last.CreatedAt, last.ID)
		out.NextCursor = &next
	}
	httpjson.Write(w, http.StatusOK, out)
}

// getRun serves GET /v1/runs/{id}: the run, with its snapshot once it
// succeeded. A run no worker has started yet is answered from its
// command: queued, or failed with the command's error.
func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r) {
		return
	}
	id := r.PathValue("id")
	if !command.ValidID(id, backups.RunIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a run id (run_…)", "id")
		return
	}
	ctx := r.Context()
	run, err := s.store.GetRun(ctx, id)
	switch {
	case err == nil:
		if !principal(r).Sees(run.AccountID) {
			httpjson.Error(w, http.StatusNotFound, "not_found", "no run "+id, "id")
			return
		}
		v := backups.RunView{BackupRun: *run}
		if run.SnapshotID != "" {
			if v.Snapshot, err = s.store.GetSnapshot(ctx, run.SnapshotID); err != nil {
				s.unavailable(w, r, err, "cannot read the run's snapshot")
				return
			}
		}
		httpjson.Write(w, http.StatusOK, v)
		return
	case !errors.Is(err, store.ErrNotFound):
		s.unavailable(w, r, err, "cannot read the run")
		return
	}
	cmd, err := s.store.GetCommand(ctx, backups.CommandOfRun(id))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (!principal(r).Sees(cmd.AccountID) || cmd.Domain != backups.RunDomain || cmd.Action != backups.ActionRun)) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no run "+id, "id")
		return
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the run's command")
		return
	}
	var env command.Envelope
	var p backups.RunParams
	if json.Unmarshal(cmd.Payload, &env) != nil || json.Unmarshal(env.Params, &p) != nil {
		s.unavailable(w, r, errors.New("run command payload does not decode"), "cannot read the run's command")
		return
	}
	v := store.BackupRun{ID: id, AccountID: cmd.AccountID, SourceID: p.SourceID, CommandID: cmd.ID, Trigger: p.Trigger, Slot: p.Slot,
		State: store.RunQueued, CreatedAt: cmd.CreatedAt, UpdatedAt: cmd.UpdatedAt}
	if cmd.Status == store.CommandFailed && cmd.Error != nil {
		v.State, v.Error = store.RunFailed, cmd.Error.Message
	}
	httpjson.Write(w, http.StatusOK, backups.RunView{BackupRun: v})
}

// pauseSource serves POST /v1/sources/{id}/pause and …/resume.
func (s *Server) pauseSource(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		src, ok := s.visibleSource(w, r)
		if !ok {
			return
		}
		serveCommand(s, w, r, true, func(struct{}) (commandSpec, error) {
			return commandSpec{backups.RunDomain, action, src.AccountID, backups.SourceParams{SourceID: src.ID}}, nil
		})
	}
}

// setSourceConfig serves PUT /v1/sources/{id}/config (operators): the
// command backup.set_config.
func (s *Server) setSourceConfig(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body backups.ConfigBody) (commandSpec, error) {
		p := backups.SetConfigParams{SourceID: src.ID, ByOperator: principal(r).Operator, ConfigBody: body}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		cfg, err := backups.ParseConfig(src.Kind, p.Config, s.sweep.AllowedPaths, s.sweep.ProtectedPaths...)
		if err != nil {
			return commandSpec{}, err
		}
		if !backups.Runnable(src.Kind) {
			return commandSpec{}, command.Fail(http.StatusUnprocessableEntity, "not_runnable", "id", "source "+src.ID+" is a record-only "+src.Kind+" source and takes no config")
		}
		if cfg.DSN != "" {
			if cfg.DSN, err = s.sealDSN("config.dsn", cfg.DSN); err != nil {
				return commandSpec{}, err
			}
		}
		if p.Config, err = json.Marshal(cfg); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{backups.RunDomain, backups.ActionSetConfig, src.AccountID, p}, nil
	})
}

// restoreData serves POST /v1/snapshots/{id}/restore (operators): the
// command backup.restore_data.
func (s *Server) restoreData(w http.ResponseWriter, r *http.Request) {
	snap, ok := s.visibleSnapshot(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body backups.RestoreDataBody) (commandSpec, error) {
		body.Normalize()
		p := backups.RestoreDataParams{SnapshotID: snap.ID, ByOperator: principal(r).Operator, RestoreDataBody: body}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		if p.TargetPath != "" {
			clean, err := backups.CheckPath("target_path", p.TargetPath, s.sweep.AllowedPaths, s.sweep.ProtectedPaths...)
			if err != nil {
				return commandSpec{}, err
			}
			p.TargetPath = clean
		}
		if snap.State == store.SnapshotPurging || snap.State == store.SnapshotPurged {
			return commandSpec{}, command.Fail(http.StatusConflict, "snapshot_purged", "id", "snapshot "+snap.ID+" is "+snap.State+": its blob is deleted")
		}
		if p.TargetDSN != "" {
			var err error
			if p.TargetDSN, err = s.sealDSN("target_dsn", p.TargetDSN); err != nil {
				return commandSpec{}, err
			}
		}
		return commandSpec{backups.RunDomain, backups.ActionRestoreData, snap.AccountID, p}, nil
	})
}

// verifySnapshot serves POST /v1/snapshots/{id}/verify: the command
// backup.verify_snapshot, which re-reads the snapshot now.
func (s *Server) verifySnapshot(w http.ResponseWriter, r *http.Request) {
	snap, ok := s.visibleSnapshot(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, true, func(struct{}) (commandSpec, error) {
		return commandSpec{backups.RunDomain, backups.ActionVerifySnapshot, snap.AccountID, backups.SnapshotParams{SnapshotID: snap.ID}}, nil
	})
}
