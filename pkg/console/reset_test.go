package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// mailbox is a mailer that keeps what it is given.
type mailbox struct {
	mu   sync.Mutex
	sent []*store.Notification
}

func (m *mailbox) Send(_ context.Context, n *store.Notification) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, n)
	return nil
}

func (m *mailbox) all() []*store.Notification {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*store.Notification(nil), m.sent...)
}

// TestResetLinksNeverFollowTheHostHeader: a reset link goes to
// LEVQOR_PUBLIC_URL whatever Host the request names; without it, outside
// dev mode, no link is sent at all (the Host header is the client's to
// write, and a link to the attacker's host would hand them the account).
func TestResetLinksNeverFollowTheHostHeader(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: "acc_one", Name: "One", ContactEmail: "one@example.com", StripeCustomerID: "cus_one"})
		return err
	}))
	ppl, err := people.New(people.Config{Store: st, Logger: storetest.Logger(t)})
	require.NoError(t, err)
	_, err = ppl.CreateUser(ctx, people.NewUser{Email: "ada@example.com", Role: store.RoleOwner, AccountID: "acc_one", Password: "a long passphrase"})
	require.NoError(t, err)

	for _, tc := range []struct {
		name, publicURL string
		wantLink        string
	}{
		{"WithThePublicURL", "https://levqor.example.com", "https://levqor.example.com/app/reset/"},
		{"WithoutIt", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mail := &mailbox{}
			c, err := New(Config{People: ppl, API: http.NotFoundHandler(), Logger: storetest.Logger(t), Store: st, Mailer: mail, PublicURL: tc.publicURL})
			require.NoError(t, err)
			req := httptest.NewRequest(http.MethodPost, "http://evil.example/app/reset", strings.NewReader(url.Values{"email": {"ada@example.com"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), `id="reset-sent"`, "the answer is the same either way")
			if tc.wantLink == "" {
				time.Sleep(200 * time.Millisecond)
				require.Empty(t, mail.all(), "no link without LEVQOR_PUBLIC_URL")
				return
			}
			require.Eventually(t, func() bool { return len(mail.all()) == 1 }, 5*time.Second, 10*time.Millisecond)
			body := mail.all()[0].BodyText
			require.Contains(t, body, tc.wantLink)
			require.NotContains(t, body, "evil.example")
		})
	}
}
