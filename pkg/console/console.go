// Package console is Levqor's web console for customers and operators:
// server-rendered pages under /app/, signed in with a session (package
// people), every read and change made by calling the product and operator
// APIs in process as the signed-in person (auth.Delegate). A page thus
// passes the same scope checks, tenancy and rate limits as the API: another
// account's id answers 404, a member cannot reach operator routes. Its
// templates, style sheet and script are embedded in the binary.
package console

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
)

// Path is where the console is mounted.
const Path = "/app/"

// Cookie names. The session cookie is scoped to Path.
const (
	sessionCookie = "levqor_session"
	// signinCookie carries the sign-in form's anti-forgery token before a
	// session exists (double submit).
	signinCookie = "levqor_signin"
)

// maxFormBytes bounds a form's body: the console's forms are small.
const maxFormBytes = 16 << 10

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	// People signs users in; required.
	People *people.People
	// API serves the product and operator APIs (ingest's routes), which
	// the console calls in process; required.
	API http.Handler
	// Logger receives the console's logs; required.
	Logger logrus.FieldLogger
	// PublicURL is LEVQOR_PUBLIC_URL, the base of links in emails; "" uses
	// the request's own host.
	PublicURL string
	// ClientAddr names a request's client for the sign-in limits (the
	// API's, which trusts X-Forwarded-For from LEVQOR_TRUSTED_PROXIES
	// only); nil takes the connection's peer.
	ClientAddr func(*http.Request) string
	// Store holds the people and API keys the owners' pages manage (the
	// product API has no routes for them); required.
	Store *store.Store
	// Mailer sends invitations and password reset links; nil shows an
	// owner the invitation link to pass on, and sends no reset link.
	Mailer notify.Sender
	// OIDC are the identity providers people may sign in with
	// (LEVQOR_OIDC_PROVIDERS); none offers passwords alone.
	OIDC []OIDCProvider
	// Insecure drops the Secure attribute from cookies, for dev mode on
	// plain http://127.0.0.1. Production always sets Secure.
	Insecure bool
}

// Console serves the pages.
type Console struct {
	cfg    Config
	people *people.People
	store  *store.Store
	api    http.Handler
	log    logrus.FieldLogger
	tmpl   map[string]*template.Template
	mux    *http.ServeMux
	now    func() time.Time

	oidc oidcClients

	mu    sync.Mutex
	pages map[string]*rate.Limiter // per user: what the API's per-key limit is to a key
}

// New returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.People == nil || cfg.API == nil || cfg.Logger == nil || cfg.Store == nil {
		return nil, errors.New("console: people, the API, the store and a logger are required")
	}
	c := &Console{cfg: cfg, people: cfg.People, api: cfg.API, store: cfg.Store, log: cfg.Logger.WithField("component", "console"),
		tmpl: map[string]*template.Template{}, mux: http.NewServeMux(), now: time.Now, pages: map[string]*rate.Limiter{}}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		c.tmpl[name] = t
	}
	c.routes()
	return c, nil
}

// ServeHTTP serves everything under Path.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages load only their own script and style, never inside a frame.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Robots-Tag", "noindex, nofollow")
	// Same-origin, not the API's no-referrer: under no-referrer browsers
	// send "Origin: null" with a form, which sameOrigin must refuse.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		if !sameOrigin(r) {
			c.fail(w, r, nil, http.StatusForbidden, "This request came from another site and was refused.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	c.mux.ServeHTTP(w, r)
}

// sameOrigin refuses a POST whose Origin (sent by every current browser)
// names another host: a second guard beside the CSRF token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// viewer is the signed-in person of a request.
type viewer struct {
	User    *store.User
	secret  string
	CSRF    string
	Account map[string]any // the account of an owner or member
}

func (v *viewer) Operator() bool { return v.User.Role == store.RoleOperator }
func (v *viewer) Owner() bool    { return v.User.Role == store.RoleOwner }

// suspended says why the viewer's account takes no new keys or people
// while an operator's suspension holds, as the API refuses its other
// changes; ok is false when none holds.
func (v *viewer) suspended() (message string, ok bool) {
	s, ok := v.Account["suspension"].(map[string]any)
	if !ok {
		return "", false
	}
	reason, _ := s["reason"].(string)
	return "Levqor has suspended this account (" + reason + "): no new API keys or people until it is reinstated.", true
}

func (v *viewer) principal() auth.Principal {
	p := auth.Principal{KeyID: "user:" + v.User.ID, UserID: v.User.ID}
	if v.Operator() {
		p.Operator = true
	} else {
		p.AccountID = v.User.AccountID
	}
	return p
}

// page handles a signed-in request.
type page func(w http.ResponseWriter, r *http.Request, v *viewer)

// Roles a page admits.
type access int

const (
	anyone access = iota
	ownersOnly
	operatorsOnly
	customersOnly
)

// signedIn admits a request with a live session of a user with the
// access, checking the CSRF token of every POST. Without a session it
// sends a GET to sign-in (and back after), a POST away with 401.
func (c *Console) signedIn(a access, next page) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		var v *viewer
		if err == nil {
			_, u, err := c.people.Session(r.Context(), ck.Value)
			switch {
			case err == nil:
				v = &viewer{User: u, secret: ck.Value, CSRF: people.CSRFToken(ck.Value)}
			case !errors.Is(err, people.ErrNoSession):
				c.fail(w, r, err, http.StatusServiceUnavailable, "The console cannot reach its database; try again shortly.")
				return
			}
		}
		if v == nil {
			c.clearSession(w)
			if r.Method != http.MethodGet {
				c.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended. Sign in again.")
				return
			}
			http.Redirect(w, r, Path+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if !c.allowPage(v.User.ID) {
			w.Header().Set("Retry-After", "1")
			c.fail(w, r, nil, http.StatusTooManyRequests, "Too many requests; wait a moment.")
			return
		}
		if r.Method == http.MethodPost && !people.CheckCSRF(v.secret, r.PostFormValue("csrf")) {
			c.fail(w, r, nil, http.StatusForbidden, "This form has expired or did not come from the console. Reload the page and try again.")
			return
		}
		allowed := a == anyone || (a == operatorsOnly && v.Operator()) || (a == ownersOnly && v.Owner()) ||
			(a == customersOnly && !v.Operator())
		if !allowed {
			c.render(w, r, v, http.StatusForbidden, "error", map[string]any{"Message": "Your role does not open this page."})
			return
		}
		if !v.Operator() {
			if err := c.get(r, v, "/v1/accounts/"+url.PathEscape(v.User.AccountID), &v.Account); err != nil {
				c.apiFail(w, r, v, err)
				return
			}
		}
		next(w, r, v)
	})
}

// Pages a person may load: the console calls the API without its per-key
// limit (a page makes several calls), and limits each person's pages.
const (
	PagesPerSecond = 10
	PagesBurst     = 50
)

// allowPage spends one page of the user's budget.
func (c *Console) allowPage(userID string) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.pages[userID]
	if l == nil {
		if len(c.pages) > 10000 {
			for id, old := range c.pages {
				if old.TokensAt(now) >= PagesBurst {
					delete(c.pages, id)
				}
			}
		}
		l = rate.NewLimiter(PagesPerSecond, PagesBurst)
		c.pages[userID] = l
	}
	return l.AllowN(now, 1)
}

func (c *Console) setSession(w http.ResponseWriter, secret string) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: secret, Path: Path, HttpOnly: true, Secure: !c.cfg.Insecure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(c.people.Config().AbsoluteTimeout / time.Second)})
}

func (c *Console) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: Path, HttpOnly: true, Secure: !c.cfg.Insecure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// apiError is an API answer other than 2xx, in the API's error shape.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// call runs method path on the API as v, with body as JSON, and decodes a
// 2xx answer into out (when not nil). Other answers are *apiError.
func (c *Console) call(r *http.Request, v *viewer, method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx := auth.Delegate(r.Context(), v.principal())
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return err
	}
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("Content-Type", "application/json")
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	c.api.ServeHTTP(rec, req)
	if rec.code < 200 || rec.code > 299 {
		e := &apiError{Status: rec.code}
		var shape struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &shape) == nil && shape.Error != nil {
			e.Code, e.Message, e.Field = shape.Error.Code, shape.Error.Message, shape.Error.Field
		}
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rec.body.Bytes(), out)
}

func (c *Console) get(r *http.Request, v *viewer, path string, out any) error {
	return c.call(r, v, http.MethodGet, path, nil, out)
}

// recorder collects an in-process API answer.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (rc *recorder) Header() http.Header { return rc.header }
func (rc *recorder) Write(b []byte) (int, error) {
	rc.wrote = true
	return rc.body.Write(b)
}
func (rc *recorder) WriteHeader(code int) {
	if !rc.wrote {
		rc.code, rc.wrote = code, true
	}
}

// apiFail answers a failed API call: 404 for what is not there or not
// the viewer's (the API does not tell them apart), the API's message for
// bad input, 503 for the rest.
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusNotFound:
			c.render(w, r, v, http.StatusNotFound, "error", map[string]any{"Message": "There is nothing here."})
			return
		case ae.Status == http.StatusForbidden && ae.Code != codeSuspended:
			c.render(w, r, v, http.StatusForbidden, "error", map[string]any{"Message": "Your role does not allow this."})
			return
		case ae.Status == http.StatusTooManyRequests:
			c.render(w, r, v, http.StatusTooManyRequests, "error", map[string]any{"Message": "Too many requests; wait a moment."})
			return
		case ae.Status >= 400 && ae.Status < 500:
			c.render(w, r, v, ae.Status, "error", map[string]any{"Message": ae.Message, "Field": ae.Field})
			return
		}
	}
	c.log.WithFields(logrus.Fields{"error": err.Error(), "path": r.URL.Path}).Error("console request failed")
	c.render(w, r, v, http.StatusServiceUnavailable, "error", map[string]any{"Message": "Levqor cannot answer this now; try again shortly."})
}

// fail answers status with message on the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error, status int, message string) {
	if err != nil {
		c.log.WithFields(logrus.Fields{"error": err.Error(), "path": r.URL.Path}).Error("console request failed")
	}
	c.render(w, r, nil, status, "error", map[string]any{"Message": message})
}

// renderPart writes the template part of page name alone: what a
// page's live part fetches.
func (c *Console) renderPart(w http.ResponseWriter, r *http.Request, part string, data map[string]any) {
	var buf bytes.Buffer
	if err := c.tmpl["source"].ExecuteTemplate(&buf, part, data); err != nil {
		c.log.WithFields(logrus.Fields{"error": err.Error(), "part": part}).Error("console part failed to render")
		http.Error(w, "the page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// render writes page name with data, inside the layout.
func (c *Console) render(w http.ResponseWriter, r *http.Request, v *viewer, status int, name string, data map[string]any) {
	t := c.tmpl[name]
	if data == nil {
		data = map[string]any{}
	}
	data["Viewer"] = v
	data["Path"] = r.URL.Path
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", data); err != nil {
		c.log.WithFields(logrus.Fields{"error": err.Error(), "page": name}).Error("console page failed to render")
		http.Error(w, "the page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// clientAddr names the client for the sign-in limits.
func (c *Console) clientAddr(r *http.Request) string {
	if c.cfg.ClientAddr != nil {
		return c.cfg.ClientAddr(r)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// randomToken is 32 random bytes, URL-safe.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// localNext keeps a post-sign-in redirect inside the console.
func localNext(next string) string {
	if !strings.HasPrefix(next, Path) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return Path
	}
	return next
}
