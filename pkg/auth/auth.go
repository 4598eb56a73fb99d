package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// Principal is who a request acts for.
type Principal struct {
	// Operator is true for operator keys and the dev operator token.
	Operator bool
	// AccountID is the account an account key belongs to; "" for
	// operators.
	AccountID string
	// KeyID is the key's id (not secret), for logs and rate limits; for a
	// person signed in to the console, "user:" and their id.
	KeyID string
	// UserID is the console user a request acts for; "" for API keys.
	UserID string
}

// Actor names p in the audit trail: "user:<id>" for a person, else
// "key:<id>".
func (p Principal) Actor() string {
	if p.UserID != "" {
		return "user:" + p.UserID
	}
	return "key:" + p.KeyID
}

type delegatedKey struct{}

// Delegated reports whether ctx carries a principal set by Delegate: a
// console page calling the API in process, which the console rate-limits
// per page rather than per call.
func Delegated(ctx context.Context) bool {
	_, ok := ctx.Value(delegatedKey{}).(Principal)
	return ok
}

// Delegate returns ctx carrying p as an already authenticated caller:
// Require admits a request with such a context as p, without a bearer
// token. Only code in this process can set it: the console, which
// authenticated a person by their session, calls the API's handlers in
// process through it, so that every page passes the same scope checks,
// tenancy (Principal.Sees) and rate limits as the API.
func Delegate(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, delegatedKey{}, p)
}

// DevKeyID is the KeyID of the dev operator token's principal.
const DevKeyID = "dev-operator"

// Sees reports whether p may see and change data of the account
// accountID. Operators see every account; an account key only its own. An
// empty accountID (something no account owns yet) is for operators only.
// Every tenancy decision goes through here.
func (p Principal) Sees(accountID string) bool {
	if p.Operator {
		return true
	}
	return accountID != "" && p.AccountID == accountID
}

// Scope is what a route demands of its caller.
type Scope int

const (
	// AnyKey admits every valid key; the handler restricts what an
	// account key sees with Principal.Sees.
	AnyKey Scope = iota
	// OperatorOnly admits operator keys; account keys get 403.
	OperatorOnly
)

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal Require put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Errors of Authenticate.
var (
	// ErrNoCredentials means the request has no bearer token.
	ErrNoCredentials = errors.New("auth: no bearer token")
	// ErrInvalidKey means the token is not a live key: malformed,
	// unknown or revoked. Which one is not told, on purpose.
	ErrInvalidKey = errors.New("auth: invalid or revoked key")
)

// touchInterval bounds how often a key's last_used_at is written: it is a
// rough indication for people, not worth a write per request.
const touchInterval = time.Minute

// Config configures an Authorizer.
type Config struct {
	// DevOperatorToken, when set, is accepted as an operator. Only dev
	// mode sets it.
	DevOperatorToken string
	// Logger receives warnings; required.
	Logger logrus.FieldLogger
}

// Authorizer authenticates requests against the store's API keys.
type Authorizer struct {
	store   *store.Store
	log     logrus.FieldLogger
	devHash []byte // nil: no dev token
	now     func() time.Time

	mu      sync.Mutex
	touched map[string]time.Time
}

// New returns an authorizer on st.
func New(st *store.Store, cfg Config) (*Authorizer, error) {
	if st == nil {
		return nil, errors.New("auth: a store is required")
	}
	if cfg.Logger == nil {
		return nil, errors.New("auth: a logger is required")
	}
	a := &Authorizer{store: st, log: cfg.Logger, now: time.Now, touched: map[string]time.Time{}}
	if cfg.DevOperatorToken != "" {
		sum := sha256.Sum256([]byte(cfg.DevOperatorToken))
		a.devHash = sum[:]
	}
	return a, nil
}

// Authenticate returns the principal of the bearer token in the
// Authorization header value. It fails with ErrNoCredentials,
// ErrInvalidKey, or an error from the store (which is not the caller's
// fault: answer 503).
func (a *Authorizer) Authenticate(ctx context.Context, authorization string) (Principal, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrNoCredentials
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Principal{}, ErrNoCredentials
	}
	if a.devHash != nil {
		// Compared as digests in constant time: neither content nor length
		// leaks.
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], a.devHash) == 1 {
			return Principal{Operator: true, KeyID: DevKeyID}, nil
		}
	}
	if !LooksLikeKey(token) {
		return Principal{}, ErrInvalidKey
	}
	hash := HashKey(token)
	k, err := a.store.ActiveAPIKeyByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrInvalidKey
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: %w", err)
	}
	// The lookup matched on the hash; comparing again in constant time
	// costs nothing and does not depend on how the database compares.
	want, err := hex.DecodeString(k.Hash)
	got, _ := hex.DecodeString(hash)
	if err != nil || subtle.ConstantTimeCompare(want, got) != 1 {
		return Principal{}, ErrInvalidKey
	}
	a.touch(ctx, k.ID)
	return Principal{Operator: k.Operator, AccountID: k.AccountID, KeyID: k.ID}, nil
}

// touch records the key's use at most once per touchInterval, best-effort.
func (a *Authorizer) touch(ctx context.Context, keyID string) {
	now := a.now()
	a.mu.Lock()
	last, seen := a.touched[keyID]
	if seen && now.Sub(last) < touchInterval {
		a.mu.Unlock()
		return
	}
	a.touched[keyID] = now
	if len(a.touched) > 10000 {
		// Forget old entries; at worst a key is touched once more.
		for id, at := range a.touched {
			if now.Sub(at) >= touchInterval {
				delete(a.touched, id)
			}
		}
	}
	a.mu.Unlock()
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := a.store.TouchAPIKey(tctx, keyID, now); err != nil {
		a.log.WithFields(logrus.Fields{"key_id": keyID, "error": err.Error()}).Debug("could not record key use")
	}
}

// Require admits a request to next only if it carries a valid key of
// scope, with the principal in its context (FromContext). Otherwise it
// answers 401 (no or invalid key), 403 (an account key on an operator
// route) or 503 (the key could not be checked).
func (a *Authorizer) Require(scope Scope, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, delegated := r.Context().Value(delegatedKey{}).(Principal)
		var err error
		if !delegated {
			p, err = a.Authenticate(r.Context(), r.Header.Get("Authorization"))
		}
		switch {
		case errors.Is(err, ErrNoCredentials):
			w.Header().Set("WWW-Authenticate", `Bearer realm="levqor"`)
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "send an API key: Authorization: Bearer lvq_…", "")
			return
		case errors.Is(err, ErrInvalidKey):
			w.Header().Set("WWW-Authenticate", `Bearer realm="levqor", error="invalid_token"`)
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "invalid or revoked API key", "")
			return
		case err != nil:
			a.log.WithError(err).Error("cannot check API key")
			w.Header().Set("Retry-After", "5")
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "cannot check the API key now, retry later", "")
			return
		}
		if scope == OperatorOnly && !p.Operator {
			httpjson.Error(w, http.StatusForbidden, "forbidden", "this endpoint needs an operator key", "")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}
