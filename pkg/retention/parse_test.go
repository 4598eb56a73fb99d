package retention_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/retention"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	p, err := retention.ParsePolicy([]byte(`{
		"keep_last": 3, "keep_hourly": 24, "keep_daily": 7, "keep_weekly": 4,
		"keep_monthly": 12, "keep_yearly": -1,
		"keep_within": "1y2m3d4h", "keep_within_hourly": "2d", "keep_within_daily": "1m",
		"keep_within_weekly": "3m", "keep_within_monthly": "2y", "keep_within_yearly": "10y",
		"keep_tags": [["a", "b"], ["c"]]
	}`))
	require.NoError(t, err)
	require.Equal(t, retention.Policy{
		KeepLast: 3, KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: retention.Unlimited,
		KeepWithin:        retention.Duration{Years: 1, Months: 2, Days: 3, Hours: 4},
		KeepWithinHourly:  retention.Duration{Days: 2},
		KeepWithinDaily:   retention.Duration{Months: 1},
		KeepWithinWeekly:  retention.Duration{Months: 3},
		KeepWithinMonthly: retention.Duration{Years: 2},
		KeepWithinYearly:  retention.Duration{Years: 10},
		KeepTags:          [][]string{{"a", "b"}, {"c"}},
	}, p)

	// What MarshalJSON writes, ParsePolicy reads back unchanged.
	b, err := json.Marshal(p)
	require.NoError(t, err)
	back, err := retention.ParsePolicy(b)
	require.NoError(t, err)
	require.Equal(t, p, back)

	// Nulls switch rules off; an empty object is the empty policy.
	p, err = retention.ParsePolicy([]byte(`{"keep_daily": null, "keep_within": null, "keep_tags": null}`))
	require.NoError(t, err)
	require.True(t, p.IsEmpty())
	b, err = json.Marshal(retention.Policy{})
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(b))

	// Embedded in a larger document, the same strictness applies.
	var doc struct {
		Policy retention.Policy `json:"policy"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"policy": {"keep_daily": 7}}`), &doc))
	require.Equal(t, 7, doc.Policy.KeepDaily)
	require.ErrorContains(t, json.Unmarshal([]byte(`{"policy": {"keep_dayly": 7}}`), &doc), `keep_dayly`)
}

func TestParsePolicyErrorsNameTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, field, msg string
	}{
		{"UnknownKey", `{"keep_daily": 7, "keep_dayly": 3}`, "keep_dayly", `unknown policy rule "keep_dayly"`},
		{"DuplicateKey", `{"keep_daily": 7, "keep_daily": 1}`, "keep_daily", "given twice"},
		{"NegativeCount", `{"keep_weekly": -2}`, "keep_weekly", "-1 (unlimited)"},
		{"FractionalCount", `{"keep_daily": 1.5}`, "keep_daily", "want an integer"},
		{"StringCount", `{"keep_daily": "7"}`, "keep_daily", "want an integer"},
		{"HugeCount", `{"keep_daily": 99999999999999999999999}`, "keep_daily", "want an integer"},
		{"DurationNumber", `{"keep_within": 30}`, "keep_within", "want a duration string"},
		{"DurationNoUnit", `{"keep_within": "30"}`, "keep_within", "has no unit"},
		{"DurationBadUnit", `{"keep_within_daily": "2w"}`, "keep_within_daily", `unknown unit "w"`},
		{"DurationNegative", `{"keep_within_hourly": "-1d"}`, "keep_within_hourly", "invalid duration"},
		{"DurationRepeatedUnit", `{"keep_within_weekly": "1d2d"}`, "keep_within_weekly", "given twice"},
		{"DurationEmpty", `{"keep_within_monthly": ""}`, "keep_within_monthly", "empty duration"},
		{"DurationTooLarge", `{"keep_within_yearly": "2000000y"}`, "keep_within_yearly", "more than 1000000"},
		{"DurationNonASCIIDigit", `{"keep_within": "١d"}`, "keep_within", "invalid duration"},
		{"TagsNotList", `{"keep_tags": "a"}`, "keep_tags", "list of tag sets"},
		{"TagsFlatList", `{"keep_tags": ["a", "b"]}`, "keep_tags[0]", "list of tag sets"},
		{"TagNotString", `{"keep_tags": [["a", 1]]}`, "keep_tags[0][1]", "want a tag string"},
		{"TagNull", `{"keep_tags": [["a", null]]}`, "keep_tags[0][1]", "want a tag string"},
		{"EmptyTagSet", `{"keep_tags": [["a"], []]}`, "keep_tags[1]", "empty tag set"},
		{"EmptyTagMixed", `{"keep_tags": [["", "a"]]}`, "keep_tags[0]", "must stand alone"},
		{"NotAnObject", `[{"keep_daily": 7}]`, "", "must be a JSON object"},
		{"Null", `null`, "", "must be a JSON object"},
		{"Empty", ``, "", "unexpected end"},
		{"Truncated", `{"keep_daily": 7`, "", "unexpected end"},
		{"Trailing", `{"keep_daily": 7} {}`, "", "unexpected data"},
		{"Syntax", `{"keep_daily": 7,}`, "", "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := retention.ParsePolicy([]byte(tc.in))
			var fe *retention.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.field, fe.Field, err.Error())
			require.Contains(t, err.Error(), tc.msg)
			require.NotContains(t, err.Error(), "Go struct", "no Go type names in messages for people")
		})
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]retention.Duration{
		"30d":      {Days: 30},
		"1y2m3d4h": {Years: 1, Months: 2, Days: 3, Hours: 4},
		"4h3d":     {Days: 3, Hours: 4},
		" 2m ":     {Months: 2},
		"0d":       {},
	} {
		got, err := retention.ParseDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	require.Equal(t, "1y2m3d4h", retention.Duration{Years: 1, Months: 2, Days: 3, Hours: 4}.String())
	require.Equal(t, "3d4h", retention.Duration{Days: 3, Hours: 4}.String())

	// Calendar arithmetic, as restic: months and years with AddDate.
	end := time.Date(2026, 3, 31, 10, 0, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC), retention.Duration{Months: 1}.Before(end))
	require.Equal(t, time.Date(2025, 1, 30, 6, 0, 0, 0, time.UTC), retention.Duration{Years: 1, Months: 2, Days: 1, Hours: 4}.Before(end))
}

func TestParseSnapshots(t *testing.T) {
	t.Parallel()
	snaps, err := retention.ParseSnapshots([]byte(`[
		{"id": "a", "time": "2026-10-25T01:30:00+01:00", "tags": ["daily", "pre-upgrade"]},
		{"id": "b", "time": "2026-10-25T01:30:00.123456789Z"},
		{"id": "c", "time": "2026-10-25T01:30:00-05:30", "tags": null}
	]`))
	require.NoError(t, err)
	require.Len(t, snaps, 3)
	require.Equal(t, "a", snaps[0].ID)
	require.Equal(t, []string{"daily", "pre-upgrade"}, snaps[0].Tags)
	_, off := snaps[0].Time.Zone()
	require.Equal(t, 3600, off, "the offset is kept")
	require.Equal(t, 1, snaps[0].Time.Hour(), "wall clock in the snapshot's own offset")
	require.Equal(t, 123456789, snaps[1].Time.Nanosecond())
	_, off = snaps[2].Time.Zone()
	require.Equal(t, -(5*3600 + 1800), off)

	empty, err := retention.ParseSnapshots([]byte(`[]`))
	require.NoError(t, err)
	require.NotNil(t, empty)
	require.Empty(t, empty)
}

func TestParseSnapshotsErrorsNameTheSnapshot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, field, msg string
	}{
		{"DuplicateID", `[{"id": "a", "time": "2026-10-01T00:00:00Z"}, {"id": "a", "time": "2026-10-02T00:00:00Z"}]`, "snapshots[1].id", `duplicate snapshot id "a" (also snapshots[0])`},
		{"MissingTime", `[{"id": "a"}]`, "snapshots[0].time", `snapshot "a" has no time`},
		{"NullTime", `[{"id": "a", "time": null}]`, "snapshots[0].time", `snapshot "a" has no time`},
		{"NoOffset", `[{"id": "a", "time": "2026-10-01T00:00:00"}]`, "snapshots[0].time", `snapshot "a": want RFC 3339 with a UTC offset`},
		{"DateOnly", `[{"id": "a", "time": "2026-10-01"}]`, "snapshots[0].time", "want RFC 3339"},
		{"TimeNumber", `[{"id": "a", "time": 1790000000}]`, "snapshots[0].time", "want an RFC 3339 string"},
		{"BadHour", `[{"id": "a", "time": "2026-10-01T25:00:00Z"}]`, "snapshots[0].time", "want RFC 3339"},
		{"MissingID", `[{"time": "2026-10-01T00:00:00Z"}]`, "snapshots[0].id", "want a non-empty id"},
		{"EmptyID", `[{"id": "", "time": "2026-10-01T00:00:00Z"}]`, "snapshots[0].id", "want a non-empty id"},
		{"NumericID", `[{"id": 7, "time": "2026-10-01T00:00:00Z"}]`, "snapshots[0].id", "want a non-empty id"},
		{"UnknownField", `[{"id": "a", "time": "2026-10-01T00:00:00Z", "tgas": ["x"]}]`, "snapshots[0]", `unknown field "tgas"`},
		{"TagsNotList", `[{"id": "a", "time": "2026-10-01T00:00:00Z", "tags": "x"}]`, "snapshots[0].tags", "want a list of strings"},
		{"EmptyTag", `[{"id": "a", "time": "2026-10-01T00:00:00Z", "tags": ["x", ""]}]`, "snapshots[0].tags[1]", "non-empty tag"},
		{"ElementNotObject", `[{"id": "a", "time": "2026-10-01T00:00:00Z"}, 7]`, "snapshots[1]", "want an object"},
		{"NotAList", `{"id": "a"}`, "snapshots", "want a JSON list"},
		{"Trailing", `[] []`, "snapshots", "unexpected data"},
		{"Truncated", `[{"id": "a", "time": "2026-10-01T00:00:00Z"}`, "snapshots", "unexpected end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := retention.ParseSnapshots([]byte(tc.in))
			var fe *retention.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.field, fe.Field, err.Error())
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}
