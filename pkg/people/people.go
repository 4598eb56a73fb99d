package people

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
)

// Defaults of Config.
const (
	// IdleTimeoutDefault ends a session nobody used for this long.
	IdleTimeoutDefault = 2 * time.Hour
	// AbsoluteTimeoutDefault ends every session this long after sign-in.
	AbsoluteTimeoutDefault = 12 * time.Hour
	// LockoutThresholdDefault failed password sign-ins in a row lock the
	// user for LockoutDefault.
	LockoutThresholdDefault = 10
	LockoutDefault          = 15 * time.Minute
	// InvitationTTLDefault is how long an invitation link works;
	// ResetTTLDefault a password reset link.
	InvitationTTLDefault = 7 * 24 * time.Hour
	ResetTTLDefault      = time.Hour
	// ClientAttemptsPerMinute bounds the failed sign-ins (and reset
	// requests) of one client address, EmailAttemptsPerMinute those naming
	// one email, whatever the client: guessing is slow from one place and
	// against one person.
	ClientAttemptsPerMinute = 10
	EmailAttemptsPerMinute  = 5
)

// limitersMax bounds the sign-in limiters kept (per address and email).
const limitersMax = 100_000

// touchInterval bounds how often a session's last use is written.
const touchInterval = time.Minute

// Errors of People.
var (
	// ErrSignInFailed is every failed sign-in: a wrong password, an
	// unknown or disabled email, a locked user. Which one is not told, so
	// that the answer reveals no registered email.
	ErrSignInFailed = errors.New("the email or password is wrong (after repeated failures, sign-in is locked for a while)")
	// ErrThrottled means too many attempts from the client or for the
	// email: wait a minute.
	ErrThrottled = errors.New("too many sign-in attempts; wait a minute and try again")
	// ErrNoSession means the cookie names no live session: none, ended,
	// idle too long, past its absolute timeout, or its user disabled.
	ErrNoSession = errors.New("no session")
	// ErrLink means an invitation or reset link is unknown, used or
	// expired (not told apart).
	ErrLink = errors.New("this link is not valid any more: it was used, or it expired; ask for a new one")
)

// FieldError is bad input naming its field.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Config configures People.
type Config struct {
	Store  *store.Store
	Logger logrus.FieldLogger
	// Zero durations and counts take the defaults above.
	IdleTimeout      time.Duration
	AbsoluteTimeout  time.Duration
	LockoutThreshold int
	Lockout          time.Duration
	InvitationTTL    time.Duration
	ResetTTL         time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// People signs users in and keeps their sessions.
type People struct {
	cfg   Config
	store *store.Store
	log   logrus.FieldLogger
	now   func() time.Time

	mu       sync.Mutex
	clients  map[string]*rate.Limiter
	emails   map[string]*rate.Limiter
	limitsAt time.Time // when the maps were last swept
	sweptAt  time.Time // when expired sessions were last deleted
}

// New returns People on cfg.Store.
func New(cfg Config) (*People, error) {
	if cfg.Store == nil || cfg.Logger == nil {
		return nil, errors.New("people: a store and a logger are required")
	}
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, IdleTimeoutDefault)
	cfg.AbsoluteTimeout = cmp.Or(cfg.AbsoluteTimeout, AbsoluteTimeoutDefault)
	cfg.LockoutThreshold = cmp.Or(cfg.LockoutThreshold, LockoutThresholdDefault)
	cfg.Lockout = cmp.Or(cfg.Lockout, LockoutDefault)
	cfg.InvitationTTL = cmp.Or(cfg.InvitationTTL, InvitationTTLDefault)
	cfg.ResetTTL = cmp.Or(cfg.ResetTTL, ResetTTLDefault)
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &People{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: now,
		clients: map[string]*rate.Limiter{}, emails: map[string]*rate.Limiter{}}, nil
}

// Config returns the configuration in effect, defaults filled in.
func (p *People) Config() Config { return p.cfg }

// NewUser is what CreateUser needs.
type NewUser struct {
	Email     string
	Name      string
	Role      string
	AccountID string
	// Password, when not empty, is checked against the policy and hashed.
	Password string
}

// CheckEmail returns the normalised email, or a FieldError.
func CheckEmail(email string) (string, error) {
	e := store.NormalizeEmail(email)
	a, err := mail.ParseAddress(e)
	if e == "" || len(e) > 254 || err != nil || a.Address != e || !strings.Contains(e, "@") {
		return "", &FieldError{Field: "email", Message: "not an email address"}
	}
	return e, nil
}

// checkNewUser validates nu's fields, naming the first bad one.
func checkNewUser(nu NewUser) (NewUser, error) {
	email, err := CheckEmail(nu.Email)
	if err != nil {
		return nu, err
	}
	nu.Email, nu.Name = email, strings.TrimSpace(nu.Name)
	switch {
	case len(nu.Name) > 200:
		return nu, &FieldError{Field: "name", Message: "at most 200 characters"}
	case !store.ValidRole(nu.Role):
		return nu, &FieldError{Field: "role", Message: "one of owner, member, operator"}
	case nu.Role == store.RoleOperator && nu.AccountID != "":
		return nu, &FieldError{Field: "account", Message: "operators belong to no account"}
	case nu.Role != store.RoleOperator && nu.AccountID == "":
		return nu, &FieldError{Field: "account", Message: "required for an owner or a member"}
	}
	return nu, nil
}

// CreateUser validates and stores a new user. A taken email is a
// FieldError on email; an unknown account one on account.
func (p *People) CreateUser(ctx context.Context, nu NewUser) (*store.User, error) {
	nu, err := checkNewUser(nu)
	if err != nil {
		return nil, err
	}
	u := store.User{Email: nu.Email, Name: nu.Name, Role: nu.Role, AccountID: nu.AccountID, CreatedAt: p.now()}
	if nu.Password != "" {
		if err := CheckPasswordPolicy(nu.Password); err != nil {
			return nil, &FieldError{Field: "password", Message: strings.TrimPrefix(err.Error(), "password: ")}
		}
		if u.PasswordHash, err = HashPassword(nu.Password); err != nil {
			return nil, err
		}
	}
	if u.ID, err = command.NewID("usr_"); err != nil {
		return nil, err
	}
	return &u, userError(p.store.CreateUser(ctx, u))
}

// userError turns the store's refusals into field errors.
func userError(err error) error {
	switch {
	case errors.Is(err, store.ErrExists):
		return &FieldError{Field: "email", Message: "a user with this email exists already"}
	case errors.Is(err, store.ErrNotFound):
		return &FieldError{Field: "account", Message: "no such account"}
	}
	return err
}

// SignIn checks email and password and opens a session for the user. It
// answers ErrThrottled when client or email made too many attempts, and
// ErrSignInFailed for any other refusal. client is the caller's address;
// userAgent is kept for the user's list of sessions.
func (p *People) SignIn(ctx context.Context, email, password, client, userAgent string) (string, *store.User, error) {
	email, err := CheckEmail(email)
	if err != nil {
		return "", nil, ErrSignInFailed // no email: nothing to look up, nor to keep a limiter for
	}
	if p.throttled(client, email) {
		return "", nil, ErrThrottled
	}
	u, err := p.store.UserByEmail(ctx, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", nil, err
	}
	if u == nil || u.PasswordHash == "" {
		p.spend(client, email)
		// The same work as a real check, so that timing tells nothing.
		_, _ = CheckPassword(dummyHash(), password)
		return "", nil, ErrSignInFailed
	}
	ok, err := CheckPassword(u.PasswordHash, password)
	if err != nil {
		p.log.WithFields(logrus.Fields{"user_id": u.ID, "error": err.Error()}).Error("stored password hash unreadable")
		return "", nil, ErrSignInFailed
	}
	now := p.now()
	if locked := u.LockedUntil != nil && u.LockedUntil.After(now); !ok || locked || u.DisabledAt != nil {
		p.spend(client, email)
		if !ok {
			after, err := p.store.RecordSigninFailure(ctx, u.ID, now, p.cfg.LockoutThreshold, p.cfg.Lockout)
			if err != nil {
				return "", nil, err
			}
			if !locked && after.LockedUntil != nil && after.LockedUntil.After(now) {
				p.log.WithFields(logrus.Fields{"user_id": u.ID, "until": after.LockedUntil.Format(time.RFC3339)}).Warn("user locked after repeated failed sign-ins")
			}
		}
		return "", nil, ErrSignInFailed
	}
	if err := p.store.RecordSignin(ctx, u.ID, now); err != nil {
		return "", nil, err
	}
	secret, err := p.OpenSession(ctx, u, client, userAgent)
	return secret, u, err
}

// throttled reports whether client or email has no attempt left; spend
// spends one of each. Sign-in spends only on failure (a good password
// gives a guesser nothing), a reset request always (it sends an email).
func (p *People) throttled(client, email string) bool {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	c, e := p.limiters(now, client, email)
	return c.TokensAt(now) < 1 || e.TokensAt(now) < 1
}

func (p *People) spend(client, email string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	c, e := p.limiters(now, client, email)
	c.AllowN(now, 1)
	e.AllowN(now, 1)
}

// limiters returns the limiters of client and email; p.mu is held.
func (p *People) limiters(now time.Time, client, email string) (*rate.Limiter, *rate.Limiter) {
	if now.Sub(p.limitsAt) > 10*time.Minute || len(p.clients)+len(p.emails) > limitersMax {
		// A full bucket is the same as none: forget them.
		for _, m := range []map[string]*rate.Limiter{p.clients, p.emails} {
			for k, l := range m {
				if l.TokensAt(now) >= float64(l.Burst()) {
					delete(m, k)
				}
			}
		}
		p.limitsAt = now
		if len(p.clients)+len(p.emails) > limitersMax {
			// A flood of distinct addresses or emails: start afresh rather
			// than grow without bound.
			p.clients, p.emails = map[string]*rate.Limiter{}, map[string]*rate.Limiter{}
		}
	}
	get := func(m map[string]*rate.Limiter, key string, perMinute int) *rate.Limiter {
		l := m[key]
		if l == nil {
			l = rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)
			m[key] = l
		}
		return l
	}
	return get(p.clients, client, ClientAttemptsPerMinute), get(p.emails, email, EmailAttemptsPerMinute)
}

// OpenSession starts a session for u (a sign-in checked by the caller)
// and returns its secret, the cookie's value: a new id at every sign-in.
func (p *People) OpenSession(ctx context.Context, u *store.User, client, userAgent string) (string, error) {
	secret, hash, err := NewSecret()
	if err != nil {
		return "", err
	}
	now := p.now()
	if len(userAgent) > 256 {
		userAgent = userAgent[:256]
	}
	err = p.store.CreateSession(ctx, store.Session{IDHash: hash, UserID: u.ID, CreatedAt: now, LastSeenAt: now,
		ExpiresAt: now.Add(p.cfg.AbsoluteTimeout), UserAgent: userAgent, ClientAddr: client})
	if err != nil {
		return "", err
	}
	p.sweep(ctx, now)
	return secret, nil
}

// sweep deletes, at most once an hour, the sessions past their timeouts
// and the links used or expired for a month, which nothing reads again.
func (p *People) sweep(ctx context.Context, now time.Time) {
	p.mu.Lock()
	due := now.Sub(p.sweptAt) >= time.Hour
	if due {
		p.sweptAt = now
	}
	p.mu.Unlock()
	if !due {
		return
	}
	n, err := p.store.DeleteExpiredSessions(ctx, now, now.Add(-p.cfg.IdleTimeout))
	if err == nil {
		var links int
		links, err = p.store.DeleteStaleLinks(ctx, now.Add(-30*24*time.Hour))
		n += links
	}
	if err != nil {
		p.log.WithError(err).Warn("could not delete expired sessions and links")
		return
	}
	if n > 0 {
		p.log.WithField("deleted", n).Info("expired sessions and links deleted")
	}
}

// Session returns the live session whose secret is secret, and its user;
// ErrNoSession when there is none. It ends a session past its idle or
// absolute timeout, or whose user was disabled.
func (p *People) Session(ctx context.Context, secret string) (*store.Session, *store.User, error) {
	if secret == "" || len(secret) > 128 {
		return nil, nil, ErrNoSession
	}
	hash := HashSecret(secret)
	se, u, err := p.store.SessionByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNoSession
	}
	if err != nil {
		return nil, nil, err
	}
	now := p.now()
	if !now.Before(se.ExpiresAt) || now.Sub(se.LastSeenAt) >= p.cfg.IdleTimeout || u.DisabledAt != nil {
		if err := p.store.DeleteSession(ctx, hash); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrNoSession
	}
	if now.Sub(se.LastSeenAt) >= touchInterval {
		if err := p.store.TouchSession(ctx, hash, now); err != nil {
			return nil, nil, err
		}
		se.LastSeenAt = now
	}
	return se, u, nil
}

// SignOut ends the session whose secret is secret.
func (p *People) SignOut(ctx context.Context, secret string) error {
	return p.store.DeleteSession(ctx, HashSecret(secret))
}

// SignOutEverywhere ends every session of the user.
func (p *People) SignOutEverywhere(ctx context.Context, userID string) (int, error) {
	return p.store.DeleteUserSessions(ctx, userID)
}

// Invite makes an invitation link for email to join accountID with role,
// and returns the link's secret (the caller builds the URL and sends it).
// by names who invited, for the record. An email that already has a user
// is not refused here (that would tell any owner who has a user): its
// acceptance is.
func (p *People) Invite(ctx context.Context, email, role, accountID, by string) (string, *store.UserLink, error) {
	nu, err := checkNewUser(NewUser{Email: email, Role: role, AccountID: accountID})
	if err != nil {
		return "", nil, err
	}
	// Whether the email has a user (in any account) is not told here: the
	// invitation fails when it is accepted, to the person the email
	// belongs to.
	secret, hash, err := NewSecret()
	if err != nil {
		return "", nil, err
	}
	now := p.now()
	l := store.UserLink{TokenHash: hash, Purpose: store.LinkInvite, Email: nu.Email, Role: nu.Role, AccountID: nu.AccountID,
		CreatedBy: by, CreatedAt: now, ExpiresAt: now.Add(p.cfg.InvitationTTL)}
	if err := p.store.CreateUserLink(ctx, l); err != nil {
		return "", nil, userError(err)
	}
	return secret, &l, nil
}

// AcceptInvitation uses the invitation whose secret is secret: it creates
// its user with name and password and returns them. A used, expired or
// unknown link is ErrLink.
func (p *People) AcceptInvitation(ctx context.Context, secret, name, password string) (*store.User, error) {
	if err := CheckPasswordPolicy(password); err != nil {
		return nil, &FieldError{Field: "password", Message: strings.TrimPrefix(err.Error(), "password: ")}
	}
	// A link that cannot work costs a lookup, not a password hash.
	if _, err := p.store.PeekUserLink(ctx, HashSecret(secret), store.LinkInvite, p.now()); err != nil {
		return nil, linkError(err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	var u store.User
	err = p.store.InTx(ctx, func(tx *store.Tx) error {
		l, err := tx.UseUserLink(ctx, HashSecret(secret), store.LinkInvite, p.now())
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrLinkUsed) {
			return ErrLink
		}
		if err != nil {
			return err
		}
		nu, err := checkNewUser(NewUser{Email: l.Email, Name: name, Role: l.Role, AccountID: l.AccountID})
		if err != nil {
			return err
		}
		id, err := command.NewID("usr_")
		if err != nil {
			return err
		}
		u = store.User{ID: id, Email: nu.Email, Name: nu.Name, Role: nu.Role, AccountID: nu.AccountID, PasswordHash: hash, CreatedAt: p.now()}
		return userError(tx.CreateUser(ctx, u))
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// secretBytes is the randomness of session and link secrets: 256 bits.
const secretBytes = 32

// NewSecret returns a fresh secret (URL- and cookie-safe) and the hash
// the store keeps of it.
func NewSecret() (secret, hash string, err error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("people: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSecret(secret), nil
}

// HashSecret is the hex SHA-256 of secret, the form the store keeps.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CSRFToken is the anti-forgery token of the session whose secret is
// secret: derived from it, so nothing more is stored, and useless without
// the cookie an attacker's page cannot read.
func CSRFToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("levqor console csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports, in constant time, whether token is the session's.
func CheckCSRF(secret, token string) bool {
	return secret != "" && hmac.Equal([]byte(CSRFToken(secret)), []byte(token))
}

// RequestReset makes a password reset link for the active user with
// email, and returns its secret and the user; for an email with no
// active user it returns ("", nil, nil), which the caller must answer
// exactly as a success, so that the answer reveals no registered email.
// It spends an attempt of client and email (ErrThrottled).
func (p *People) RequestReset(ctx context.Context, email, client string) (string, *store.User, error) {
	email = store.NormalizeEmail(email)
	if p.throttled(client, email) {
		return "", nil, ErrThrottled
	}
	p.spend(client, email)
	u, err := p.store.UserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.DisabledAt != nil) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	secret, hash, err := NewSecret()
	if err != nil {
		return "", nil, err
	}
	now := p.now()
	err = p.store.CreateUserLink(ctx, store.UserLink{TokenHash: hash, Purpose: store.LinkReset, Email: u.Email, Role: u.Role,
		AccountID: u.AccountID, CreatedBy: "user:" + u.ID, CreatedAt: now, ExpiresAt: now.Add(p.cfg.ResetTTL)})
	if err != nil {
		return "", nil, err
	}
	return secret, u, nil
}

// ResetPassword uses the reset link whose secret is secret to set the
// user's password, which ends every session of theirs, lifts a lockout and
// makes their other reset links useless. A used, expired or unknown link
// is ErrLink.
func (p *People) ResetPassword(ctx context.Context, secret, password string) (*store.User, error) {
	if err := CheckPasswordPolicy(password); err != nil {
		return nil, &FieldError{Field: "password", Message: strings.TrimPrefix(err.Error(), "password: ")}
	}
	if _, err := p.store.PeekUserLink(ctx, HashSecret(secret), store.LinkReset, p.now()); err != nil {
		return nil, linkError(err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	var u *store.User
	err = p.store.InTx(ctx, func(tx *store.Tx) error {
		l, err := tx.UseUserLink(ctx, HashSecret(secret), store.LinkReset, p.now())
		if err != nil {
			return linkError(err)
		}
		if u, err = tx.UserByEmail(ctx, l.Email); errors.Is(err, store.ErrNotFound) || (err == nil && u.DisabledAt != nil) {
			return ErrLink
		} else if err != nil {
			return err
		}
		return tx.SetUserPassword(ctx, u.ID, hash, p.now())
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// linkError is ErrLink for a link that is unknown, used or expired.
func linkError(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrLinkUsed) {
		return ErrLink
	}
	return err
}

// Identity is who an identity provider says signed in.
type Identity struct {
	Issuer, Subject string
	// Email is verified by the provider.
	Email, Name string
}

// SignInVerified opens a session for the person an identity provider
// vouched for: the user with id's email, or, when there is none, the user
// the one pending invitation to that email creates (without a password).
// A user is bound to the first provider identity they sign in with; a
// later identity with the same email is refused, as are operators (staff
// sign in with their password) and disabled users: ErrNoUser.
func (p *People) SignInVerified(ctx context.Context, id Identity, client, userAgent string) (string, *store.User, error) {
	email := store.NormalizeEmail(id.Email)
	u, err := p.store.UserByEmail(ctx, email)
	switch {
	case err == nil && (u.DisabledAt != nil || u.Role == store.RoleOperator):
		return "", nil, ErrNoUser
	case err == nil && u.OIDCIssuer != "" && (u.OIDCIssuer != id.Issuer || u.OIDCSubject != id.Subject):
		return "", nil, ErrOtherIdentity
	case err == nil:
		if u.OIDCIssuer == "" {
			if err := p.store.BindOIDC(ctx, u.ID, id.Issuer, id.Subject); err != nil {
				return "", nil, err
			}
			u.OIDCIssuer, u.OIDCSubject = id.Issuer, id.Subject
		}
	case errors.Is(err, store.ErrNotFound):
		if u, err = p.joinByInvitation(ctx, id); err != nil {
			return "", nil, err
		}
	default:
		return "", nil, err
	}
	if err := p.store.RecordSignin(ctx, u.ID, p.now()); err != nil {
		return "", nil, err
	}
	secret, err := p.OpenSession(ctx, u, client, userAgent)
	return secret, u, err
}

// ErrOtherIdentity means the user signed in before through another
// identity at a provider, which the email alone does not replace.
var ErrOtherIdentity = errors.New("this user signs in with another identity at the provider, or with their password")

// ErrSeveralInvitations means more than one account invited the email.
var ErrSeveralInvitations = errors.New("several invitations wait for this email: open the one you mean from its email")

// ErrNoUser means no user has the email an identity provider verified,
// and no invitation is pending for it.
var ErrNoUser = errors.New("no Levqor user has this email, and no invitation is waiting for it: ask your account's owner to invite you")

func (p *People) joinByInvitation(ctx context.Context, ident Identity) (*store.User, error) {
	var u store.User
	name := ident.Name
	err := p.store.InTx(ctx, func(tx *store.Tx) error {
		l, err := tx.UseInvitationFor(ctx, ident.Email, p.now())
		switch {
		case errors.Is(err, store.ErrNotFound):
			return ErrNoUser
		case errors.Is(err, store.ErrSeveralInvitations):
			return ErrSeveralInvitations
		case err != nil:
			return err
		}
		if len(name) > 200 {
			name = name[:200]
		}
		id, err := command.NewID("usr_")
		if err != nil {
			return err
		}
		u = store.User{ID: id, Email: l.Email, Name: strings.TrimSpace(name), Role: l.Role, AccountID: l.AccountID, CreatedAt: p.now(),
			OIDCIssuer: ident.Issuer, OIDCSubject: ident.Subject}
		return userError(tx.CreateUser(ctx, u))
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}
