package stripemock_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/stripemock"
)

func TestStartServesTheStripeAPI(t *testing.T) {
	t.Parallel()
	base := stripemock.Start(t)
	form := url.Values{"email": {"ops@example.com"}, "name": {"Ops"}}
	req, err := http.NewRequest(http.MethodPost, base+"/v1/customers", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.SetBasicAuth(stripemock.TestKey, "")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A request Stripe would refuse is refused: the mock validates.
	bad, err := http.NewRequest(http.MethodPost, base+"/v1/customers", strings.NewReader("no_such_param=1"))
	require.NoError(t, err)
	bad.SetBasicAuth(stripemock.TestKey, "")
	bad.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp2, err := http.DefaultClient.Do(bad)
	require.NoError(t, err)
	defer resp2.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp2.StatusCode)
}

func TestParallelInstancesDoNotCollide(t *testing.T) {
	t.Parallel()
	a, b := stripemock.Start(t), stripemock.Start(t)
	require.NotEqual(t, a, b)
}
