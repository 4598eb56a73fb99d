package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
)

// CommandView is the API's representation of a command: what GET
// /v1/commands/{id} answers, and what a change request answers with 202,
// or with the command's own status once it has an outcome (?wait=).
type CommandView struct {
	// CommandID is "cmd_…".
	CommandID string `json:"command_id"`
	// Status is queued, running, succeeded or failed.
	Status string `json:"status"`
	// Type is "<domain>.<action>", e.g. accounts.create.
	Type string `json:"type"`
	// AccountID is the account the command concerns, if any.
	AccountID string `json:"account_id,omitempty"`
	// HTTPStatus is the status of the outcome (201, 422, …), once there is
	// one.
	HTTPStatus int `json:"http_status,omitempty"`
	// Result is the outcome of a succeeded command, e.g. the account.
	Result json.RawMessage `json:"result,omitempty"`
	// Error says why a failed command failed.
	Error *httpjson.ErrorDetail `json:"error,omitempty"`
	// Secret is the secret the command gives its caller (a webhook
	// endpoint's signing secret): only in the answer to the request that
	// made the command, never stored with it, and never once it failed.
	Secret string `json:"secret,omitempty"`
	// CreatedAt and UpdatedAt are when the command was accepted and when
	// its status last changed.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewOf(c *store.Command) CommandView {
	v := CommandView{
		CommandID: c.ID, Status: c.Status, Type: c.Domain + "." + c.Action, AccountID: c.AccountID,
		HTTPStatus: c.HTTPStatus, Result: c.Result, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
	}
	if c.Error != nil {
		v.Error = &httpjson.ErrorDetail{Code: c.Error.Code, Message: c.Error.Message, Field: c.Error.Field}
	}
	return v
}

// commandLocation is where a command can be read.
func commandLocation(id string) string { return "/v1/commands/" + id }

// submission is a validated change request.
type submission struct {
	domain, action string
	// accountID is the tenant concerned; "" for none yet.
	accountID string
	params    any
	// idempotencyKey is the client's Idempotency-Key, "" if none.
	idempotencyKey string
	// wait is how long the client will wait for the outcome; 0: not at all.
	wait time.Duration
	// reveal, when set, gives the secret the answer shows.
	reveal revealing
}

// revealing is how a command's answer shows a secret.
type revealing struct {
	// secret gives the secret from the command, as recorded; nil shows
	// none.
	secret func(cmd *store.Command) string
	// identity, when set, stands for the params in the request hash: what
	// makes two requests the same when the params also hold what the API
	// computed (the generation a rotation makes), so that a retry with the
	// same Idempotency-Key finds the first request's command.
	identity any
}

// idempotencyScope is whose key space an Idempotency-Key lives in: each
// account has its own, and operators share one.
func idempotencyScope(p auth.Principal) string {
	if p.Operator {
		return "operator"
	}
	return "account:" + p.AccountID
}

// requestHash identifies a request's content: the same command with the
// same normalized parameters on the same account.
func requestHash(domain, action, accountID string, params []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(domain), []byte(action), []byte(accountID), params} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// parseWait reads ?wait=, a Go duration ("10s", "1500ms") or whole
// seconds ("10"), at most WaitMax. It answers the error itself.
func parseWait(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	raw := r.URL.Query().Get("wait")
	if raw == "" {
		return 0, true
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		n, nerr := strconv.Atoi(raw)
		if nerr != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "wait must be a duration such as 10s", "wait")
			return 0, false
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > WaitMax {
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "wait must be more than 0 and at most 30s", "wait")
		return 0, false
	}
	return d, true
}

// idempotencyKey reads the Idempotency-Key header: at most 255 printable
// ASCII characters. It answers the error itself.
func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", true
	}
	k := vals[0]
	bad := len(vals) > 1 || k == "" || len(k) > IdempotencyKeyMaxLength ||
		strings.IndexFunc(k, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0
	if bad {
		httpjson.Error(w, http.StatusBadRequest, "invalid_header",
			"Idempotency-Key must be one value of 1 to 255 printable ASCII characters without spaces", "Idempotency-Key")
		return "", false
	}
	return k, true
}

// submit records the command, publishes it and answers: 202 with the
// command, or its outcome if the client waits and it finishes in time. A
// repeated Idempotency-Key answers the command it first made (republishing
// it if it never reached JetStream); with another body, 409.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, sub submission) {
	cmd, wt, ok := s.queue(w, r, sub)
	if !ok {
		return
	}
	defer wt.close()
	s.answer(w, r, cmd, wt, sub.wait, sub.reveal.secret)
}

// queue records the command and publishes it, as submit does, and
// returns it with its watch when sub waits. When it reports false, it
// has answered the error itself.
func (s *Server) queue(w http.ResponseWriter, r *http.Request, sub submission) (*store.Command, *watch, bool) {
	ctx := r.Context()
	p := principal(r)
	var refused *command.Error
	if err := s.checkSuspension(ctx, p, sub); errors.As(err, &refused) {
		writeError(w, refused)
		return nil, nil, false
	} else if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return nil, nil, false
	}
	params, err := json.Marshal(sub.params)
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	id, err := command.NewID(command.IDPrefix)
	if err != nil {
		s.unavailable(w, r, err, "cannot create a command id")
		return nil, nil, false
	}
	now := s.now().UTC()
	env := command.Envelope{
		ID: id, Domain: sub.domain, Action: sub.action, AccountID: sub.accountID,
		KeyID: p.KeyID, Params: params, CreatedAt: now,
	}
	payload, err := json.Marshal(env)
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	hashed := params
	if sub.reveal.identity != nil {
		if hashed, err = json.Marshal(sub.reveal.identity); err != nil {
			writeError(w, err)
			return nil, nil, false
		}
	}
	hash := requestHash(sub.domain, sub.action, sub.accountID, hashed)
	cmd, created, err := s.store.CreateCommand(ctx, store.Command{
		ID: id, Scope: idempotencyScope(p), AccountID: sub.accountID, Domain: sub.domain, Action: sub.action,
		IdempotencyKey: sub.idempotencyKey, RequestHash: hash, Payload: payload, CreatedAt: now,
	})
	if err != nil {
		s.unavailable(w, r, err, "cannot record the command")
		return nil, nil, false
	}
	log := s.log.WithFields(logrus.Fields{
		"command_id": cmd.ID, "command": sub.domain + "." + sub.action, "key_id": p.KeyID,
		"correlation_id": correlationID(w, r),
	})
	if sub.accountID != "" {
		log = log.WithField("account_id", sub.accountID)
	}
	if created && p.Operator {
		// What operators change through the API shows in `levqor audit`
		// beside what they do with the CLI. The commands row above is
		// already a durable record of the request, so a failure to write
		// the trail is logged (by ops.Audit) and does not refuse the
		// command.
		details := map[string]any{"command_id": cmd.ID, "account_id": sub.accountID}
		var said struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(params, &said) == nil && said.Reason != "" {
			details["reason"] = said.Reason // why, as the operator gave it
		}
		_ = ops.Audit(ctx, s.store, log, now, p.Actor(), ops.ActionCommandPrefix+sub.domain+"."+sub.action,
			details, map[string]any{}, store.AuditOutcomeAccepted)
	}
	publish := created
	if !created {
		if cmd.RequestHash != hash {
			httpjson.Error(w, http.StatusConflict, "idempotency_key_reused",
				"this Idempotency-Key was used for a different request ("+cmd.ID+")", "Idempotency-Key")
			return nil, nil, false
		}
		w.Header().Set("Idempotent-Replayed", "true")
		switch {
		case cmd.Status == store.CommandQueued:
			// Maybe the first attempt never got to publish: publishing
			// again is safe, JetStream drops it if it did.
			publish = true
		case cmd.Status == store.CommandFailed && cmd.Error != nil && cmd.Error.Code == store.CommandErrorPublishFailed:
			if _, err := s.store.RequeueCommand(ctx, cmd.ID, now); err != nil {
				s.unavailable(w, r, err, "cannot requeue the command")
				return nil, nil, false
			}
			publish = true
		}
	}
	var wt *watch
	if sub.wait > 0 {
		wt = s.watch(cmd.ID)
	}
	if publish {
		if err := s.publish(ctx, w, r, cmd); err != nil {
			log.WithError(err).Error("command publish failed; answering 503")
			if _, ferr := s.store.FailUnpublishedCommand(context.WithoutCancel(ctx), cmd.ID, s.now()); ferr != nil {
				log.WithError(ferr).Error("could not mark the unpublished command failed")
			}
			w.Header().Set("Retry-After", "5")
			w.Header().Set("Location", commandLocation(cmd.ID))
			wt.close()
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable",
				"the command could not be queued; retry with the same Idempotency-Key", "")
			return nil, nil, false
		}
		log.Info("command queued")
	}
	return cmd, wt, true
}

// publish sends the command's stored payload to JetStream with the command
// id as dedupe id.
func (s *Server) publish(ctx context.Context, w http.ResponseWriter, r *http.Request, cmd *store.Command) error {
	h := nats.Header{}
	if c := correlationID(w, r); c != "" {
		h.Set(bus.HeaderCorrelationID, c)
	} else {
		h.Set(bus.HeaderCorrelationID, cmd.ID)
	}
	if cmd.AccountID != "" {
		h.Set(bus.HeaderAccount, cmd.AccountID)
	}
	subject := s.pub.Topology().Subject(bus.Commands, cmd.Domain+"."+cmd.Action)
	_, err := s.pub.Publish(ctx, subject, cmd.ID, h, cmd.Payload)
	return err
}

// answer writes cmd's view: at once with 202 (or 200 for a GET) when the
// client does not wait; otherwise after the command has an outcome, with
// the outcome's status, or with 202 at the deadline. secret, when set,
// gives the view's Secret unless the command failed.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, cmd *store.Command, wt *watch, wait time.Duration, secret func(*store.Command) string) {
	w.Header().Set("Location", commandLocation(cmd.ID))
	view := func(c *store.Command) CommandView {
		v := viewOf(c)
		if secret != nil && c.Status != store.CommandFailed {
			v.Secret = secret(c)
			w.Header().Set("Cache-Control", "no-store")
		}
		return v
	}
	if wait > 0 {
		final, err := s.await(r.Context(), wt, cmd.ID, wait)
		if err != nil {
			s.unavailable(w, r, err, "cannot read the command")
			return
		}
		if !final.Pending() {
			status := final.HTTPStatus
			if status == 0 {
				status = http.StatusOK // every outcome records one; never write 0
			}
			httpjson.Write(w, status, view(final))
			return
		}
		cmd = final
	}
	status := http.StatusAccepted
	if r.Method == http.MethodGet {
		status = http.StatusOK
		if wait > 0 {
			status = http.StatusAccepted // still pending at the deadline
		}
	}
	httpjson.Write(w, status, view(cmd))
}

// watch is a subscription to one command's notification, made before the
// command's state is read so that no notification falls between the two.
type watch struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// watch subscribes to command id's notification and makes sure the server
// has the subscription. Without NATS it returns nil: the request then
// answers without waiting.
func (s *Server) watch(id string) *watch {
	if s.nc == nil {
		return nil
	}
	ch := make(chan *nats.Msg, 1)
	sub, err := s.nc.ChanSubscribe(command.NotifySubject(s.pub.Topology().Prefix, id), ch)
	if err != nil {
		s.log.WithError(err).WithField("command_id", id).Warn("cannot watch the command; answering without waiting")
		return nil
	}
	if err := s.nc.FlushTimeout(2 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		s.log.WithError(err).WithField("command_id", id).Warn("cannot watch the command; answering without waiting")
		return nil
	}
	return &watch{sub: sub, ch: ch}
}

func (wt *watch) close() {
	if wt != nil {
		_ = wt.sub.Unsubscribe()
	}
}

// await reads the command and, while it is pending, waits for its
// notification or the deadline, then reads it once more. It never polls.
func (s *Server) await(ctx context.Context, wt *watch, id string, wait time.Duration) (*store.Command, error) {
	cmd, err := s.store.GetCommand(ctx, id)
	if err != nil || !cmd.Pending() || wt == nil {
		return cmd, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-wt.ch:
	case <-t.C:
	case <-ctx.Done():
		return cmd, nil
	}
	return s.store.GetCommand(ctx, id)
}

// getCommand serves GET /v1/commands/{id}: the command, if the caller may
// see its account; otherwise 404, as if it did not exist.
func (s *Server) getCommand(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "wait") {
		return
	}
	id := r.PathValue("id")
	if !command.ValidID(id, command.IDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a command id (cmd_…)", "id")
		return
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	var wt *watch
	if wait > 0 {
		wt = s.watch(id)
		defer wt.close()
	}
	cmd, err := s.store.GetCommand(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !principal(r).Sees(cmd.AccountID)) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no command "+id, "id")
		return
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the command")
		return
	}
	s.answer(w, r, cmd, wt, wait, nil)
}

// commandSpec is the command an endpoint asks a worker to carry out.
type commandSpec struct {
	domain, action, accountID string
	params                    any
}

// errAnswered is what a build function of serveCommand returns when it
// has answered the request itself (a 503 from a read it needed, say).
var errAnswered = errors.New("api: request already answered")

// serveCommand is the rest of every command endpoint once it has found the
// resource the caller may see: it reads ?wait= and Idempotency-Key,
// decodes the JSON body into a B (when optional, an empty body is B's zero
// value), lets build turn it into the command or the error that refuses
// it, and submits the command. One sequence for every endpoint keeps the
// order of the checks, and so the error a bad request sees first, the same
// everywhere.
func serveCommand[B any](s *Server, w http.ResponseWriter, r *http.Request, optional bool, build func(body B) (commandSpec, error)) {
	serveSecretCommand(s, w, r, optional, func(body B) (commandSpec, revealing, error) {
		c, err := build(body)
		return c, revealing{}, err
	})
}

// serveSecretCommand is serveCommand for the commands whose answer shows
// a secret: build also says how (see revealing).
func serveSecretCommand[B any](s *Server, w http.ResponseWriter, r *http.Request, optional bool,
	build func(body B) (commandSpec, revealing, error)) {
	sub, ok := s.commandRequest(w, r)
	if !ok {
		return
	}
	var body B
	if optional && !s.readOptionalJSON(w, r, &body) || !optional && !s.readJSON(w, r, &body) {
		return
	}
	c, reveal, err := build(body)
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	sub.domain, sub.action, sub.accountID, sub.params, sub.reveal = c.domain, c.action, c.accountID, c.params, reveal
	s.submit(w, r, sub)
}
