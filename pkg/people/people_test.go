package people_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestPasswordHashes(t *testing.T) {
	t.Parallel()
	h, err := people.HashPassword("correct horse battery")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$"), h)
	ok, err := people.CheckPassword(h, "correct horse battery")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = people.CheckPassword(h, "correct horse batterY")
	require.NoError(t, err)
	require.False(t, ok)

	again, err := people.HashPassword("correct horse battery")
	require.NoError(t, err)
	require.NotEqual(t, h, again, "every hash has its own salt")

	for _, bad := range []string{"", "plain", "$2a$10$abcdefghijklmnopqrstuv", strings.Replace(h, "m=19456", "m=0", 1), strings.Replace(h, "v=19", "v=16", 1)} {
		_, err := people.CheckPassword(bad, "correct horse battery")
		require.ErrorIs(t, err, people.ErrBadHash, bad)
	}
	require.ErrorContains(t, people.CheckPasswordPolicy("short"), "at least 12")
	require.ErrorContains(t, people.CheckPasswordPolicy(strings.Repeat("x", 257)), "at most 256")
	require.NoError(t, people.CheckPasswordPolicy("twelve chars"))
}

// clock is a settable time for timeouts.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(t *testing.T, s *store.Store) (*people.People, *clock) {
	t.Helper()
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
		for _, id := range []string{"acc_one", "acc_two"} {
			if _, err := tx.InsertAccount(ctx, store.Account{ID: id, Name: id, ContactEmail: id + "@example.com", StripeCustomerID: "cus_" + id}); err != nil {
				return err
			}
		}
		return nil
	}))
	p, err := people.New(people.Config{Store: s, Logger: storetest.Logger(t), Now: c.now})
	require.NoError(t, err)
	return p, c
}

func TestSignInAndSessions(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		p, c := setup(t, s)
		u, err := p.CreateUser(ctx, people.NewUser{Email: " Ada@Example.com ", Name: "Ada", Role: store.RoleOwner, AccountID: "acc_one", Password: "a long passphrase"})
		require.NoError(t, err)
		require.Equal(t, "ada@example.com", u.Email)

		t.Run("bad input names the field", func(t *testing.T) {
			for _, tc := range []struct {
				nu    people.NewUser
				field string
			}{
				{people.NewUser{Email: "not-an-email", Role: store.RoleOwner, AccountID: "acc_one"}, "email"},
				{people.NewUser{Email: "ADA@example.com", Role: store.RoleOwner, AccountID: "acc_one"}, "email"},
				{people.NewUser{Email: "b@example.com", Role: "admin", AccountID: "acc_one"}, "role"},
				{people.NewUser{Email: "b@example.com", Role: store.RoleMember}, "account"},
				{people.NewUser{Email: "b@example.com", Role: store.RoleMember, AccountID: "acc_nope"}, "account"},
				{people.NewUser{Email: "b@example.com", Role: store.RoleOperator, AccountID: "acc_one"}, "account"},
				{people.NewUser{Email: "b@example.com", Role: store.RoleMember, AccountID: "acc_one", Password: "short"}, "password"},
			} {
				_, err := p.CreateUser(ctx, tc.nu)
				var fe *people.FieldError
				require.ErrorAs(t, err, &fe, "%+v", tc.nu)
				require.Equal(t, tc.field, fe.Field, "%+v: %v", tc.nu, err)
			}
		})

		first, got, err := p.SignIn(ctx, "ADA@example.com", "a long passphrase", "10.0.0.1", "test")
		require.NoError(t, err)
		require.Equal(t, u.ID, got.ID)
		second, _, err := p.SignIn(ctx, "ada@example.com", "a long passphrase", "10.0.0.1", "test")
		require.NoError(t, err)
		require.NotEqual(t, first, second, "each sign-in gets a new session id")
		_, su, err := p.Session(ctx, first)
		require.NoError(t, err)
		require.Equal(t, u.ID, su.ID)

		t.Run("failures do not tell an unknown email from a wrong password", func(t *testing.T) {
			_, _, wrong := p.SignIn(ctx, "ada@example.com", "not the passphrase", "10.0.0.2", "")
			_, _, unknown := p.SignIn(ctx, "nobody@example.com", "not the passphrase", "10.0.0.2", "")
			require.ErrorIs(t, wrong, people.ErrSignInFailed)
			require.ErrorIs(t, unknown, people.ErrSignInFailed)
			require.Equal(t, wrong.Error(), unknown.Error())
		})

		t.Run("idle and absolute timeouts end a session", func(t *testing.T) {
			cfg := p.Config()
			c.add(cfg.IdleTimeout - time.Minute)
			_, _, err := p.Session(ctx, second) // used: idle time starts again
			require.NoError(t, err)
			c.add(cfg.IdleTimeout - time.Minute)
			_, _, err = p.Session(ctx, second)
			require.NoError(t, err)
			_, _, err = p.Session(ctx, first) // not used for longer than the idle timeout
			require.ErrorIs(t, err, people.ErrNoSession)
			for c.now().Before(got.CreatedAt.Add(cfg.AbsoluteTimeout)) {
				_, _, err = p.Session(ctx, second)
				require.NoError(t, err)
				c.add(cfg.IdleTimeout / 2)
			}
			c.add(time.Minute)
			_, _, err = p.Session(ctx, second)
			require.ErrorIs(t, err, people.ErrNoSession, "however active, a session ends at its absolute timeout")
		})

		t.Run("sign out and sign out everywhere", func(t *testing.T) {
			a, _, err := p.SignIn(ctx, "ada@example.com", "a long passphrase", "10.0.0.3", "")
			require.NoError(t, err)
			b, _, err := p.SignIn(ctx, "ada@example.com", "a long passphrase", "10.0.0.4", "")
			require.NoError(t, err)
			require.NoError(t, p.SignOut(ctx, a))
			_, _, err = p.Session(ctx, a)
			require.ErrorIs(t, err, people.ErrNoSession)
			_, _, err = p.Session(ctx, b)
			require.NoError(t, err)
			n, err := p.SignOutEverywhere(ctx, u.ID)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			_, _, err = p.Session(ctx, b)
			require.ErrorIs(t, err, people.ErrNoSession)
		})

		t.Run("repeated failures lock the user, even against the right password", func(t *testing.T) {
			cfg := p.Config()
			for i := range cfg.LockoutThreshold {
				_, _, err := p.SignIn(ctx, "ada@example.com", "guess", "10.1.0."+string(rune('a'+i)), "")
				require.ErrorIs(t, err, people.ErrSignInFailed)
				c.add(13 * time.Second) // below the per-email rate
			}
			_, _, err := p.SignIn(ctx, "ada@example.com", "a long passphrase", "10.0.0.5", "")
			require.ErrorIs(t, err, people.ErrSignInFailed)
			c.add(cfg.Lockout)
			_, _, err = p.SignIn(ctx, "ada@example.com", "a long passphrase", "10.0.0.5", "")
			require.NoError(t, err, "the lockout ends")
		})

		t.Run("one client or one email is throttled", func(t *testing.T) {
			var err error
			for range people.ClientAttemptsPerMinute + 1 {
				_, _, err = p.SignIn(ctx, "x"+time.Now().Format("150405.000000")+"@example.com", "guess", "10.9.9.9", "")
			}
			require.ErrorIs(t, err, people.ErrThrottled)
			for i := range people.EmailAttemptsPerMinute + 1 {
				_, _, err = p.SignIn(ctx, "target@example.com", "guess", "10.8.0."+string(rune('a'+i)), "")
			}
			require.ErrorIs(t, err, people.ErrThrottled)
		})

		t.Run("a disabled user's sessions end and they cannot sign in", func(t *testing.T) {
			m, err := p.CreateUser(ctx, people.NewUser{Email: "mem@example.com", Role: store.RoleMember, AccountID: "acc_one", Password: "member passphrase"})
			require.NoError(t, err)
			sec, _, err := p.SignIn(ctx, "mem@example.com", "member passphrase", "10.0.1.1", "")
			require.NoError(t, err)
			_, err = s.DisableUser(ctx, m.ID, c.now())
			require.NoError(t, err)
			_, _, err = p.Session(ctx, sec)
			require.ErrorIs(t, err, people.ErrNoSession)
			_, _, err = p.SignIn(ctx, "mem@example.com", "member passphrase", "10.0.1.1", "")
			require.ErrorIs(t, err, people.ErrSignInFailed)
		})
	})
}

func TestInvitations(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		p, c := setup(t, s)
		secret, l, err := p.Invite(ctx, "New@Example.com", store.RoleMember, "acc_two", "user:usr_x")
		require.NoError(t, err)
		require.Equal(t, "new@example.com", l.Email)
		pending, err := s.PendingInvitations(ctx, "acc_two", c.now())
		require.NoError(t, err)
		require.Len(t, pending, 1)

		_, err = p.AcceptInvitation(ctx, secret, "New Person", "short")
		var fe *people.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "password", fe.Field)
		u, err := p.AcceptInvitation(ctx, secret, "New Person", "a fine passphrase")
		require.NoError(t, err)
		require.Equal(t, store.RoleMember, u.Role)
		require.Equal(t, "acc_two", u.AccountID)
		_, _, err = p.SignIn(ctx, "new@example.com", "a fine passphrase", "10.0.0.1", "")
		require.NoError(t, err)

		_, err = p.AcceptInvitation(ctx, secret, "Again", "a fine passphrase")
		require.ErrorIs(t, err, people.ErrLink, "a link works once")
		// Inviting an email that has a user is not refused (that would tell
		// any owner who has a user); accepting it is, to its owner.
		again, _, err := p.Invite(ctx, "new@example.com", store.RoleMember, "acc_one", "user:usr_x")
		require.NoError(t, err)
		_, err = p.AcceptInvitation(ctx, again, "New Person", "a fine passphrase")
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "email", fe.Field)

		late, _, err := p.Invite(ctx, "late@example.com", store.RoleOwner, "acc_two", "cli:ops")
		require.NoError(t, err)
		c.add(p.Config().InvitationTTL)
		_, err = p.AcceptInvitation(ctx, late, "Late", "a fine passphrase")
		require.ErrorIs(t, err, people.ErrLink, "an invitation expires")
		_, err = p.AcceptInvitation(ctx, "unknown", "Late", "a fine passphrase")
		require.ErrorIs(t, err, people.ErrLink)
	})
}

func TestErasureDeletesTheAccountsPeople(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		p, c := setup(t, s)
		for _, nu := range []people.NewUser{
			{Email: "owner@one.example", Role: store.RoleOwner, AccountID: "acc_one", Password: "owner passphrase"},
			{Email: "owner@two.example", Role: store.RoleOwner, AccountID: "acc_two", Password: "owner passphrase"},
		} {
			_, err := p.CreateUser(ctx, nu)
			require.NoError(t, err)
		}
		sec, _, err := p.SignIn(ctx, "owner@one.example", "owner passphrase", "10.0.0.1", "")
		require.NoError(t, err)
		_, _, err = p.Invite(ctx, "invited@one.example", store.RoleMember, "acc_one", "cli:ops")
		require.NoError(t, err)

		var rep store.ErasureReport
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error { return tx.EraseAccountData(ctx, "acc_one", c.now(), &rep) }))
		require.Equal(t, 1, rep.Users)
		_, err = s.UserByEmail(ctx, "owner@one.example")
		require.ErrorIs(t, err, store.ErrNotFound)
		_, _, err = p.Session(ctx, sec)
		require.ErrorIs(t, err, people.ErrNoSession)
		pending, err := s.PendingInvitations(ctx, "acc_one", c.now())
		require.NoError(t, err)
		require.Empty(t, pending)
		_, err = s.UserByEmail(ctx, "owner@two.example")
		require.NoError(t, err, "another account's people stay")
	})
}

func TestSignInThroughAnIdentityProvider(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		p, _ := setup(t, s)
		_, err := p.CreateUser(ctx, people.NewUser{Email: "ada@example.com", Role: store.RoleOwner, AccountID: "acc_one", Password: "a long passphrase"})
		require.NoError(t, err)
		_, err = p.CreateUser(ctx, people.NewUser{Email: "ops@example.com", Role: store.RoleOperator, Password: "a long passphrase"})
		require.NoError(t, err)
		ada := people.Identity{Issuer: "https://idp.example", Subject: "ada-1", Email: "ADA@example.com"}

		_, u, err := p.SignInVerified(ctx, ada, "10.0.0.1", "")
		require.NoError(t, err)
		require.Equal(t, "ada-1", u.OIDCSubject, "bound at the first sign-in")
		_, _, err = p.SignInVerified(ctx, ada, "10.0.0.1", "")
		require.NoError(t, err, "the same identity again")
		for _, other := range []people.Identity{
			{Issuer: "https://idp.example", Subject: "someone-else", Email: "ada@example.com"},
			{Issuer: "https://other-idp.example", Subject: "ada-1", Email: "ada@example.com"},
		} {
			_, _, err = p.SignInVerified(ctx, other, "10.0.0.1", "")
			require.ErrorIs(t, err, people.ErrOtherIdentity, "another identity with the same email is not Ada")
		}
		_, _, err = p.SignInVerified(ctx, people.Identity{Issuer: "https://idp.example", Subject: "ops", Email: "ops@example.com"}, "10.0.0.1", "")
		require.ErrorIs(t, err, people.ErrNoUser, "operators sign in with their password")
		_, _, err = p.SignInVerified(ctx, people.Identity{Issuer: "https://idp.example", Subject: "x", Email: "nobody@example.com"}, "10.0.0.1", "")
		require.ErrorIs(t, err, people.ErrNoUser)

		// One invitation waiting: the identity joins through it. Two: which
		// account is the person's to say, with the link.
		_, _, err = p.Invite(ctx, "nia@example.com", store.RoleMember, "acc_one", "user:x")
		require.NoError(t, err)
		_, nia, err := p.SignInVerified(ctx, people.Identity{Issuer: "https://idp.example", Subject: "nia", Email: "nia@example.com", Name: "Nia"}, "10.0.0.1", "")
		require.NoError(t, err)
		require.Equal(t, "acc_one", nia.AccountID)
		require.Empty(t, nia.PasswordHash)
		for _, acc := range []string{"acc_one", "acc_two"} {
			_, _, err = p.Invite(ctx, "sam@example.com", store.RoleMember, acc, "user:x")
			require.NoError(t, err)
		}
		_, _, err = p.SignInVerified(ctx, people.Identity{Issuer: "https://idp.example", Subject: "sam", Email: "sam@example.com"}, "10.0.0.1", "")
		require.ErrorIs(t, err, people.ErrSeveralInvitations)
	})
}

func TestAResetEndsTheOtherResetLinks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		p, _ := setup(t, s)
		_, err := p.CreateUser(ctx, people.NewUser{Email: "ada@example.com", Role: store.RoleOwner, AccountID: "acc_one", Password: "a long passphrase"})
		require.NoError(t, err)
		first, _, err := p.RequestReset(ctx, "ada@example.com", "10.0.0.1")
		require.NoError(t, err)
		second, _, err := p.RequestReset(ctx, "ada@example.com", "10.0.0.1")
		require.NoError(t, err)
		_, err = p.ResetPassword(ctx, second, "a brand new passphrase")
		require.NoError(t, err)
		_, err = p.ResetPassword(ctx, first, "an attacker's passphrase")
		require.ErrorIs(t, err, people.ErrLink, "a reset makes the other reset links useless")
		_, _, err = p.SignIn(ctx, "ada@example.com", "a brand new passphrase", "10.0.0.2", "")
		require.NoError(t, err)
		_, err = p.ResetPassword(ctx, "not-a-link", "a brand new passphrase")
		require.ErrorIs(t, err, people.ErrLink)
	})
}
