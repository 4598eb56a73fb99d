package stripeapi_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/stripeapi"
)

func TestClassifyPolicy(t *testing.T) {
	t.Parallel()
	stripeErr := func(code int) error {
		return &stripe.Error{HTTPStatusCode: code, Msg: "no such thing", Param: "email"}
	}
	for name, tc := range map[string]struct {
		err        error
		permanent  bool
		retryAfter time.Duration
	}{
		"RateLimited":  {stripeErr(http.StatusTooManyRequests), false, stripeapi.RetryAfterDefault},
		"KeyRefused":   {stripeErr(http.StatusUnauthorized), false, 0},
		"Forbidden":    {stripeErr(http.StatusForbidden), false, 0},
		"BadRequest":   {stripeErr(http.StatusBadRequest), true, 0},
		"NotFound":     {stripeErr(http.StatusNotFound), true, 0},
		"ServerError":  {stripeErr(http.StatusBadGateway), false, 0},
		"NetworkError": {errors.New("dial tcp: connection refused"), false, 0},
	} {
		t.Run(name, func(t *testing.T) {
			err := stripeapi.Classify("creating customer", tc.err)
			require.Error(t, err)
			require.Contains(t, err.Error(), "creating customer", "the error says what was being done")
			require.Equal(t, tc.permanent, bus.IsPermanent(err), "permanent: %v", err)
			var ra *bus.RetryAfterError
			if tc.retryAfter > 0 {
				require.True(t, errors.As(err, &ra), "waits out the rate limit: %v", err)
				require.Equal(t, tc.retryAfter, ra.Delay)
			} else {
				require.False(t, errors.As(err, &ra))
			}
		})
	}
	require.NoError(t, stripeapi.Classify("anything", nil))
	require.True(t, stripeapi.NotFound(stripeErr(http.StatusNotFound)))
	require.False(t, stripeapi.NotFound(stripeErr(http.StatusBadRequest)))
}

func TestCommandError(t *testing.T) {
	t.Parallel()
	fields := map[string]string{"email": "contact_email"}
	err := stripeapi.CommandError("creating customer", &stripe.Error{HTTPStatusCode: 400, Msg: "Invalid email address", Param: "email"},
		func(p string) string { return fields[p] })
	var failure *command.Error
	require.True(t, errors.As(err, &failure), "a refusal fails the command: %v", err)
	require.Equal(t, http.StatusUnprocessableEntity, failure.Status)
	require.Equal(t, "stripe_rejected", failure.Code)
	require.Equal(t, "contact_email", failure.Field, "named by the API's field, not Stripe's")
	require.Contains(t, failure.Message, "Invalid email address")

	err = stripeapi.CommandError("creating customer", &stripe.Error{HTTPStatusCode: 503, Msg: "down"}, nil)
	require.False(t, errors.As(err, &failure), "an outage is retried, not answered")
	require.False(t, bus.IsPermanent(err))
}
