package command_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/command"
)

func TestRoute(t *testing.T) {
	t.Parallel()
	var ran string
	actions := command.Actions{
		"create": func(ctx context.Context, e *command.Envelope) (command.Effect, error) {
			ran = e.Action
			return nil, nil
		},
	}
	_, err := command.Route(context.Background(), &command.Envelope{Domain: "tickets", Action: "create"}, "support", "tickets", actions)
	require.NoError(t, err)
	require.Equal(t, "create", ran, "the action's func carries the command out")

	for name, e := range map[string]*command.Envelope{
		"OtherDomain":   {Domain: "billing", Action: "create"},
		"UnknownAction": {Domain: "tickets", Action: "delete"},
	} {
		t.Run(name, func(t *testing.T) {
			ran = ""
			_, err := command.Route(context.Background(), e, "support", "tickets", actions)
			var failure *command.Error
			require.True(t, errors.As(err, &failure), "a refusal the command records as failed: %v", err)
			require.Equal(t, http.StatusUnprocessableEntity, failure.Status)
			require.Equal(t, "unsupported_command", failure.Code)
			require.Empty(t, ran, "nothing runs")
		})
	}
}
