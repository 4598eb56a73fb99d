package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/levqor/levqor/pkg/stripesim"
)

func TestStalePreparedSignatureIsRenewed(t *testing.T) {
	t.Parallel()
	payload, err := stripesim.NewEvent("invoice.paid", stripesim.EventOptions{})
	require.NoError(t, err)
	old := time.Now().Add(-resignAfter - time.Second)
	ev := &event{payload: payload, sig: stripesim.Sign(payload, "whsec_x", old), signedAt: old}
	require.Error(t, webhook.ValidatePayloadWithTolerance(payload, ev.sig, "whsec_x", resignAfter), "the prepared signature is too old")
	sig := ev.signature("whsec_x")
	require.NotEqual(t, ev.sig, sig)
	require.NoError(t, webhook.ValidatePayloadWithTolerance(payload, sig, "whsec_x", resignAfter))

	fresh := time.Now()
	ev = &event{payload: payload, sig: stripesim.Sign(payload, "whsec_x", fresh), signedAt: fresh}
	require.Equal(t, ev.sig, ev.signature("whsec_x"), "a fresh prepared signature is reused")
}
