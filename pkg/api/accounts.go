package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// Pagination limits of list endpoints.
const (
	PageLimitDefault = 50
	PageLimitMax     = 200
)

// AccountList is a page of accounts, newest first. NextCursor, when not
// null, fetches the next page (?cursor=).
type AccountList struct {
	Data       []store.Account `json:"data"`
	NextCursor *string         `json:"next_cursor"`
}

// createAccount serves POST /v1/accounts (operators): the command
// accounts.create, which the accounts worker carries out by creating the
// Stripe customer and the account.
func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "wait") {
		return
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	var p accounts.CreateParams
	if !s.readJSON(w, r, &p) {
		return
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		writeError(w, err)
		return
	}
	s.submit(w, r, submission{
		domain: accounts.Domain, action: accounts.ActionCreate,
		params: p, idempotencyKey: key, wait: wait,
	})
}

// updateAccount serves PATCH /v1/accounts/{id}: the command
// accounts.update, on the caller's own account (or any, for operators).
func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request) {
	id, ok := s.visibleAccountID(w, r)
	if !ok {
		return
	}
	if !checkQuery(w, r, "wait") {
		return
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	if _, err := s.store.GetAccount(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		notFoundAccount(w, id)
		return
	} else if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return
	}
	var p accounts.UpdateParams
	if !s.readJSON(w, r, &p) {
		return
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		writeError(w, err)
		return
	}
	s.submit(w, r, submission{
		domain: accounts.Domain, action: accounts.ActionUpdate, accountID: id,
		params: p, idempotencyKey: key, wait: wait,
	})
}

// getAccount serves GET /v1/accounts/{id}.
func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	id, ok := s.visibleAccountID(w, r)
	if !ok {
		return
	}
	if !checkQuery(w, r) {
		return
	}
	a, err := s.store.GetAccount(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		notFoundAccount(w, id)
		return
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return
	}
	if a.Suspension != nil && !principal(r).Operator {
		shown := *a.Suspension
		shown.By = "" // staff's ids are theirs
		a.Suspension = &shown
	}
	httpjson.Write(w, http.StatusOK, a)
}

// visibleAccountID returns the {id} of the path if it is an account id the
// caller may see. Another account's id answers 404 exactly as an unknown
// one does, so that ids cannot be probed.
func (s *Server) visibleAccountID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !command.ValidID(id, store.AccountIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not an account id (acc_…)", "id")
		return "", false
	}
	if !principal(r).Sees(id) {
		notFoundAccount(w, id)
		return "", false
	}
	return id, true
}

func notFoundAccount(w http.ResponseWriter, id string) {
	httpjson.Error(w, http.StatusNotFound, "not_found", "no account "+id, "id")
}

// listAccounts serves GET /v1/accounts (operators), a page at a time.
func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "limit", "cursor") {
		return
	}
	q := r.URL.Query()
	limit := PageLimitDefault
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > PageLimitMax {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "limit must be an integer from 1 to 200", "limit")
			return
		}
		limit = n
	}
	var after *store.AccountCursor
	if raw := q.Get("cursor"); raw != "" {
		c, err := decodeCursor(raw)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		after = c
	}
	page, err := s.store.ListAccounts(r.Context(), store.ListAccountsParams{Limit: limit + 1, After: after})
	if err != nil {
		s.unavailable(w, r, err, "cannot list accounts")
		return
	}
	out := AccountList{Data: page}
	if len(page) > limit {
		out.Data = page[:limit]
		last := out.Data[limit-1]
		next := encodeCursor(store.AccountCursor{CreatedAt: last.CreatedAt, ID: last.ID})
		out.NextCursor = &next
	}
	httpjson.Write(w, http.StatusOK, out)
}

// cursor is the opaque position of a page: base64url of this JSON.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}

func encodeCursor(c store.AccountCursor) string {
	b, _ := json.Marshal(cursor{CreatedAt: c.CreatedAt.UTC(), ID: c.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*store.AccountCursor, error) {
	if len(s) > 256 {
		return nil, errors.New("cursor too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	var c cursor
	if err := DecodeJSON(b, &c); err != nil {
		return nil, err
	}
	if c.CreatedAt.IsZero() || !command.ValidID(c.ID, store.AccountIDPrefix) {
		return nil, errors.New("incomplete cursor")
	}
	return &store.AccountCursor{CreatedAt: c.CreatedAt, ID: c.ID}, nil
}
