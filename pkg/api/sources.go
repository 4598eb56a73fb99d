package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// registerRetention adds the backup-retention routes: sources, their
// snapshots and policies, the dry-run plan, legal holds, the trash, the
// audit trail and sweeps. Reads answer from the database; changes become
// retention.* commands for the backups worker.
func (s *Server) registerRetention(handle func(pattern string, h http.Handler)) {
	anyKey := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.AnyKey, f) }
	handle("POST /v1/sources", anyKey(s.createSource))
	handle("GET /v1/sources", anyKey(s.listSources))
	handle("GET /v1/sources/{id}", anyKey(s.getSource))
	handle("GET /v1/sources/{id}/snapshots", anyKey(s.listSnapshots))
	handle("POST /v1/sources/{id}/snapshots", anyKey(s.recordSnapshot))
	handle("PUT /v1/sources/{id}/policy", anyKey(s.setPolicy))
	handle("POST /v1/sources/{id}/retention/plan", anyKey(s.planRetention))
	handle("POST /v1/sources/{id}/hold", anyKey(s.holdSource(backups.ActionPlaceHold)))
	handle("DELETE /v1/sources/{id}/hold", anyKey(s.holdSource(backups.ActionReleaseHold)))
	handle("GET /v1/sources/{id}/audit", anyKey(s.listAudit))
	handle("GET /v1/sources/{id}/drills", anyKey(s.listDrills))
	handle("POST /v1/sources/{id}/sweep", anyKey(s.sweepSource))
	handle("GET /v1/snapshots/{id}", anyKey(s.getSnapshot))
	handle("GET /v1/snapshots/{id}/files", anyKey(s.listSnapshotFiles))
	handle("GET /v1/snapshots/{id}/download", anyKey(s.downloadSnapshot))
	handle("POST /v1/snapshots/{id}/hold", anyKey(s.holdSnapshot(backups.ActionPlaceHold)))
	handle("DELETE /v1/snapshots/{id}/hold", anyKey(s.holdSnapshot(backups.ActionReleaseHold)))
	handle("POST /v1/snapshots/{id}/restore-from-trash", s.Guard(auth.OperatorOnly, http.HandlerFunc(s.restoreSnapshot)))
	handle("GET /v1/trash", anyKey(s.listTrash))
	s.registerRuns(handle)
}

// SourceList is a page of sources, newest first.
type SourceList struct {
	Data       []backups.SourceView `json:"data"`
	NextCursor *string              `json:"next_cursor"`
}

// SnapshotList is a page of snapshots, newest first by the time they were
// taken.
type SnapshotList struct {
	Data       []store.Snapshot `json:"data"`
	NextCursor *string          `json:"next_cursor"`
}

// AuditList is a page of a source's audit trail, newest first.
type AuditList struct {
	Data       []store.RetentionAudit `json:"data"`
	NextCursor *string                `json:"next_cursor"`
}

// SnapshotView is a snapshot with the active holds that keep it: its own
// and its source's.
type SnapshotView struct {
	store.Snapshot
	Holds []store.LegalHold `json:"holds"`
}

// OriginPreview is the policy origin of a dry run given a policy to try.
const OriginPreview = "preview"

// planRequest is the optional body of POST /v1/sources/{id}/retention/plan.
type planRequest struct {
	// Policy, when set, is tried instead of the source's own: what would
	// this policy remove? It must be within the tier's limits, as a policy
	// set with PUT …/policy must.
	Policy json.RawMessage `json:"policy,omitempty"`
}

// createSource serves POST /v1/sources: the command
// retention.create_source.
func (s *Server) createSource(w http.ResponseWriter, r *http.Request) {
	serveCommand(s, w, r, false, func(p backups.CreateSourceParams) (commandSpec, error) {
		p.Normalize()
		p.ByOperator = principal(r).Operator
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		cfg, err := backups.ParseConfig(p.Kind, p.Config, s.sweep.AllowedPaths, s.sweep.ProtectedPaths...)
		if err != nil {
			return commandSpec{}, err
		}
		if cfg.DSN != "" {
			if cfg.DSN, err = s.sealDSN("config.dsn", cfg.DSN); err != nil {
				return commandSpec{}, err
			}
			if p.Config, err = json.Marshal(cfg); err != nil {
				return commandSpec{}, err
			}
		}
		acc, ok := s.requestAccount(w, r, p.AccountID)
		if !ok {
			return commandSpec{}, errAnswered
		}
		p.AccountID = acc.ID
		if p.Policy != nil && !s.checkPolicy(w, acc, p.Policy) {
			return commandSpec{}, errAnswered
		}
		return commandSpec{backups.Domain, backups.ActionCreateSource, acc.ID, p}, nil
	})
}

// listSources serves GET /v1/sources: an account's own sources; operators
// see every account's, or one account's with ?account_id=.
func (s *Server) listSources(w http.ResponseWriter, r *http.Request) {
	accountID, limit, ok := s.listScope(w, r, "cursor")
	if !ok {
		return
	}
	var after *store.SourceCursor
	if raw := r.URL.Query().Get("cursor"); raw != "" {
		t, id, err := decodePage(raw, backups.SourceIDPrefix)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		after = &store.SourceCursor{CreatedAt: t, ID: id}
	}
	page, err := s.store.ListSources(r.Context(), store.ListSourcesParams{AccountID: accountID, Limit: limit + 1, After: after})
	if err != nil {
		s.unavailable(w, r, err, "cannot list sources")
		return
	}
	out := SourceList{Data: []backups.SourceView{}}
	if len(page) > limit {
		page = page[:limit]
		last := page[limit-1]
		next := encodePage(last.CreatedAt, last.ID)
		out.NextCursor = &next
	}
	accs := map[string]*store.Account{}
	for i := range page {
		acc, ok := accs[page[i].AccountID]
		if !ok {
			if acc, err = s.store.GetAccount(r.Context(), page[i].AccountID); err != nil {
				s.unavailable(w, r, err, "cannot read the account")
				return
			}
			accs[acc.ID] = acc
		}
		v, err := backups.NewSourceView(&page[i], acc)
		if err != nil {
			s.unavailable(w, r, err, "cannot read the source's policy")
			return
		}
		out.Data = append(out.Data, v)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// getSource serves GET /v1/sources/{id}: the source, its effective policy,
// its snapshot counts by state and its active holds.
func (s *Server) getSource(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok || !checkQuery(w, r) {
		return
	}
	ctx := r.Context()
	acc, err := s.store.GetAccount(ctx, src.AccountID)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return
	}
	v, err := backups.NewSourceView(src, acc)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the source's policy")
		return
	}
	if v.Snapshots, err = s.store.SnapshotTallies(ctx, src.ID); err != nil {
		s.unavailable(w, r, err, "cannot count snapshots")
		return
	}
	if v.Holds, err = s.store.SourceHolds(ctx, src.ID); err != nil {
		s.unavailable(w, r, err, "cannot read holds")
		return
	}
	httpjson.Write(w, http.StatusOK, v)
}

// listSnapshots serves GET /v1/sources/{id}/snapshots, newest first;
// ?state= keeps the given states (comma-separated).
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok || !checkQuery(w, r, "limit", "cursor", "state") {
		return
	}
	states, ok := parseStates(w, r)
	if !ok {
		return
	}
	s.snapshotPage(w, r, store.ListSnapshotsParams{SourceID: src.ID, States: states})
}

// listTrash serves GET /v1/trash: the snapshots in the trash, restorable
// by an operator until their purge_after time. Account keys see their own;
// operators every account's, or one's with ?account_id=.
func (s *Server) listTrash(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "limit", "cursor", "account_id") {
		return
	}
	accountID, ok := s.listAccount(w, r)
	if !ok {
		return
	}
	s.snapshotPage(w, r, store.ListSnapshotsParams{AccountID: accountID, States: []string{store.SnapshotTrash}})
}

func (s *Server) snapshotPage(w http.ResponseWriter, r *http.Request, p store.ListSnapshotsParams) {
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	if raw := r.URL.Query().Get("cursor"); raw != "" {
		t, id, err := decodePage(raw, backups.SnapshotIDPrefix)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		p.After = &store.SnapshotCursor{TakenAt: t, ID: id}
	}
	p.Limit = limit + 1
	page, err := s.store.ListSnapshots(r.Context(), p)
	if err != nil {
		s.unavailable(w, r, err, "cannot list snapshots")
		return
	}
	out := SnapshotList{Data: page}
	if len(page) > limit {
		out.Data = page[:limit]
		last := out.Data[limit-1]
		next := encodePage(last.TakenAt, last.ID)
		out.NextCursor = &next
	}
	httpjson.Write(w, http.StatusOK, out)
}

// getSnapshot serves GET /v1/snapshots/{id}.
func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, ok := s.visibleSnapshot(w, r)
	if !ok || !checkQuery(w, r) {
		return
	}
	holds, err := s.store.SourceHolds(r.Context(), snap.SourceID)
	if err != nil {
		s.unavailable(w, r, err, "cannot read holds")
		return
	}
	v := SnapshotView{Snapshot: *snap, Holds: []store.LegalHold{}}
	for _, h := range holds {
		if h.SnapshotID == "" || h.SnapshotID == snap.ID {
			v.Holds = append(v.Holds, h)
		}
	}
	httpjson.Write(w, http.StatusOK, v)
}

// recordSnapshot serves POST /v1/sources/{id}/snapshots: the command
// retention.record_snapshot.
func (s *Server) recordSnapshot(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body backups.SnapshotBody) (commandSpec, error) {
		body.Normalize()
		p := backups.RecordSnapshotParams{SourceID: src.ID, SnapshotBody: body}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		if p.BlobKey != "" && !strings.HasPrefix(p.BlobKey, src.AccountID+"/") {
			return commandSpec{}, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "blob_key",
				fmt.Sprintf("blob_key must be under the account's own prefix %s/", src.AccountID))
		}
		return commandSpec{backups.Domain, backups.ActionRecordSnapshot, src.AccountID, p}, nil
	})
}

// setPolicy serves PUT /v1/sources/{id}/policy: the command
// retention.set_policy.
func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body backups.PolicyBody) (commandSpec, error) {
		p := backups.SetPolicyParams{SourceID: src.ID, PolicyBody: body}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		if !isJSONNull(p.Policy) {
			acc, err := s.store.GetAccount(r.Context(), src.AccountID)
			if err != nil {
				s.unavailable(w, r, err, "cannot read the account")
				return commandSpec{}, errAnswered
			}
			if !s.checkPolicy(w, acc, p.Policy) {
				return commandSpec{}, errAnswered
			}
		}
		return commandSpec{backups.Domain, backups.ActionSetPolicy, src.AccountID, p}, nil
	})
}

// planRetention serves POST /v1/sources/{id}/retention/plan: the dry run
// of a sweep now, computed from the database with the sweep's own rules
// (backups.Decide). It changes nothing: a read that needs a body.
func (s *Server) planRetention(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok || !checkQuery(w, r, "limit", "offset") {
		return
	}
	limit, offset, ok := planWindow(w, r)
	if !ok {
		return
	}
	var req planRequest
	if !s.readOptionalJSON(w, r, &req) {
		return
	}
	ctx := r.Context()
	acc, err := s.store.GetAccount(ctx, src.AccountID)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return
	}
	in := backups.DecideInput{Source: src, Account: acc, Now: s.now().UTC().Truncate(time.Second), MaxShare: s.sweep.MaxShare}
	if req.Policy != nil && !isJSONNull(req.Policy) {
		p, err := backups.ParsePolicy(req.Policy)
		if err != nil {
			writeError(w, err)
			return
		}
		if !s.checkPolicy(w, acc, req.Policy) {
			return
		}
		ent, _ := backups.Entitlements(acc.Entitlements)
		in.Policy = &backups.Effective{Policy: p, Origin: OriginPreview, Tier: ent.Tier}
	}
	if in.Snapshots, err = s.store.SourceSnapshots(ctx, src.ID, store.SnapshotActive, store.SnapshotTrash, store.SnapshotPurging); err != nil {
		s.unavailable(w, r, err, "cannot list snapshots")
		return
	}
	if in.Holds, err = s.store.SourceHolds(ctx, src.ID); err != nil {
		s.unavailable(w, r, err, "cannot read holds")
		return
	}
	plan, err := backups.Decide(in)
	if err != nil {
		s.unavailable(w, r, err, "cannot plan the sweep")
		return
	}
	out := PlanPage{Plan: *plan}
	out.Snapshots, out.NextOffset = window(plan.Snapshots, offset, limit)
	var purgeNext *int
	out.Purge, purgeNext = window(plan.Purge, offset, limit)
	if purgeNext != nil && (out.NextOffset == nil || *purgeNext > *out.NextOffset) {
		out.NextOffset = purgeNext
	}
	httpjson.Write(w, http.StatusOK, out)
}

// PlanPage is a retention plan with its snapshot lists cut to one page
// (?offset=, ?limit=): a source may hold thousands. Counts stay whole;
// NextOffset, when set, is where the next page starts.
type PlanPage struct {
	backups.Plan
	NextOffset *int `json:"next_offset,omitempty"`
}

// PlanPageMax is the most entries of each list a plan page holds, and its
// default size.
const PlanPageMax = 1000

// planWindow reads ?limit= (1 to PlanPageMax) and ?offset= (0 or more),
// answering the error itself.
func planWindow(w http.ResponseWriter, r *http.Request) (limit, offset int, ok bool) {
	q := r.URL.Query()
	limit = PlanPageMax
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > PlanPageMax {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "limit must be 1 to "+strconv.Itoa(PlanPageMax), "limit")
			return 0, 0, false
		}
		limit = n
	}
	if raw := q.Get("offset"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "offset must be 0 or more", "offset")
			return 0, 0, false
		}
		offset = n
	}
	return limit, offset, true
}

// window returns list[offset:offset+limit] and the offset after it when
// the list goes on.
func window(list []backups.PlanEntry, offset, limit int) ([]backups.PlanEntry, *int) {
	if offset == 0 && len(list) <= limit {
		return list, nil // the whole list, as Decide made it
	}
	out := []backups.PlanEntry{}
	if offset < len(list) {
		out = list[offset:min(len(list), offset+limit)]
	}
	if offset+limit < len(list) {
		next := offset + limit
		return out, &next
	}
	return out, nil
}

// holdSource serves POST and DELETE /v1/sources/{id}/hold: the commands
// retention.place_hold and retention.release_hold on a whole source.
func (s *Server) holdSource(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		src, ok := s.visibleSource(w, r)
		if !ok {
			return
		}
		s.hold(w, r, action, backups.TargetSource, src.ID, src.AccountID)
	}
}

// holdSnapshot serves POST and DELETE /v1/snapshots/{id}/hold.
func (s *Server) holdSnapshot(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		snap, ok := s.visibleSnapshot(w, r)
		if !ok {
			return
		}
		s.hold(w, r, action, backups.TargetSnapshot, snap.ID, snap.AccountID)
	}
}

func (s *Server) hold(w http.ResponseWriter, r *http.Request, action, target, id, accountID string) {
	placing := action == backups.ActionPlaceHold
	serveCommand(s, w, r, !placing, func(body backups.HoldBody) (commandSpec, error) {
		body.Reason = strings.TrimSpace(body.Reason)
		p := backups.HoldParams{Target: target, ID: id, ByOperator: principal(r).Operator, HoldBody: body}
		if err := p.Validate(placing); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{backups.Domain, action, accountID, p}, nil
	})
}

// restoreSnapshot serves POST /v1/snapshots/{id}/restore-from-trash
// (operators): the command retention.restore_snapshot, which brings the
// snapshot back and holds it so the next sweep does not trash it again.
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, ok := s.visibleSnapshot(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body backups.RestoreBody) (commandSpec, error) {
		body.Reason = strings.TrimSpace(body.Reason)
		p := backups.RestoreParams{SnapshotID: snap.ID, ByOperator: principal(r).Operator, RestoreBody: body}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{backups.Domain, backups.ActionRestore, snap.AccountID, p}, nil
	})
}

// sweepSource serves POST /v1/sources/{id}/sweep: the command
// retention.sweep, now, optionally as a dry run.
func (s *Server) sweepSource(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, true, func(body backups.SweepBody) (commandSpec, error) {
		p := backups.SweepParams{SourceID: src.ID, ByOperator: principal(r).Operator, SweepBody: body}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{backups.Domain, backups.ActionSweep, src.AccountID, p}, nil
	})
}

// listAudit serves GET /v1/sources/{id}/audit: every retention decision
// about the source, newest first; ?snapshot_id= keeps one snapshot's.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok || !checkQuery(w, r, "limit", "cursor", "snapshot_id") {
		return
	}
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	p := store.ListRetentionAuditParams{SourceID: src.ID, Limit: limit + 1, SnapshotID: q.Get("snapshot_id")}
	if p.SnapshotID != "" && !command.ValidID(p.SnapshotID, backups.SnapshotIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "snapshot_id must be a snapshot id (snap_…)", "snapshot_id")
		return
	}
	if raw := q.Get("cursor"); raw != "" {
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || id <= 0 {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		p.BeforeID = id
	}
	page, err := s.store.ListRetentionAudit(r.Context(), p)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the audit trail")
		return
	}
	out := AuditList{Data: page}
	if len(page) > limit {
		out.Data = page[:limit]
		next := strconv.FormatInt(out.Data[limit-1].ID, 10)
		out.NextCursor = &next
	}
	httpjson.Write(w, http.StatusOK, out)
}

// commandRequest reads what every change request may carry: ?wait= and
// Idempotency-Key. It answers the error itself.
func (s *Server) commandRequest(w http.ResponseWriter, r *http.Request) (submission, bool) {
	if !checkQuery(w, r, "wait") {
		return submission{}, false
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return submission{}, false
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return submission{}, false
	}
	return submission{idempotencyKey: key, wait: wait}, true
}

// visibleSource returns the source of the path's {id} if the caller may
// see it. Another account's source answers 404 exactly as an unknown one.
func (s *Server) visibleSource(w http.ResponseWriter, r *http.Request) (*store.BackupSource, bool) {
	id := r.PathValue("id")
	if !command.ValidID(id, backups.SourceIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a source id (src_…)", "id")
		return nil, false
	}
	src, err := s.store.GetSource(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !principal(r).Sees(src.AccountID)) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no source "+id, "id")
		return nil, false
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the source")
		return nil, false
	}
	return src, true
}

// visibleSnapshot is visibleSource for /v1/snapshots/{id}.
func (s *Server) visibleSnapshot(w http.ResponseWriter, r *http.Request) (*store.Snapshot, bool) {
	id := r.PathValue("id")
	if !command.ValidID(id, backups.SnapshotIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a snapshot id (snap_…)", "id")
		return nil, false
	}
	snap, err := s.store.GetSnapshot(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !principal(r).Sees(snap.AccountID)) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no snapshot "+id, "id")
		return nil, false
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the snapshot")
		return nil, false
	}
	return snap, true
}

// requestAccount resolves the account_id of a body: operators must name
// one; an account key may leave it out or name its own. Another account's
// id answers 404 exactly as an unknown one does.
func (s *Server) requestAccount(w http.ResponseWriter, r *http.Request, id string) (*store.Account, bool) {
	p := principal(r)
	if id == "" {
		if p.Operator {
			writeError(w, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "account_id",
				"account_id is required with an operator key: the account it belongs to (acc_…)"))
			return nil, false
		}
		id = p.AccountID
	}
	if !p.Sees(id) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no account "+id, "account_id")
		return nil, false
	}
	acc, err := s.store.GetAccount(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no account "+id, "account_id")
		return nil, false
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return nil, false
	}
	return acc, true
}

// listScope reads what every list takes, after checking that the query
// holds only account_id, limit and the names in more: the account the list
// is restricted to (listAccount) and the page size. It has answered the
// request when ok is false.
func (s *Server) listScope(w http.ResponseWriter, r *http.Request, more ...string) (accountID string, limit int, ok bool) {
	if !checkQuery(w, r, append([]string{"limit", "account_id"}, more...)...) {
		return "", 0, false
	}
	if accountID, ok = s.listAccount(w, r); !ok {
		return "", 0, false
	}
	if limit, ok = pageLimit(w, r); !ok {
		return "", 0, false
	}
	return accountID, limit, true
}

// listAccount is the account a list is restricted to: an account key's
// own; for operators, ?account_id= or "" (every account).
func (s *Server) listAccount(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := principal(r)
	id := r.URL.Query().Get("account_id")
	if id != "" && !command.ValidID(id, store.AccountIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "account_id must be an account id (acc_…)", "account_id")
		return "", false
	}
	if !p.Operator {
		if p.AccountID == "" {
			// "" would mean every account: a key that names no account
			// and is no operator's sees nothing rather than everything.
			httpjson.Error(w, http.StatusForbidden, "forbidden", "this key belongs to no account", "")
			return "", false
		}
		if id != "" && id != p.AccountID {
			httpjson.Error(w, http.StatusNotFound, "not_found", "no account "+id, "account_id")
			return "", false
		}
		return p.AccountID, true
	}
	return id, true
}

// checkPolicy answers 422 naming the rule when raw is not a policy within
// the account's tier's limits; the worker checks again.
func (s *Server) checkPolicy(w http.ResponseWriter, acc *store.Account, raw json.RawMessage) bool {
	p, err := backups.ParsePolicy(raw)
	if err != nil {
		writeError(w, err)
		return false
	}
	ent, err := backups.Entitlements(acc.Entitlements)
	if err != nil {
		writeError(w, err)
		return false
	}
	if fe := backups.CheckWithin(p, ent.Retention, ent.Tier); fe != nil {
		field := "policy"
		if fe.Field != "" {
			field += "." + fe.Field
		}
		writeError(w, command.Fail(http.StatusUnprocessableEntity, "invalid_field", field, fe.Message))
		return false
	}
	return true
}

// readOptionalJSON is readJSON for a body that may be left out: an empty
// body leaves v as it is; anything else must be a JSON object.
func (s *Server) readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &DecodeError{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large",
				Message: fmt.Sprintf("the request body exceeds %d bytes", s.cfg.MaxBodyBytes)})
			return false
		}
		writeError(w, &DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Message: "could not read the request body"})
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, &DecodeError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type",
			Message: "send the body as JSON with Content-Type: application/json"})
		return false
	}
	if err := DecodeJSON(body, v); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// pageLimit reads ?limit=, 1 to PageLimitMax (default PageLimitDefault).
func pageLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	raw := r.URL.Query().Get("limit")
	if raw == "" {
		return PageLimitDefault, true
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > PageLimitMax {
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", fmt.Sprintf("limit must be an integer from 1 to %d", PageLimitMax), "limit")
		return 0, false
	}
	return n, true
}

// parseStates reads ?state=, comma-separated snapshot states.
func parseStates(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	raw := r.URL.Query().Get("state")
	if raw == "" {
		return nil, true
	}
	var out []string
	for _, st := range strings.Split(raw, ",") {
		st = strings.TrimSpace(st)
		known := false
		for _, k := range store.SnapshotStates {
			known = known || st == k
		}
		if !known {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter",
				fmt.Sprintf("state %s is not one of %s", quote(st), strings.Join(store.SnapshotStates, ", ")), "state")
			return nil, false
		}
		out = append(out, st)
	}
	return out, true
}

// pageCursor is the opaque position of a page of sources or snapshots:
// base64url of this JSON.
type pageCursor struct {
	At time.Time `json:"t"`
	ID string    `json:"id"`
}

func encodePage(t time.Time, id string) string {
	b, _ := json.Marshal(pageCursor{At: t.UTC(), ID: id})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePage(s, prefix string) (time.Time, string, error) {
	if len(s) > 256 {
		return time.Time{}, "", errors.New("cursor too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", err
	}
	var c pageCursor
	if err := DecodeJSON(b, &c); err != nil {
		return time.Time{}, "", err
	}
	if c.At.IsZero() || !command.ValidID(c.ID, prefix) {
		return time.Time{}, "", errors.New("incomplete cursor")
	}
	return c.At, c.ID, nil
}

func isJSONNull(raw json.RawMessage) bool {
	return strings.TrimSpace(string(raw)) == "null"
}

// DrillList is a source's restore drill reports, newest first.
type DrillList struct {
	Data []store.Drill `json:"data"`
}

// listDrills serves GET /v1/sources/{id}/drills: what backup.restore_drill
// restored of the source, and how it went.
func (s *Server) listDrills(w http.ResponseWriter, r *http.Request) {
	src, ok := s.visibleSource(w, r)
	if !ok || !checkQuery(w, r, "limit") {
		return
	}
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	list, err := s.store.ListDrills(r.Context(), src.ID, limit)
	if err != nil {
		s.unavailable(w, r, err, "cannot list drills")
		return
	}
	httpjson.Write(w, http.StatusOK, DrillList{Data: list})
}

// sealDSN seals dsn, which the caller validated, for the command that
// carries it; a client's DSN that claims to be sealed already is
// refused: only Levqor seals.
func (s *Server) sealDSN(field, dsn string) (string, error) {
	if keys.IsSealed(dsn) {
		return "", command.Fail(http.StatusUnprocessableEntity, "invalid_parameter", field, field+" must be a URL postgres://user:password@host:5432/database")
	}
	if s.cfg.Sealer == nil {
		return dsn, nil
	}
	return s.cfg.Sealer.Seal(dsn, backups.RedactDSN(dsn))
}
