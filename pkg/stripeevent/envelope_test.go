package stripeevent_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/stripeevent"
	"github.com/levqor/levqor/pkg/stripesim"
)

func TestParseNamesTheField(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ body, field string }{
		"NotJSON":     {`nope`, ""},
		"WrongObject": {`{"object":"invoice","id":"evt_1","type":"a.b","created":1}`, "object"},
		"NoID":        {`{"type":"a.b","created":1}`, "id"},
		"IDWithSpace": {`{"id":"evt 1","type":"a.b","created":1}`, "id"},
		"NoType":      {`{"id":"evt_1","created":1}`, "type"},
		"WildType":    {`{"id":"evt_1","type":"invoice.*","created":1}`, "type"},
		"NoCreated":   {`{"id":"evt_1","type":"invoice.paid"}`, "created"},
	} {
		t.Run(name, func(t *testing.T) {
			_, field, err := stripeevent.Parse([]byte(tc.body))
			require.ErrorIs(t, err, stripeevent.ErrMalformed)
			require.Equal(t, tc.field, field)
		})
	}
	for _, typ := range stripesim.SupportedTypes() {
		b, err := stripesim.NewEvent(typ, stripesim.EventOptions{})
		require.NoError(t, err)
		e, _, err := stripeevent.Parse(b)
		require.NoError(t, err, typ)
		require.Equal(t, typ, e.Type)
	}
}

var subjectSafe = regexp.MustCompile(`^[a-z0-9_.]+$`)

// FuzzParse checks that whatever arrives, Parse never panics, and anything it
// accepts is safe to use as a subject token and a header value.
func FuzzParse(f *testing.F) {
	for _, typ := range stripesim.SupportedTypes() {
		b, _ := stripesim.NewEvent(typ, stripesim.EventOptions{})
		f.Add(b)
	}
	f.Add([]byte(`{"id":"evt_1","type":"a..b","created":1}`))
	f.Add([]byte(`{"id":"evt_1\r\nX: y","type":"a.b","created":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, _, err := stripeevent.Parse(body)
		if err != nil {
			if !errors.Is(err, stripeevent.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !subjectSafe.MatchString(e.Type) || e.Type[0] == '.' || e.Type[len(e.Type)-1] == '.' {
			t.Fatalf("accepted unsafe type %q", e.Type)
		}
		if !stripeevent.ValidID(e.ID) {
			t.Fatalf("accepted unsafe id %q", e.ID)
		}
	})
}
