-- People: the users who sign in to the console, their sessions, and the
-- single-use links (invitations, password resets) sent to them by email.
--
-- A user belongs to one account as its owner or a member, or is staff
-- with the operator role and no account. An email is one user: sign-in
-- by email (or by an identity provider's verified email) must name one
-- person. Passwords are kept as argon2id hashes (PHC strings); a user
-- invited but not yet accepted does not exist here, only its link does.
-- Sessions and links are looked up by the SHA-256 of their secret: a
-- copy of the database opens no session.

-- +goose Up
CREATE TABLE users (
    id             TEXT        PRIMARY KEY,
    -- Lower-cased; the unique index makes an email one person.
    email          TEXT        NOT NULL,
    name           TEXT        NOT NULL DEFAULT '',
    role           TEXT        NOT NULL,
    account_id     TEXT        REFERENCES accounts (id),
    -- NULL: no password (signs in through an identity provider only).
    password_hash  TEXT,
    -- Consecutive failed password sign-ins; locked_until is set when
    -- they reach the lockout threshold, and a good sign-in resets both.
    failed_signins INTEGER     NOT NULL DEFAULT 0,
    locked_until   DATETIME,
    disabled_at    DATETIME,
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL,
    last_signin_at DATETIME,
    -- The identity provider's issuer and subject the user first signed in
    -- with: later sign-ins through a provider must be that identity, not
    -- merely carry the same email.
    oidc_issuer    TEXT,
    oidc_subject   TEXT,
    CONSTRAINT users_role_check CHECK (
        (role = 'operator' AND account_id IS NULL) OR (role IN ('owner', 'member') AND account_id IS NOT NULL)
    )
);
CREATE UNIQUE INDEX users_email_idx ON users (email);
CREATE INDEX users_account_idx ON users (account_id);

CREATE TABLE user_sessions (
    -- SHA-256 of the session's secret (the cookie), hex.
    id_hash      TEXT        PRIMARY KEY,
    user_id      TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   DATETIME NOT NULL,
    -- Touched at most once a minute; idle past the idle timeout ends it.
    last_seen_at DATETIME NOT NULL,
    -- The absolute timeout: no session outlives it, however active.
    expires_at   DATETIME NOT NULL,
    -- For the user's list of sessions; never used to decide anything.
    user_agent   TEXT        NOT NULL DEFAULT '',
    client_addr  TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id);
CREATE INDEX user_sessions_expires_idx ON user_sessions (expires_at);

CREATE TABLE user_links (
    -- SHA-256 of the link's secret, hex.
    token_hash  TEXT        PRIMARY KEY,
    -- 'invite' creates the user when accepted; 'reset' sets a password.
    purpose     TEXT        NOT NULL,
    email       TEXT        NOT NULL,
    role        TEXT        NOT NULL,
    account_id  TEXT        REFERENCES accounts (id),
    -- Who made the link: "user:<id>", "cli:<name>".
    created_by  TEXT        NOT NULL,
    created_at  DATETIME NOT NULL,
    expires_at  DATETIME NOT NULL,
    used_at     DATETIME,
    CONSTRAINT user_links_purpose_check CHECK (purpose IN ('invite', 'reset'))
);
CREATE INDEX user_links_email_idx ON user_links (email);
CREATE INDEX user_links_account_idx ON user_links (account_id);

-- +goose Down
DROP TABLE user_links;
DROP TABLE user_sessions;
DROP TABLE users;
