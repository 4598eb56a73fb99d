package command_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/command"
)

type renameParams struct {
	Name string `json:"name"`
}

func (p *renameParams) Normalize() { p.Name = strings.TrimSpace(p.Name) }

func (p *renameParams) Validate() error {
	if p.Name == "" {
		return command.Fail(http.StatusUnprocessableEntity, "invalid_field", "name", "name is required")
	}
	return nil
}

func TestTyped(t *testing.T) {
	t.Parallel()
	var got *renameParams
	fn := command.Typed(func(_ context.Context, _ *command.Envelope, p renameParams) (command.Effect, error) {
		got = &p
		return nil, nil
	})
	run := func(params string) error {
		got = nil
		_, err := fn(context.Background(), &command.Envelope{Domain: "accounts", Action: "rename", Params: []byte(params)})
		return err
	}

	t.Run("DecodesNormalizesValidates", func(t *testing.T) {
		require.NoError(t, run(`{"name": "  Acme  "}`))
		require.NotNil(t, got)
		require.Equal(t, "Acme", got.Name, "Normalize ran before the handler")
	})
	for name, tc := range map[string]struct {
		params, code, field string
	}{
		"UnknownField":  {`{"name": "Acme", "tier": "x"}`, "invalid_params", ""},
		"TrailingData":  {`{"name": "Acme"} {}`, "invalid_params", ""},
		"NotJSON":       {`name=Acme`, "invalid_params", ""},
		"InvalidField":  {`{"name": "   "}`, "invalid_field", "name"},
		"MissingParams": {``, "invalid_params", ""},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(tc.params)
			var failure *command.Error
			require.True(t, errors.As(err, &failure), "a refusal the command records as failed: %v", err)
			require.Equal(t, http.StatusUnprocessableEntity, failure.Status)
			require.Equal(t, tc.code, failure.Code)
			require.Equal(t, tc.field, failure.Field)
			require.Nil(t, got, "the handler never sees invalid params")
		})
	}
}
