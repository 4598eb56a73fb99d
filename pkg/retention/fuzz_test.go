package retention_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/retention"
)

var fuzzSnapshots = []retention.Snapshot{}

func init() {
	for _, s := range [][]string{
		{"a", "2026-10-25T02:10:00Z", "x"}, {"b", "2026-10-25T01:15:00+01:00"},
		{"c", "2026-10-24T09:00:00-07:00", "x", "y"}, {"d", "2025-12-31T23:45:00Z"},
		{"e", "2026-01-01T00:30:00+01:00"},
	} {
		snaps, err := retention.ParseSnapshots([]byte(`[{"id":"` + s[0] + `","time":"` + s[1] + `"}]`))
		if err != nil {
			panic(err)
		}
		snaps[0].Tags = s[2:]
		fuzzSnapshots = append(fuzzSnapshots, snaps[0])
	}
}

// FuzzParsePolicy: any input either fails with a FieldError or parses into a
// valid policy that survives a JSON round trip and plans without error.
func FuzzParsePolicy(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"keep_daily": 7}`, `{"keep_last": -1, "keep_within": "1y2m3d4h"}`,
		`{"keep_tags": [["a", "b"], ["c"], [""]]}`, `{"keep_tags": []}`, `{"keep_within_daily": "2m", "keep_weekly": 4}`,
		`{"keep_daily": -2}`, `{"keep_dayly": 1}`, `{"keep_within": "-1d"}`, `{"keep_tags": [[]]}`,
		`[]`, `null`, `{"keep_daily": 1e3}`, `{"keep_within": "99999999999999999999d"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := retention.ParsePolicy(data)
		if err != nil {
			var fe *retention.FieldError
			require.True(t, errors.As(err, &fe), "error is a FieldError: %v", err)
			return
		}
		require.NoError(t, p.Validate())
		b, err := json.Marshal(p)
		require.NoError(t, err)
		back, err := retention.ParsePolicy(b)
		require.NoError(t, err, string(b))
		require.Equal(t, p, back)

		res, err := retention.Plan(p, fuzzSnapshots, retention.Options{})
		require.NoError(t, err)
		require.Len(t, append(slices.Clone(res.Keep), res.Remove...), len(fuzzSnapshots))
	})
}

// FuzzParseSnapshots: any input either fails with a FieldError or parses
// into snapshots with unique ids that a policy can plan.
func FuzzParseSnapshots(f *testing.F) {
	for _, seed := range []string{
		`[]`, `[{"id": "a", "time": "2026-10-25T01:30:00+01:00", "tags": ["x"]}]`,
		`[{"id": "a", "time": "2026-10-25T01:30:00Z"}, {"id": "a", "time": "2026-10-25T01:30:00Z"}]`,
		`[{"id": "a"}]`, `[{"id": "a", "time": "2026-10-25"}]`, `{}`, `[1]`,
	} {
		f.Add([]byte(seed))
	}
	p := retention.Policy{KeepDaily: 2, KeepWithin: retention.Duration{Days: 1}, KeepTags: [][]string{{"x"}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		snaps, err := retention.ParseSnapshots(data)
		if err != nil {
			var fe *retention.FieldError
			require.True(t, errors.As(err, &fe), "error is a FieldError: %v", err)
			return
		}
		res, err := retention.Plan(p, snaps, retention.Options{})
		require.NoError(t, err)
		require.ElementsMatch(t, ids(snaps), append(slices.Clone(res.Keep), res.Remove...))
	})
}
