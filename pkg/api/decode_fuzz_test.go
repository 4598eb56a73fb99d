package api_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/command"
)

// FuzzDecodeCommand drives the decoding of command bodies, the parser that
// faces the internet: for any input it must either refuse with a 400 in
// the error shape, or produce parameters that validate to nothing or to a
// 422 naming a field, and that survive a round trip unchanged. It never
// panics. The seed corpus runs in every `go test`.
func FuzzDecodeCommand(f *testing.F) {
	for _, seed := range []string{
		`{"name":"Ada Ltd","contact_email":"ops@ada.example"}`,
		`{"name":"Ada","contact_email":"ops@ada.example","tier":"gold"}`,
		`{"name":42}`,
		`{"name":null,"contact_email":null}`,
		`{"name":"a","name":"b","contact_email":"x@y.example"}`,
		`{"name":"\u0000","contact_email":"x@y.example"}`,
		`{"contact_email":"Ann <a@b.example>"}`,
		`{}`, `[]`, `null`, `"x"`, ``, `{`, `{"name":"A"} trailing`,
		`{"name":{"nested":true}}`, "\xff\xfe", `  {"name":"A","contact_email":"a@b.c"}  `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var create accounts.CreateParams
		checkDecode(t, body, &create, func() error { create.Normalize(); return create.Validate() })
		var update accounts.UpdateParams
		checkDecode(t, body, &update, func() error { update.Normalize(); return update.Validate() })
	})
}

func checkDecode(t *testing.T, body []byte, v any, validate func() error) {
	t.Helper()
	err := api.DecodeJSON(body, v)
	if err != nil {
		var de *api.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("not a DecodeError: %T %v", err, err)
		}
		if de.Status != http.StatusBadRequest || de.Code == "" || de.Message == "" {
			t.Fatalf("bad refusal %+v", de)
		}
		if (de.Code == "unknown_field" || de.Code == "invalid_type") && de.Field == "" {
			t.Fatalf("%s without the field: %+v", de.Code, de)
		}
		return
	}
	if err := validate(); err != nil {
		var ce *command.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusUnprocessableEntity || ce.Field == "" {
			t.Fatalf("validation error without a 422 naming the field: %v", err)
		}
		return
	}
	// Valid parameters are what gets published: they must encode and
	// decode to themselves.
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("valid params do not encode: %v", err)
	}
	again := newLike(v)
	if err := api.DecodeJSON(out, again); err != nil {
		t.Fatalf("re-encoded params %s refused: %v", out, err)
	}
	out2, _ := json.Marshal(again)
	if string(out) != string(out2) {
		t.Fatalf("round trip changed the params: %s != %s", out, out2)
	}
}

func newLike(v any) any {
	switch v.(type) {
	case *accounts.CreateParams:
		return &accounts.CreateParams{}
	default:
		return &accounts.UpdateParams{}
	}
}
