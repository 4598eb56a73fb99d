package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Roles of users.
const (
	// RoleOwner manages an account: its people, API keys and billing.
	RoleOwner = "owner"
	// RoleMember uses an account's backups and tickets.
	RoleMember = "member"
	// RoleOperator is staff: every account, the operator pages.
	RoleOperator = "operator"
)

// ValidRole reports whether role is one of the roles above.
func ValidRole(role string) bool {
	return role == RoleOwner || role == RoleMember || role == RoleOperator
}

// ErrExists means the thing to create (a user's email) is already taken.
var ErrExists = errors.New("store: already exists")

// User is a person who signs in to the console.
type User struct {
	// ID is "usr_…".
	ID string `json:"id"`
	// Email is lower-cased, and names one user.
	Email string `json:"email"`
	Name  string `json:"name"`
	// Role is RoleOwner, RoleMember or RoleOperator.
	Role string `json:"role"`
	// AccountID is the account of an owner or member; "" for operators.
	AccountID string `json:"account_id,omitempty"`
	// PasswordHash is the argon2id PHC string; "" without a password.
	PasswordHash  string     `json:"-"`
	FailedSignins int        `json:"failed_signins"`
	LockedUntil   *time.Time `json:"locked_until,omitempty"`
	DisabledAt    *time.Time `json:"disabled_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	LastSigninAt  *time.Time `json:"last_signin_at,omitempty"`
	// OIDCIssuer and OIDCSubject are the identity provider's identity the
	// user is bound to (their first sign-in through one); "" for none.
	OIDCIssuer  string `json:"oidc_issuer,omitempty"`
	OIDCSubject string `json:"-"`
}

type userRow struct {
	ID            string         `db:"id"`
	Email         string         `db:"email"`
	Name          string         `db:"name"`
	Role          string         `db:"role"`
	AccountID     sql.NullString `db:"account_id"`
	PasswordHash  sql.NullString `db:"password_hash"`
	FailedSignins int            `db:"failed_signins"`
	LockedUntil   sql.NullTime   `db:"locked_until"`
	DisabledAt    sql.NullTime   `db:"disabled_at"`
	CreatedAt     time.Time      `db:"created_at"`
	UpdatedAt     time.Time      `db:"updated_at"`
	LastSigninAt  sql.NullTime   `db:"last_signin_at"`
	OIDCIssuer    sql.NullString `db:"oidc_issuer"`
	OIDCSubject   sql.NullString `db:"oidc_subject"`
}

func (r userRow) user() User {
	return User{
		ID: r.ID, Email: r.Email, Name: r.Name, Role: r.Role, AccountID: r.AccountID.String,
		PasswordHash: r.PasswordHash.String, FailedSignins: r.FailedSignins,
		LockedUntil: fromNull(r.LockedUntil), DisabledAt: fromNull(r.DisabledAt),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), LastSigninAt: fromNull(r.LastSigninAt),
		OIDCIssuer: r.OIDCIssuer.String, OIDCSubject: r.OIDCSubject.String,
	}
}

const userColumns = `id, email, name, role, account_id, password_hash, failed_signins, locked_until, disabled_at, created_at, updated_at, last_signin_at, oidc_issuer, oidc_subject`

// NormalizeEmail is the form in which emails are stored and looked up.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

const insertUserSQL = `INSERT INTO users (id, email, name, role, account_id, password_hash, oidc_issuer, oidc_subject, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING`

// CreateUser stores u. Its email must be free (else an error wrapping
// ErrExists), an owner's or member's account must exist (else ErrNotFound)
// and an operator has none.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	return s.InTx(ctx, func(tx *Tx) error { return tx.CreateUser(ctx, u) })
}

// CreateUser is Store.CreateUser within tx.
func (tx *Tx) CreateUser(ctx context.Context, u User) error {
	if u.ID == "" || u.Email == "" || !ValidRole(u.Role) {
		return fmt.Errorf("store: creating user: id, email and a valid role are required")
	}
	if (u.Role == RoleOperator) != (u.AccountID == "") {
		return fmt.Errorf("store: creating user %s: an operator has no account, an owner or member has one", u.ID)
	}
	var account, hash any
	if u.AccountID != "" {
		var n int
		if err := tx.tx.GetContext(ctx, &n, tx.rebind(accountExistsSQL), u.AccountID); err != nil {
			return fmt.Errorf("store: creating user %s: %w", u.ID, err)
		}
		if n == 0 {
			return fmt.Errorf("store: account %s: %w", u.AccountID, ErrNotFound)
		}
		account = u.AccountID
	}
	if u.PasswordHash != "" {
		hash = u.PasswordHash
	}
	var issuer, subject any
	if u.OIDCIssuer != "" {
		issuer, subject = u.OIDCIssuer, u.OIDCSubject
	}
	at := ts(orNow(u.CreatedAt))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(insertUserSQL),
		u.ID, NormalizeEmail(u.Email), u.Name, u.Role, account, hash, issuer, subject, at, at)
	if err != nil {
		return fmt.Errorf("store: creating user %s: %w", u.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("store: user with this email: %w", ErrExists)
	}
	return nil
}

const userByEmailSQL = `SELECT ` + userColumns + ` FROM users WHERE email = ?`

// UserByEmail returns the user with email (any case), or an error wrapping
// ErrNotFound.
func (q Querier) UserByEmail(ctx context.Context, email string) (*User, error) {
	return q.getUser(ctx, userByEmailSQL, NormalizeEmail(email))
}

const userByIDSQL = `SELECT ` + userColumns + ` FROM users WHERE id = ?`

// UserByID returns the user id, or an error wrapping ErrNotFound.
func (q Querier) UserByID(ctx context.Context, id string) (*User, error) {
	return q.getUser(ctx, userByIDSQL, id)
}

func (q Querier) getUser(ctx context.Context, query string, arg string) (*User, error) {
	var r userRow
	err := q.db.GetContext(ctx, &r, q.rebind(query), arg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: user: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading user: %w", err)
	}
	u := r.user()
	return &u, nil
}

const listUsersSQL = `SELECT ` + userColumns + ` FROM users
WHERE (? = '' OR account_id = ?) AND (? = FALSE OR role = 'operator')
ORDER BY created_at, id`

// ListUsers returns the users of accountID ("" for all; operators only
// with operators), oldest first, disabled ones included.
func (s *Store) ListUsers(ctx context.Context, accountID string, operators bool) ([]User, error) {
	var rows []userRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(listUsersSQL), accountID, accountID, operators); err != nil {
		return nil, fmt.Errorf("store: listing users: %w", err)
	}
	out := make([]User, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.user())
	}
	return out, nil
}

// DisableUser disables the user id at at and ends every session of theirs.
// Disabling a disabled user keeps the first time. An unknown id is an
// error wrapping ErrNotFound.
func (s *Store) DisableUser(ctx context.Context, id string, at time.Time) (*User, error) {
	at = ts(orNow(at))
	var u *User
	err := s.InTx(ctx, func(tx *Tx) error {
		res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE users SET disabled_at = COALESCE(disabled_at, ?), updated_at = ? WHERE id = ?`), at, at, id)
		if err != nil {
			return fmt.Errorf("store: disabling user %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: user %s: %w", id, ErrNotFound)
		}
		if _, err := tx.tx.ExecContext(ctx, tx.rebind(deleteUserSessionsSQL), id); err != nil {
			return fmt.Errorf("store: disabling user %s: %w", id, err)
		}
		// The invitations they sent and nobody used go with them.
		if _, err := tx.tx.ExecContext(ctx, tx.rebind(`DELETE FROM user_links WHERE created_by = ? AND used_at IS NULL`), "user:"+id); err != nil {
			return fmt.Errorf("store: disabling user %s: %w", id, err)
		}
		var r userRow
		if err := tx.tx.GetContext(ctx, &r, tx.rebind(userByIDSQL), id); err != nil {
			return fmt.Errorf("store: disabling user %s: %w", id, err)
		}
		v := r.user()
		u = &v
		return nil
	})
	return u, err
}

// SetUserPassword replaces the user's password hash, lifts a lockout,
// ends every session of theirs (a reset signs out everywhere) and makes
// every unused reset link of theirs useless.
func (s *Store) SetUserPassword(ctx context.Context, id, hash string, at time.Time) error {
	return s.InTx(ctx, func(tx *Tx) error { return tx.SetUserPassword(ctx, id, hash, at) })
}

// SetUserPassword is Store.SetUserPassword within tx.
func (tx *Tx) SetUserPassword(ctx context.Context, id, hash string, at time.Time) error {
	at = ts(orNow(at))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE users SET password_hash = ?, failed_signins = 0, locked_until = NULL, updated_at = ? WHERE id = ?`), hash, at, id)
	if err != nil {
		return fmt.Errorf("store: setting password of user %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: user %s: %w", id, ErrNotFound)
	}
	if _, err := tx.tx.ExecContext(ctx, tx.rebind(deleteUserSessionsSQL), id); err != nil {
		return fmt.Errorf("store: setting password of user %s: %w", id, err)
	}
	if _, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE user_links SET used_at = ?
WHERE purpose = 'reset' AND used_at IS NULL AND email = (SELECT email FROM users WHERE id = ?)`), at, id); err != nil {
		return fmt.Errorf("store: setting password of user %s: %w", id, err)
	}
	return nil
}

// BindOIDC binds user id to the identity provider's identity, unless it
// is bound already.
func (s *Store) BindOIDC(ctx context.Context, id, issuer, subject string) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE users SET oidc_issuer = ?, oidc_subject = ? WHERE id = ? AND oidc_issuer IS NULL`), issuer, subject, id)
	if err != nil {
		return fmt.Errorf("store: binding user %s to an identity provider: %w", id, err)
	}
	return nil
}

// DeleteStaleLinks deletes links used or expired before before.
func (s *Store) DeleteStaleLinks(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM user_links WHERE expires_at < ? OR used_at < ?`), ts(before), ts(before))
	if err != nil {
		return 0, fmt.Errorf("store: deleting stale links: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// RecordSigninFailure counts a failed password sign-in of user id. When
// the count reaches threshold the user is locked until at+lockFor and the
// count starts again. It returns the user as updated.
func (s *Store) RecordSigninFailure(ctx context.Context, id string, at time.Time, threshold int, lockFor time.Duration) (*User, error) {
	at = ts(orNow(at))
	var u *User
	err := s.InTx(ctx, func(tx *Tx) error {
		var r userRow
		if err := tx.tx.GetContext(ctx, &r, tx.rebind(userByIDSQL+s.forUpdate()), id); err != nil {
			return fmt.Errorf("store: recording failed sign-in of %s: %w", id, err)
		}
		failed, locked := r.FailedSignins+1, sql.NullTime{}
		if r.LockedUntil.Valid && r.LockedUntil.Time.After(at) {
			locked = r.LockedUntil
		}
		if failed >= threshold {
			failed, locked = 0, sql.NullTime{Time: at.Add(lockFor), Valid: true}
		}
		if _, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE users SET failed_signins = ?, locked_until = ? WHERE id = ?`), failed, locked, id); err != nil {
			return fmt.Errorf("store: recording failed sign-in of %s: %w", id, err)
		}
		r.FailedSignins, r.LockedUntil = failed, locked
		v := r.user()
		u = &v
		return nil
	})
	return u, err
}

// RecordSignin notes a good sign-in of user id: failures are forgotten.
func (s *Store) RecordSignin(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE users SET failed_signins = 0, locked_until = NULL, last_signin_at = ? WHERE id = ?`), ts(orNow(at)), id)
	if err != nil {
		return fmt.Errorf("store: recording sign-in of %s: %w", id, err)
	}
	return nil
}

// forUpdate locks rows read in a transaction where the dialect can.
func (s *Store) forUpdate() string {
	if s.dialect == DialectSQLite {
		return "" // SQLite's writer lock serialises transactions already
	}
	return " FOR UPDATE"
}

// Session is a signed-in browser.
type Session struct {
	// IDHash is the SHA-256 (hex) of the cookie's secret.
	IDHash     string    `db:"id_hash"`
	UserID     string    `db:"user_id"`
	CreatedAt  time.Time `db:"created_at"`
	LastSeenAt time.Time `db:"last_seen_at"`
	ExpiresAt  time.Time `db:"expires_at"`
	UserAgent  string    `db:"user_agent"`
	ClientAddr string    `db:"client_addr"`
}

const insertSessionSQL = `INSERT INTO user_sessions (id_hash, user_id, created_at, last_seen_at, expires_at, user_agent, client_addr)
VALUES (?, ?, ?, ?, ?, ?, ?)`

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, se Session) error {
	_, err := s.db.ExecContext(ctx, s.rebind(insertSessionSQL), se.IDHash, se.UserID, ts(se.CreatedAt), ts(se.LastSeenAt), ts(se.ExpiresAt), se.UserAgent, se.ClientAddr)
	if err != nil {
		return fmt.Errorf("store: creating session: %w", err)
	}
	return nil
}

const sessionByHashSQL = `SELECT id_hash, user_id, created_at, last_seen_at, expires_at, user_agent, client_addr
FROM user_sessions WHERE id_hash = ?`

// SessionByHash returns the session and its user, or an error wrapping
// ErrNotFound. Whether it is still valid is the caller's decision.
func (s *Store) SessionByHash(ctx context.Context, hash string) (*Session, *User, error) {
	var se Session
	err := s.db.GetContext(ctx, &se, s.rebind(sessionByHashSQL), hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("store: session: %w", ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: reading session: %w", err)
	}
	u, err := s.UserByID(ctx, se.UserID)
	if err != nil {
		return nil, nil, err
	}
	se.CreatedAt, se.LastSeenAt, se.ExpiresAt = se.CreatedAt.UTC(), se.LastSeenAt.UTC(), se.ExpiresAt.UTC()
	return &se, u, nil
}

// TouchSession records that the session was used at at.
func (s *Store) TouchSession(ctx context.Context, hash string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE user_sessions SET last_seen_at = ? WHERE id_hash = ?`), ts(at), hash); err != nil {
		return fmt.Errorf("store: touching session: %w", err)
	}
	return nil
}

// DeleteSession ends one session.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM user_sessions WHERE id_hash = ?`), hash); err != nil {
		return fmt.Errorf("store: deleting session: %w", err)
	}
	return nil
}

const deleteUserSessionsSQL = `DELETE FROM user_sessions WHERE user_id = ?`

// DeleteUserSessions ends every session of the user ("sign out
// everywhere") and returns how many there were.
func (s *Store) DeleteUserSessions(ctx context.Context, userID string) (int, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(deleteUserSessionsSQL), userID)
	if err != nil {
		return 0, fmt.Errorf("store: deleting sessions of %s: %w", userID, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// DeleteExpiredSessions deletes the sessions past their absolute timeout
// at at, or idle since before idleSince, and returns how many.
func (s *Store) DeleteExpiredSessions(ctx context.Context, at, idleSince time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM user_sessions WHERE expires_at <= ? OR last_seen_at < ?`), ts(at), ts(idleSince))
	if err != nil {
		return 0, fmt.Errorf("store: deleting expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Link purposes.
const (
	LinkInvite = "invite"
	LinkReset  = "reset"
)

// UserLink is a single-use link sent to a person: an invitation to an
// account or a password reset.
type UserLink struct {
	TokenHash string     `json:"-"`
	Purpose   string     `json:"purpose"`
	Email     string     `json:"email"`
	Role      string     `json:"role"`
	AccountID string     `json:"account_id,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
}

type linkRow struct {
	TokenHash string         `db:"token_hash"`
	Purpose   string         `db:"purpose"`
	Email     string         `db:"email"`
	Role      string         `db:"role"`
	AccountID sql.NullString `db:"account_id"`
	CreatedBy string         `db:"created_by"`
	CreatedAt time.Time      `db:"created_at"`
	ExpiresAt time.Time      `db:"expires_at"`
	UsedAt    sql.NullTime   `db:"used_at"`
}

func (r linkRow) link() UserLink {
	return UserLink{
		TokenHash: r.TokenHash, Purpose: r.Purpose, Email: r.Email, Role: r.Role, AccountID: r.AccountID.String,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), UsedAt: fromNull(r.UsedAt),
	}
}

const linkColumns = `token_hash, purpose, email, role, account_id, created_by, created_at, expires_at, used_at`

const insertLinkSQL = `INSERT INTO user_links (token_hash, purpose, email, role, account_id, created_by, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// CreateUserLink stores l. An invitation's account must exist.
func (s *Store) CreateUserLink(ctx context.Context, l UserLink) error {
	var account any
	if l.AccountID != "" {
		account = l.AccountID
	}
	_, err := s.db.ExecContext(ctx, s.rebind(insertLinkSQL), l.TokenHash, l.Purpose, NormalizeEmail(l.Email), l.Role, account,
		l.CreatedBy, ts(orNow(l.CreatedAt)), ts(l.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: creating %s link: %w", l.Purpose, err)
	}
	return nil
}

// PeekUserLink returns the unused, unexpired link of purpose whose hash
// is hash, without using it: ErrNotFound or ErrLinkUsed otherwise.
func (s *Store) PeekUserLink(ctx context.Context, hash, purpose string, at time.Time) (*UserLink, error) {
	var r linkRow
	err := s.db.GetContext(ctx, &r, s.rebind(`SELECT `+linkColumns+` FROM user_links WHERE token_hash = ? AND purpose = ?`), hash, purpose)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: %s link: %w", purpose, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading %s link: %w", purpose, err)
	}
	if r.UsedAt.Valid || !r.ExpiresAt.After(ts(orNow(at))) {
		return nil, ErrLinkUsed
	}
	l := r.link()
	return &l, nil
}

// ErrLinkUsed means a link was used already or has expired.
var ErrLinkUsed = errors.New("store: link used or expired")

// UseUserLink marks the unused, unexpired link of purpose whose hash is
// hash as used at at, within tx, and returns it: a link works once. A
// link not found is ErrNotFound; a used or expired one ErrLinkUsed.
func (tx *Tx) UseUserLink(ctx context.Context, hash, purpose string, at time.Time) (*UserLink, error) {
	at = ts(orNow(at))
	var r linkRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+linkColumns+` FROM user_links WHERE token_hash = ? AND purpose = ?`), hash, purpose)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: %s link: %w", purpose, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading %s link: %w", purpose, err)
	}
	if r.UsedAt.Valid || !r.ExpiresAt.After(at) {
		return nil, ErrLinkUsed
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE user_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL`), at, hash)
	if err != nil {
		return nil, fmt.Errorf("store: using %s link: %w", purpose, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrLinkUsed // taken by a concurrent use
	}
	l := r.link()
	l.UsedAt = &at
	return &l, nil
}

// PendingInvitations lists the account's invitations not used and not
// expired at at, newest first.
func (s *Store) PendingInvitations(ctx context.Context, accountID string, at time.Time) ([]UserLink, error) {
	var rows []linkRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+linkColumns+` FROM user_links
WHERE purpose = 'invite' AND account_id = ? AND used_at IS NULL AND expires_at > ? ORDER BY created_at DESC`), accountID, ts(orNow(at)))
	if err != nil {
		return nil, fmt.Errorf("store: listing invitations: %w", err)
	}
	out := make([]UserLink, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.link())
	}
	return out, nil
}

// ErrSeveralInvitations means more than one invitation waits for an email.
var ErrSeveralInvitations = errors.New("store: several invitations wait for this email")

// UseInvitationFor marks the newest pending invitation of email as used
// at at, within tx, and returns it: how a person whose identity provider
// vouches for the email joins without the link. None pending is
// ErrNotFound.
func (tx *Tx) UseInvitationFor(ctx context.Context, email string, at time.Time) (*UserLink, error) {
	at = ts(orNow(at))
	var hashes []string
	err := tx.tx.SelectContext(ctx, &hashes, tx.rebind(`SELECT token_hash FROM user_links
WHERE purpose = 'invite' AND email = ? AND used_at IS NULL AND expires_at > ? ORDER BY created_at DESC LIMIT 2`), NormalizeEmail(email), at)
	switch {
	case err != nil:
		return nil, fmt.Errorf("store: reading invitations: %w", err)
	case len(hashes) == 0:
		return nil, fmt.Errorf("store: invitation for this email: %w", ErrNotFound)
	case len(hashes) > 1:
		// Which account the person means is theirs to say, with the link.
		return nil, ErrSeveralInvitations
	}
	return tx.UseUserLink(ctx, hashes[0], LinkInvite, at)
}

// RevokeInvitation deletes the unused invitation of accountID whose hash
// is hash, and reports whether there was one.
func (s *Store) RevokeInvitation(ctx context.Context, accountID, hash string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM user_links WHERE purpose = 'invite' AND account_id = ? AND token_hash = ? AND used_at IS NULL`), accountID, hash)
	if err != nil {
		return false, fmt.Errorf("store: revoking an invitation: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
