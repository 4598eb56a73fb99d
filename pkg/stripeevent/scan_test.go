package stripeevent

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/stripesim"
)

// checkAgainstEncodingJSON asserts that the single-pass scanner agrees with
// encoding/json on body: the same bodies are JSON, and where encoding/json
// decodes the envelope without error, the scanner reads the same fields.
func checkAgainstEncodingJSON(t *testing.T, body []byte) {
	t.Helper()
	got, err := scanEnvelope(body)
	var syn *syntaxError
	isSyntax := errors.As(err, &syn)
	if valid := json.Valid(body); valid == isSyntax {
		t.Fatalf("json.Valid=%v but scanner error=%v for %q", valid, err, body)
	}
	if isSyntax {
		return
	}
	trimmed := strings.TrimLeft(string(body), " \t\r\n")
	if !strings.HasPrefix(trimmed, "{") {
		if !errors.Is(err, errNotObject) {
			t.Fatalf("non-object %q: want errNotObject, got %v", body, err)
		}
		return
	}
	var want Envelope
	refErr := json.Unmarshal(body, &want)
	var typeErr *json.UnmarshalTypeError
	switch {
	case refErr == nil:
		if err != nil {
			t.Fatalf("encoding/json decodes %q but scanner says %v", body, err)
		}
		if got != want {
			t.Fatalf("scanner read %+v, encoding/json %+v from %q", got, want, body)
		}
	case errors.As(refErr, &typeErr):
		var fe *fieldError
		if !errors.As(err, &fe) {
			t.Fatalf("encoding/json: %v; scanner: %v (want a field error) for %q", refErr, err, body)
		}
	default:
		t.Fatalf("unexpected encoding/json error %v for %q", refErr, body)
	}
}

func TestScanAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1)
	tooDeep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	for _, body := range []string{
		``, ` `, `{}`, `[]`, `null`, `"x"`, `12`, `{"id":"evt_1"} x`, `{"id":"evt_1"}}`, `{"id":"evt_1",}`, `{,}`,
		`{"id":"evt_1","type":"invoice.paid","created":1,"object":"event","livemode":true,"api_version":"2023-10-16"}`,
		`{"ID":"evt_upper","TYPE":"a.b","Created":7}`,
		`{"id":"evt_a","id":"evt_b"}`,
		`{"id":"evt_a","Id":"evt_b"}`,
		`{"\u0069d":"evt_escaped_key","type":"a\u002eb"}`,
		`{"api_verſion":"folded"}`,
		`{"api_version":"caf\u00e9","id":"\ud800"}`,
		"{\"api_version\":\"bad\xff utf8\"}",
		"{\"id\":\"evt\x01\"}",
		`{"id":5}`, `{"id":null,"type":null,"created":null,"livemode":null}`, `{"id":{"a":[1,2,{"b":null}]}}`,
		`{"created":1.5}`, `{"created":1e3}`, `{"created":-0}`, `{"created":99999999999999999999}`, `{"created":"1"}`,
		`{"created":-}`, `{"created":01}`, `{"created":1.}`, `{"created":1e}`, `{"created":.5}`,
		`{"livemode":"true"}`, `{"livemode":tru}`, `{"livemode":nul}`,
		`{"data":{"object":{"lines":{"data":[{},[],"",0,-1.5e+3,true,false,null]}}}}`,
		`{"data":[1 2]}`, `{"data":{"a" 1}}`, `{"data":{"a":1,}}`, `{"data":[1,]}`, `{"data":{1:2}}`,
		`{"data":"\x"}`, `{"data":"\u12G4"}`, `{"data":"unterminated}`, `{"data":[`, `{"data":{`, `{"data":`, `{"data"`,
		"\t{\r\n\"id\" : \"evt_ws\" \n}\n ",
		`{"data":` + deep + `}`,
		`{"data":` + tooDeep + `}`,
		deep, tooDeep,
	} {
		t.Run("", func(t *testing.T) { checkAgainstEncodingJSON(t, []byte(body)) })
	}
	for _, typ := range stripesim.SupportedTypes() {
		b, err := stripesim.NewEvent(typ, stripesim.EventOptions{})
		require.NoError(t, err)
		checkAgainstEncodingJSON(t, b)
		for cut := 0; cut < len(b); cut += 97 {
			checkAgainstEncodingJSON(t, b[:cut])
		}
	}
}

// FuzzScanEnvelope checks the scanner against encoding/json on arbitrary
// bodies: it must never accept what encoding/json calls invalid, never
// refuse valid JSON as invalid, and read the same envelope.
func FuzzScanEnvelope(f *testing.F) {
	for _, typ := range stripesim.SupportedTypes() {
		b, _ := stripesim.NewEvent(typ, stripesim.EventOptions{})
		f.Add(b)
	}
	f.Add([]byte(`{"ID":"evt_1","type":"a.b","created":1,"livemode":null}`))
	f.Add([]byte(`{"id":"e\u0076t","data":[{"x":-1.2e-3}]}`))
	f.Add([]byte(`[[[]]]`))
	f.Fuzz(func(t *testing.T, body []byte) { checkAgainstEncodingJSON(t, body) })
}

func TestValidators(t *testing.T) {
	t.Parallel()
	for id, ok := range map[string]bool{"evt_1": true, "": false, "evt-1": false, "evt 1": false, strings.Repeat("a", 255): true, strings.Repeat("a", 256): false, "évt": false} {
		require.Equal(t, ok, ValidID(id), id)
	}
	for typ, ok := range map[string]bool{
		"invoice.paid": true, "a": true, "a.b.c.d.e.f.g.h": true, "a.b.c.d.e.f.g.h.i": false, "": false, ".a": false,
		"a.": false, "a..b": false, "Invoice.paid": false, "invoice.*": false, "invoice.>": false, "a b": false,
	} {
		require.Equal(t, ok, validType(typ), typ)
	}
}

func BenchmarkParse(b *testing.B) {
	payload, err := stripesim.NewEvent("invoice.paid", stripesim.EventOptions{})
	require.NoError(b, err)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(payload); err != nil {
			b.Fatal(err)
		}
	}
}
