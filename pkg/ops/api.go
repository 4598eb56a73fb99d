package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/control"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// APIMaxBodyBytes bounds request bodies of the operator API: selections
// and filters, never payloads.
const APIMaxBodyBytes = 256 << 10

// API serves the operator tools over HTTP, the same Ops the CLI uses:
//
//	GET  /admin/consumers        Status
//	GET  /admin/stuck            Stuck             ?consumer=
//	GET  /admin/dlq              ListDLQ           ?consumer= &subject= &since= &until= &reason= &limit=
//	GET  /admin/dlq/{seq}        ShowDLQ
//	POST /admin/dlq/replay       ReplayDLQ         {"seqs":[…]} or {"all":true, filters…}, "dry_run"
//	POST /admin/dlq/purge        PurgeDLQ          same body
//	POST /admin/replay           ReplayWindow      {"consumer","stream","since","until","subject","dry_run","force"}
//	POST /admin/stripe/backfill  Backfill          {"since","dry_run"}
//	GET  /admin/audit            ListAudit         ?action= &actor= &since= &limit=
//	POST /admin/schedule/{job}/backfill          BackfillSchedule   {"since","until"}
//	POST /admin/schedule/{job}/pause|resume      SetJobPaused       {"reason"}
//	POST /admin/consumers/{name}/pause|resume    SetConsumerPaused  {"reason"}
//
// Times are RFC 3339, a date, or a duration ago ("2h"). Errors use the one
// error shape, naming the field at fault.
type API struct {
	ops   *Ops
	actor func(*http.Request) string
	log   logrus.FieldLogger
}

// NewAPI returns the API over o. actor names who makes a request, from
// what the authentication in front of it established; it is what the
// audit trail records.
func NewAPI(o *Ops, actor func(*http.Request) string) *API {
	if actor == nil {
		panic("ops: NewAPI needs an actor function: the audit trail must say who acted")
	}
	return &API{ops: o, actor: actor, log: o.log.WithField("component", "ops_api")}
}

// Register mounts the API with handle (http.ServeMux.Handle, or a
// server's own route recorder), every route behind wrap, which must admit
// operators only.
func (a *API) Register(handle func(pattern string, h http.Handler), wrap func(http.Handler) http.Handler) {
	if wrap == nil {
		panic("ops: Register needs an authorizing wrapper: the operator API must never be public")
	}
	for _, rt := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /admin/consumers", a.status},
		{"GET /admin/stuck", a.stuck},
		{"GET /admin/dlq", a.listDLQ},
		{"GET /admin/dlq/{seq}", a.showDLQ},
		{"POST /admin/dlq/replay", a.replayDLQ},
		{"POST /admin/dlq/purge", a.purgeDLQ},
		{"POST /admin/replay", a.replayWindow},
		{"POST /admin/stripe/backfill", a.backfill},
		{"GET /admin/audit", a.listAudit},
		{"POST /admin/schedule/{job}/backfill", a.backfillSchedule},
		{"POST /admin/schedule/{job}/pause", a.setPaused("job", true)},
		{"POST /admin/schedule/{job}/resume", a.setPaused("job", false)},
		{"POST /admin/consumers/{name}/pause", a.setPaused("consumer", true)},
		{"POST /admin/consumers/{name}/resume", a.setPaused("consumer", false)},
	} {
		handle(rt.pattern, wrap(rt.h))
	}
}

// fail answers err in the error shape.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var inv *InvalidError
	switch {
	case errors.As(err, &inv):
		httpjson.Error(w, http.StatusBadRequest, "invalid_field", inv.Message, inv.Field)
	case errors.Is(err, ErrNotFound):
		httpjson.Error(w, http.StatusNotFound, "not_found", err.Error(), "")
	case r.Context().Err() != nil:
		httpjson.Error(w, http.StatusServiceUnavailable, "cancelled", "request cancelled", "")
	default:
		a.log.WithError(err).WithField("route", r.Pattern).Error("operator request failed")
		httpjson.Error(w, http.StatusInternalServerError, "operation_failed", err.Error(), "")
	}
}

// query reads the allowed query parameters, rejecting unknown ones.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q := r.URL.Query()
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return nil, invalid(k, "unknown query parameter (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

func (a *API) timeParam(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := ParseTime(v, a.ops.now())
	if err != nil {
		return time.Time{}, invalid(field, "%v", err)
	}
	return t, nil
}

func intParam(field, v string, def, max int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, invalid(field, "want an integer from 0 to %d", max)
	}
	return n, nil
}

// decode reads a JSON body into v: bounded, no unknown fields, and errors
// that name the field.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, APIMaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		if dec.More() {
			return invalid("body", "one JSON object expected")
		}
		return nil
	case errors.As(err, &tooBig):
		return &tooLargeError{limit: tooBig.Limit}
	case errors.Is(err, io.EOF):
		return invalid("body", "a JSON object is required")
	case errors.As(err, &typeErr):
		return invalid(typeErr.Field, "want %s", typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalid(field, "unknown field")
	default:
		return invalid("body", "not valid JSON: %v", err)
	}
}

type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string { return fmt.Sprintf("body exceeds %d bytes", e.limit) }

func (a *API) failBody(w http.ResponseWriter, r *http.Request, err error) {
	var big *tooLargeError
	if errors.As(err, &big) {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "payload_too_large", big.Error(), "")
		return
	}
	a.fail(w, r, err)
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		a.fail(w, r, err)
		return
	}
	rep, err := a.ops.Status(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rep)
}

func (a *API) stuck(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "consumer")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	msgs, err := a.ops.Stuck(r.Context(), q.Get("consumer"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"thresholds": a.ops.Thresholds(), "stuck": msgs})
}

func (a *API) dlqFilter(q url.Values) (DLQFilter, error) {
	f := DLQFilter{Consumer: q.Get("consumer"), Subject: q.Get("subject"), Reason: q.Get("reason")}
	var err error
	if f.Since, err = a.timeParam("since", q.Get("since")); err != nil {
		return f, err
	}
	if f.Until, err = a.timeParam("until", q.Get("until")); err != nil {
		return f, err
	}
	return f, f.validate()
}

func (a *API) listDLQ(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "consumer", "subject", "since", "until", "reason", "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, err := a.dlqFilter(q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := intParam("limit", q.Get("limit"), 100, 10000)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	list, err := a.ops.ListDLQ(r.Context(), f, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, list)
}

func (a *API) showDLQ(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		a.fail(w, r, invalid("seq", "want a positive DLQ sequence"))
		return
	}
	d, err := a.ops.ShowDLQ(r.Context(), a.actor(r), seq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, d)
}

// dlqSelectionBody is the body of POST /admin/dlq/replay and purge.
type dlqSelectionBody struct {
	Seqs     []uint64 `json:"seqs"`
	All      bool     `json:"all"`
	Consumer string   `json:"consumer"`
	Subject  string   `json:"subject"`
	Since    string   `json:"since"`
	Until    string   `json:"until"`
	Reason   string   `json:"reason"`
	DryRun   bool     `json:"dry_run"`
	Note     string   `json:"note"`
}

func (a *API) dlqSelection(w http.ResponseWriter, r *http.Request) (DLQSelection, error) {
	var b dlqSelectionBody
	if err := decode(w, r, &b); err != nil {
		return DLQSelection{}, err
	}
	f, err := a.dlqFilter(url.Values{
		"consumer": {b.Consumer}, "subject": {b.Subject}, "reason": {b.Reason},
		"since": {b.Since}, "until": {b.Until},
	})
	if err != nil {
		return DLQSelection{}, err
	}
	s := DLQSelection{Seqs: b.Seqs, All: b.All, Filter: f, DryRun: b.DryRun, Note: strings.TrimSpace(b.Note)}
	return s, s.validate()
}

func (a *API) replayDLQ(w http.ResponseWriter, r *http.Request) {
	s, err := a.dlqSelection(w, r)
	if err != nil {
		a.failBody(w, r, err)
		return
	}
	res, err := a.ops.ReplayDLQ(r.Context(), a.actor(r), s, nil)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, res)
}

func (a *API) purgeDLQ(w http.ResponseWriter, r *http.Request) {
	s, err := a.dlqSelection(w, r)
	if err != nil {
		a.failBody(w, r, err)
		return
	}
	res, err := a.ops.PurgeDLQ(r.Context(), a.actor(r), s, nil)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, res)
}

// windowBody is the body of POST /admin/replay.
type windowBody struct {
	Consumer string `json:"consumer"`
	Stream   string `json:"stream"`
	Since    string `json:"since"`
	Until    string `json:"until"`
	Subject  string `json:"subject"`
	DryRun   bool   `json:"dry_run"`
	Force    bool   `json:"force"`
	Note     string `json:"note"`
}

func (a *API) replayWindow(w http.ResponseWriter, r *http.Request) {
	var b windowBody
	if err := decode(w, r, &b); err != nil {
		a.failBody(w, r, err)
		return
	}
	req := WindowRequest{Consumer: b.Consumer, Stream: b.Stream, Subject: b.Subject, DryRun: b.DryRun, Force: b.Force, Note: strings.TrimSpace(b.Note)}
	if len(req.Note) > 500 {
		a.fail(w, r, invalid("note", "at most 500 characters"))
		return
	}
	var err error
	if req.Since, err = a.timeParam("since", b.Since); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Until, err = a.timeParam("until", b.Until); err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.ops.ReplayWindow(r.Context(), a.actor(r), req, nil)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, res)
}

// backfillBody is the body of POST /admin/stripe/backfill.
type backfillBody struct {
	Since  string `json:"since"`
	DryRun bool   `json:"dry_run"`
}

func (a *API) backfill(w http.ResponseWriter, r *http.Request) {
	var b backfillBody
	if err := decode(w, r, &b); err != nil {
		a.failBody(w, r, err)
		return
	}
	since, err := a.timeParam("since", b.Since)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.ops.Backfill(r.Context(), a.actor(r), BackfillRequest{Since: since, DryRun: b.DryRun}, nil)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, res)
}

// backfillSchedule publishes the past slots of {job} the TICKS stream
// lacks, between since and until (scheduler.Backfill), audited.
func (a *API) backfillSchedule(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Since string `json:"since"`
		Until string `json:"until"`
	}
	if err := decode(w, r, &b); err != nil {
		a.failBody(w, r, err)
		return
	}
	if b.Since == "" {
		a.fail(w, r, invalid("since", "required: the first slot to consider (RFC 3339, a date, or a duration ago)"))
		return
	}
	if b.Until == "" {
		a.fail(w, r, invalid("until", "required: the last slot to consider (RFC 3339, a date, or a duration ago)"))
		return
	}
	since, err := a.timeParam("since", b.Since)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	until, err := a.timeParam("until", b.Until)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.ops.BackfillSchedule(r.Context(), r.PathValue("job"), since, until, a.actor(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, res)
}

// PauseResult answers a pause or a resume.
type PauseResult struct {
	// Key is control's key: "schedule.<job>" or "consumer.<name>".
	Key    string `json:"key"`
	Paused bool   `json:"paused"`
	// Changed is false when it was so already.
	Changed bool `json:"changed"`
}

// setPaused pauses or resumes the job (what "job") or consumer named in
// the path; a pause's body may give {"reason"}.
func (a *API) setPaused(what string, pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Reason string `json:"reason"`
		}
		if r.ContentLength != 0 {
			if err := decode(w, r, &b); err != nil {
				a.failBody(w, r, err)
				return
			}
		}
		var res PauseResult
		var err error
		if what == "job" {
			job := r.PathValue("job")
			res.Key = control.JobKey(job)
			res.Changed, err = a.ops.SetJobPaused(r.Context(), a.ops.jobs(), job, pause, a.actor(r), b.Reason)
		} else {
			name := r.PathValue("name")
			res.Key = control.ConsumerKey(name)
			res.Changed, err = a.ops.SetConsumerPaused(r.Context(), name, pause, a.actor(r), b.Reason)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		res.Paused = pause
		httpjson.Write(w, http.StatusOK, res)
	}
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "action", "actor", "since", "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p := store.ListAuditParams{Action: q.Get("action"), Actor: q.Get("actor")}
	if p.Since, err = a.timeParam("since", q.Get("since")); err != nil {
		a.fail(w, r, err)
		return
	}
	if p.Limit, err = intParam("limit", q.Get("limit"), store.ListAuditLimitDefault, 10000); err != nil {
		a.fail(w, r, err)
		return
	}
	entries, err := a.ops.ListAudit(r.Context(), p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"entries": entries})
}
