package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/auth"
)

// TestListScopeFailsClosed: a list restricted to "" means every account,
// so only an operator may get it; a key that names no account (which no
// key should be) sees nothing.
func TestListScopeFailsClosed(t *testing.T) {
	t.Parallel()
	s := &Server{}
	scope := func(p auth.Principal, query string) (string, int, bool, int) {
		r := httptest.NewRequest(http.MethodGet, "/v1/sources"+query, nil)
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		w := httptest.NewRecorder()
		acc, limit, ok := s.listScope(w, r)
		return acc, limit, ok, w.Code
	}
	_, _, ok, code := scope(auth.Principal{KeyID: "key_x"}, "")
	require.False(t, ok)
	require.Equal(t, http.StatusForbidden, code)

	acc, _, ok, _ := scope(auth.Principal{KeyID: "key_a", AccountID: "acc_a"}, "")
	require.True(t, ok)
	require.Equal(t, "acc_a", acc)

	acc, _, ok, _ = scope(auth.Principal{KeyID: "key_op", Operator: true}, "")
	require.True(t, ok)
	require.Empty(t, acc, "an operator lists every account's")
}
