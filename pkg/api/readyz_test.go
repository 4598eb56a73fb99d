package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestReadinessTellsOnlyOperatorsWhatIsBehindIt: the public /readyz says
// ready or not; which checks ran and how they fared is for operators.
func TestReadinessTellsOnlyOperatorsWhatIsBehindIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	r := h.do(t, http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"ready":true}`, string(r.body))
	r = h.do(t, http.MethodGet, "/readyz", h.keyA, nil)
	require.JSONEq(t, `{"ready":true}`, string(r.body), "an account key is not an operator's")
	r = h.do(t, http.MethodGet, "/readyz", "lvq_not_a_real_key_at_all_0000000000000000", nil)
	require.Equal(t, http.StatusOK, r.status, "a bad key changes nothing on a public route")
	require.JSONEq(t, `{"ready":true}`, string(r.body))
	r = h.do(t, http.MethodGet, "/readyz", h.opKey, nil)
	require.JSONEq(t, `{"ready":true,"checks":{"nats":"ok","database":"ok"}}`, string(r.body))
}
