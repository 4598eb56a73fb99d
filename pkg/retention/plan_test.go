package retention_test

import (
	"slices"
	"testing"
	"time"
	_ "time/tzdata" // Europe/London for the DST cases, whatever the machine has

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/retention"
)

// snap builds a snapshot from an RFC 3339 time, as a snapshots file would.
func snap(t testing.TB, id, ts string, tags ...string) retention.Snapshot {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, ts)
	require.NoError(t, err)
	return retention.Snapshot{ID: id, Time: tm, Tags: tags}
}

func policy(t testing.TB, js string) retention.Policy {
	t.Helper()
	p, err := retention.ParsePolicy([]byte(js))
	require.NoError(t, err)
	return p
}

type planCase struct {
	name    string
	policy  string
	snaps   [][]string // id, RFC 3339 time, tags…
	now     string
	keep    []string
	remove  []string
	reasons map[string][]string
}

// Every case below was worked out by hand, walking the snapshots newest
// first the way restic's ApplyPolicy does; the comments give the walk.
var planCases = []planCase{
	{
		name:   "KeepLastKeepsTheNewest",
		policy: `{"keep_last": 2}`,
		snaps: [][]string{
			{"a", "2026-10-01T12:00:00Z"}, {"b", "2026-10-02T12:00:00Z"},
			{"c", "2026-10-03T12:00:00Z"}, {"d", "2026-10-04T12:00:00Z"},
		},
		keep:    []string{"d", "c"},
		remove:  []string{"b", "a"},
		reasons: map[string][]string{"d": {"last snapshot"}, "c": {"last snapshot"}},
	},
	{
		name:   "KeepLastMoreThanExist",
		policy: `{"keep_last": 5}`,
		snaps:  [][]string{{"a", "2026-10-01T12:00:00Z"}, {"b", "2026-10-02T12:00:00Z"}},
		keep:   []string{"b", "a"}, remove: []string{},
		reasons: map[string][]string{"b": {"last snapshot"}, "a": {"last snapshot"}},
	},
	{
		// a2 opens Oct 3, b2 opens Oct 2 and uses the last count.
		name:   "DailyKeepsTheNewestOfEachDay",
		policy: `{"keep_daily": 2}`,
		snaps: [][]string{
			{"a1", "2026-10-03T10:00:00Z"}, {"a2", "2026-10-03T20:00:00Z"},
			{"b1", "2026-10-02T09:00:00Z"}, {"b2", "2026-10-02T23:00:00Z"},
			{"c1", "2026-10-01T12:00:00Z"},
		},
		keep:    []string{"a2", "b2"},
		remove:  []string{"a1", "b1", "c1"},
		reasons: map[string][]string{"a2": {"daily snapshot"}, "b2": {"daily snapshot"}},
	},
	{
		// x2 and y2 open their days; y1 shares y2's day but is the oldest
		// and the rule has 3 counts left.
		name:   "CountLeftKeepsTheOldest",
		policy: `{"keep_daily": 5}`,
		snaps: [][]string{
			{"x2", "2026-10-02T20:00:00Z"}, {"x1", "2026-10-02T08:00:00Z"},
			{"y2", "2026-10-01T22:00:00Z"}, {"y1", "2026-10-01T06:00:00Z"},
		},
		keep:   []string{"x2", "y2", "y1"},
		remove: []string{"x1"},
		reasons: map[string][]string{
			"x2": {"daily snapshot"}, "y2": {"daily snapshot"}, "y1": {"oldest daily snapshot"},
		},
	},
	{
		// jan31 and dec31 open their months (2 counts used); dec01 is the
		// oldest, in dec31's month, with one count left.
		name:   "MonthlyOldest",
		policy: `{"keep_monthly": 3}`,
		snaps: [][]string{
			{"jan31", "2026-01-31T12:00:00Z"}, {"jan15", "2026-01-15T12:00:00Z"},
			{"dec31", "2025-12-31T12:00:00Z"}, {"dec01", "2025-12-01T12:00:00Z"},
		},
		keep:   []string{"jan31", "dec31", "dec01"},
		remove: []string{"jan15"},
		reasons: map[string][]string{
			"jan31": {"monthly snapshot"}, "dec31": {"monthly snapshot"}, "dec01": {"oldest monthly snapshot"},
		},
	},
	{
		name:   "UnlimitedDailyKeepsEveryDayAndTheOldest",
		policy: `{"keep_daily": -1}`,
		snaps: [][]string{
			{"d3b", "2026-10-03T18:00:00Z"}, {"d3a", "2026-10-03T06:00:00Z"},
			{"d2b", "2026-10-02T18:00:00Z"}, {"d2a", "2026-10-02T06:00:00Z"},
			{"d1b", "2026-10-01T18:00:00Z"}, {"d1a", "2026-10-01T06:00:00Z"},
		},
		keep:   []string{"d3b", "d2b", "d1b", "d1a"},
		remove: []string{"d3a", "d2a"},
		reasons: map[string][]string{
			"d3b": {"daily snapshot"}, "d2b": {"daily snapshot"}, "d1b": {"daily snapshot"},
			"d1a": {"oldest daily snapshot"},
		},
	},
	{
		// Only hours with snapshots count: 10h and 07h are the two newest.
		name:   "HourlyCountsOnlyHoursWithSnapshots",
		policy: `{"keep_hourly": 2}`,
		snaps: [][]string{
			{"h10", "2026-10-01T10:05:00Z"}, {"h07", "2026-10-01T07:00:00Z"}, {"h03", "2026-10-01T03:00:00Z"},
		},
		keep: []string{"h10", "h07"}, remove: []string{"h03"},
		reasons: map[string][]string{"h10": {"hourly snapshot"}, "h07": {"hourly snapshot"}},
	},
	{
		// restic's documented example: a backup every Sunday for 12 weeks,
		// --keep-daily 4 keeps the last four Sundays.
		name:   "ResticDocumentationSundays",
		policy: `{"keep_daily": 4}`,
		snaps: [][]string{
			{"0a1f9759", "2019-09-01T11:00:00Z"}, {"46cfe4d5", "2019-09-08T11:00:00Z"},
			{"f6b1f037", "2019-09-15T11:00:00Z"}, {"eb430a5d", "2019-09-22T11:00:00Z"},
			{"8cf1cb9a", "2019-09-29T11:00:00Z"}, {"5d33b116", "2019-10-06T11:00:00Z"},
			{"b9553125", "2019-10-13T11:00:00Z"}, {"e1a7b58b", "2019-10-20T11:00:00Z"},
			{"8f8018c0", "2019-10-27T11:00:00Z"}, {"59403279", "2019-11-03T11:00:00Z"},
			{"dfee9fb4", "2019-11-10T11:00:00Z"}, {"e1ae2f40", "2019-11-17T11:00:00Z"},
		},
		keep: []string{"e1ae2f40", "dfee9fb4", "59403279", "8f8018c0"},
		remove: []string{
			"e1a7b58b", "b9553125", "5d33b116", "8cf1cb9a", "eb430a5d", "f6b1f037", "46cfe4d5", "0a1f9759",
		},
		reasons: map[string][]string{
			"e1ae2f40": {"daily snapshot"}, "dfee9fb4": {"daily snapshot"},
			"59403279": {"daily snapshot"}, "8f8018c0": {"daily snapshot"},
		},
	},

	// DST and mixed offsets. Europe/London left summer time on
	// 2026-10-25 at 01:00 UTC: 01:00-01:59 happened twice, first at +01:00
	// and then at +00:00.
	{
		// Newest first: u (02:10Z, hour 02), s (01:15Z, hour 01), r (00:45Z,
		// also hour 01 in its own +01:00), q (00:15Z, hour 01), p (23:30Z on
		// the 24th, hour 00 of the 25th in its own offset). Both 01:xx
		// hours are one bucket, so r and q go; bucketing in UTC would keep r.
		name:   "DSTFallBackRepeatedHourIsOneBucket",
		policy: `{"keep_hourly": 3}`,
		snaps: [][]string{
			{"p", "2026-10-25T00:30:00+01:00"}, {"q", "2026-10-25T01:15:00+01:00"},
			{"r", "2026-10-25T01:45:00+01:00"}, {"s", "2026-10-25T01:15:00+00:00"},
			{"u", "2026-10-25T02:10:00+00:00"},
		},
		keep: []string{"u", "s", "p"}, remove: []string{"r", "q"},
		reasons: map[string][]string{"u": {"hourly snapshot"}, "s": {"hourly snapshot"}, "p": {"hourly snapshot"}},
	},
	{
		// All five are on 25 October in their own offsets (p is the 24th in
		// UTC): u opens the day, p is the oldest with a count left.
		name:   "DSTFallBackDayReadInOwnOffset",
		policy: `{"keep_daily": 2}`,
		snaps: [][]string{
			{"p", "2026-10-25T00:30:00+01:00"}, {"q", "2026-10-25T01:15:00+01:00"},
			{"r", "2026-10-25T01:45:00+01:00"}, {"s", "2026-10-25T01:15:00+00:00"},
			{"u", "2026-10-25T02:10:00+00:00"},
		},
		keep: []string{"u", "p"}, remove: []string{"s", "r", "q"},
		reasons: map[string][]string{"u": {"daily snapshot"}, "p": {"oldest daily snapshot"}},
	},
	{
		// Europe/London entered summer time on 2026-03-29 at 01:00 UTC. The
		// newest, n, is 2026-03-30T12:00+01:00 (11:00Z); 2d back in its own
		// offset is 2026-03-28T12:00+01:00 = 11:00Z. m (11:30Z) is after it;
		// e is exactly on it and goes (strictly after, as restic); o goes.
		// restic on a machine in Europe/London would use 12:00 GMT and drop m.
		name:   "DSTSpringForwardWithinInNewestOffset",
		policy: `{"keep_within": "2d"}`,
		snaps: [][]string{
			{"n", "2026-03-30T12:00:00+01:00"}, {"m", "2026-03-28T11:30:00+00:00"},
			{"e", "2026-03-28T11:00:00+00:00"}, {"o", "2026-03-28T10:59:00+00:00"},
		},
		keep: []string{"n", "m"}, remove: []string{"e", "o"},
		reasons: map[string][]string{"n": {"within 2d"}, "m": {"within 2d"}},
	},
	{
		// t (23:45Z, year 2025), b (23:30Z but 2026 at +01:00), k (23:00Z,
		// 2026 at +09:00), old (2025). Unlimited yearly compares with the
		// last kept year only, as restic: b opens 2026, k shares it, old
		// opens 2025 again.
		name:   "MixedOffsetsAtNewYear",
		policy: `{"keep_yearly": -1}`,
		snaps: [][]string{
			{"t", "2025-12-31T23:45:00Z"}, {"b", "2026-01-01T00:30:00+01:00"},
			{"k", "2026-01-01T08:00:00+09:00"}, {"old", "2025-12-31T12:00:00Z"},
		},
		keep: []string{"t", "b", "old"}, remove: []string{"k"},
		reasons: map[string][]string{"t": {"yearly snapshot"}, "b": {"yearly snapshot"}, "old": {"yearly snapshot"}},
	},
	{
		name:   "MixedOffsetsAtNewYearCounted",
		policy: `{"keep_yearly": 2}`,
		snaps: [][]string{
			{"t", "2025-12-31T23:45:00Z"}, {"b", "2026-01-01T00:30:00+01:00"},
			{"k", "2026-01-01T08:00:00+09:00"}, {"old", "2025-12-31T12:00:00Z"},
		},
		keep: []string{"t", "b"}, remove: []string{"k", "old"},
		reasons: map[string][]string{"t": {"yearly snapshot"}, "b": {"yearly snapshot"}},
	},
	{
		// a and b are the same instant; the smaller id counts as newer.
		name:   "SameInstantTieBrokenByID",
		policy: `{"keep_last": 1, "keep_daily": 2}`,
		snaps: [][]string{
			{"b", "2026-05-01T12:00:00+02:00"}, {"a", "2026-05-01T10:00:00Z"}, {"c", "2026-04-30T10:00:00Z"},
		},
		keep: []string{"a", "c"}, remove: []string{"b"},
		reasons: map[string][]string{"a": {"last snapshot", "daily snapshot"}, "c": {"daily snapshot"}},
	},
	{
		// 2026 has 53 ISO weeks: 2026-12-28 … 2027-01-03 is 2026-W53.
		// w1 opens W53 (w2 shares it across the new year), w3 opens W52.
		name:   "ISOWeekSpansNewYear",
		policy: `{"keep_weekly": 2}`,
		snaps: [][]string{
			{"w1", "2027-01-02T10:00:00Z"}, {"w2", "2026-12-31T10:00:00Z"},
			{"w3", "2026-12-27T10:00:00Z"}, {"w4", "2026-12-21T10:00:00Z"},
			{"w5", "2026-12-20T10:00:00Z"},
		},
		keep: []string{"w1", "w3"}, remove: []string{"w2", "w4", "w5"},
		reasons: map[string][]string{"w1": {"weekly snapshot"}, "w3": {"weekly snapshot"}},
	},
	{
		// m0 is Sunday 23:40Z (W52); m1 is 23:30Z but Monday 00:30 in its
		// own +01:00 (W53); m2 is Sunday (W52). m1 opens a week, so m2 goes.
		// In UTC m1 would share W52 and m2 would stay as the oldest.
		name:   "ISOWeekReadInOwnOffset",
		policy: `{"keep_weekly": 2}`,
		snaps: [][]string{
			{"m0", "2026-12-27T23:40:00Z"}, {"m1", "2026-12-28T00:30:00+01:00"}, {"m2", "2026-12-27T12:00:00Z"},
		},
		keep: []string{"m0", "m1"}, remove: []string{"m2"},
		reasons: map[string][]string{"m0": {"weekly snapshot"}, "m1": {"weekly snapshot"}},
	},
	{
		// 30d back from 2026-10-31T12:00Z is 2026-10-01T12:00Z, exclusive;
		// plus1 is 12:30Z, so newer than in.
		name:   "WithinIsStrictlyAfterTheCutoff",
		policy: `{"keep_within": "30d"}`,
		snaps: [][]string{
			{"n", "2026-10-31T12:00:00Z"}, {"in", "2026-10-01T12:00:01Z"},
			{"plus1", "2026-10-01T13:30:00+01:00"}, {"edge", "2026-10-01T12:00:00Z"},
		},
		keep: []string{"n", "plus1", "in"}, remove: []string{"edge"},
		reasons: map[string][]string{"n": {"within 30d"}, "in": {"within 30d"}, "plus1": {"within 30d"}},
	},
	{
		// 1m back from 31 March is "31 February", which AddDate normalises
		// to 3 March, as in restic: late February is outside.
		name:   "WithinMonthFromMonthEnd",
		policy: `{"keep_within": "1m"}`,
		snaps: [][]string{
			{"n", "2026-03-31T10:00:00Z"}, {"in", "2026-03-03T10:00:01Z"},
			{"edge", "2026-03-03T10:00:00Z"}, {"feb", "2026-02-28T12:00:00Z"},
		},
		keep: []string{"n", "in"}, remove: []string{"edge", "feb"},
		reasons: map[string][]string{"n": {"within 1m"}, "in": {"within 1m"}},
	},
	{
		// Window: after 2026-10-07T18:00Z. a, c, d, e open days inside it;
		// f and g are outside (g is the oldest, but outside the window).
		name:   "WithinDaily",
		policy: `{"keep_within_daily": "3d"}`,
		snaps: [][]string{
			{"a", "2026-10-10T18:00:00Z"}, {"b", "2026-10-10T06:00:00Z"}, {"c", "2026-10-09T20:00:00Z"},
			{"d", "2026-10-08T01:00:00Z"}, {"e", "2026-10-07T19:00:00Z"}, {"f", "2026-10-07T17:00:00Z"},
			{"g", "2026-10-01T12:00:00Z"},
		},
		keep: []string{"a", "c", "d", "e"}, remove: []string{"b", "f", "g"},
		reasons: map[string][]string{
			"a": {"daily within 3d"}, "c": {"daily within 3d"}, "d": {"daily within 3d"}, "e": {"daily within 3d"},
		},
	},
	{
		name:   "WithinDailyOldestInsideTheWindow",
		policy: `{"keep_within_daily": "3d"}`,
		snaps:  [][]string{{"a", "2026-10-10T18:00:00Z"}, {"b", "2026-10-10T06:00:00Z"}},
		keep:   []string{"a", "b"}, remove: []string{},
		reasons: map[string][]string{"a": {"daily within 3d"}, "b": {"oldest daily within 3d"}},
	},
	{
		name:   "WithinHourlyAcrossDSTFallBack",
		policy: `{"keep_within_hourly": "2h"}`,
		// Newest u is 02:10Z; the window starts at 00:10Z. s opens the
		// repeated 01:xx hour, r (00:45Z) shares it, q (00:15Z, also 01:xx)
		// shares it, p (23:30Z) is outside.
		snaps: [][]string{
			{"p", "2026-10-25T00:30:00+01:00"}, {"q", "2026-10-25T01:15:00+01:00"},
			{"r", "2026-10-25T01:45:00+01:00"}, {"s", "2026-10-25T01:15:00+00:00"},
			{"u", "2026-10-25T02:10:00+00:00"},
		},
		keep: []string{"u", "s"}, remove: []string{"r", "q", "p"},
		reasons: map[string][]string{"u": {"hourly within 2h"}, "s": {"hourly within 2h"}},
	},
	{
		name:   "TagSetsAreOred",
		policy: `{"keep_tags": [["a", "b"], ["c"]]}`,
		snaps: [][]string{
			{"t1", "2026-10-05T00:00:00Z", "a", "b"}, {"t2", "2026-10-04T00:00:00Z", "a"},
			{"t3", "2026-10-03T00:00:00Z", "c"}, {"t4", "2026-10-02T00:00:00Z"},
			{"t5", "2026-10-01T00:00:00Z", "b", "c", "a"},
		},
		keep: []string{"t1", "t3", "t5"}, remove: []string{"t2", "t4"},
		reasons: map[string][]string{
			"t1": {"has tags [a, b]"}, "t3": {"has tags [c]"}, "t5": {"has tags [a, b]", "has tags [c]"},
		},
	},
	{
		name:   "EmptyTagMatchesUntagged",
		policy: `{"keep_tags": [[""]]}`,
		snaps: [][]string{
			{"t1", "2026-10-05T00:00:00Z", "a"}, {"t2", "2026-10-04T00:00:00Z"},
		},
		keep: []string{"t2"}, remove: []string{"t1"},
		reasons: map[string][]string{"t2": {"has tags []"}},
	},
	{
		name: "ReasonsInFixedOrder",
		policy: `{"keep_within_daily": "1d", "keep_weekly": 1, "keep_tags": [["x"]], "keep_daily": 1,
			"keep_within": "1d", "keep_last": 1}`,
		snaps: [][]string{{"only", "2026-10-05T00:00:00Z", "x"}},
		keep:  []string{"only"}, remove: []string{},
		reasons: map[string][]string{"only": {
			"has tags [x]", "within 1d", "last snapshot", "daily snapshot", "weekly snapshot", "daily within 1d",
		}},
	},
	{
		name:   "EmptyPolicyKeepsEverything",
		policy: `{"keep_daily": 0, "keep_within": "0d", "keep_tags": []}`,
		snaps:  [][]string{{"a", "2026-10-05T00:00:00Z"}, {"b", "2026-10-04T00:00:00Z"}},
		keep:   []string{"a", "b"}, remove: []string{},
		reasons: map[string][]string{"a": {"no policy"}, "b": {"no policy"}},
	},
	{
		name:    "NoSnapshots",
		policy:  `{"keep_daily": 7}`,
		keep:    []string{},
		remove:  []string{},
		reasons: map[string][]string{},
	},
	{
		// With now set, the snapshot from 2030 is skipped when finding the
		// newest: the 2d window is measured from a (11-20), so b stays.
		// The future one is inside the window too, as in restic.
		name:   "FutureSnapshotIgnoredForWindowsWhenNowIsSet",
		policy: `{"keep_within": "2d"}`,
		now:    "2026-11-25T00:00:00Z",
		snaps: [][]string{
			{"f", "2030-01-01T00:00:00Z"}, {"a", "2026-11-20T00:00:00Z"},
			{"b", "2026-11-19T00:00:00Z"}, {"c", "2026-11-10T00:00:00Z"},
		},
		keep: []string{"f", "a", "b"}, remove: []string{"c"},
		reasons: map[string][]string{"f": {"within 2d"}, "a": {"within 2d"}, "b": {"within 2d"}},
	},
	{
		name:   "FutureSnapshotMovesWindowsWithoutNow",
		policy: `{"keep_within": "2d"}`,
		snaps: [][]string{
			{"f", "2030-01-01T00:00:00Z"}, {"a", "2026-11-20T00:00:00Z"},
			{"b", "2026-11-19T00:00:00Z"}, {"c", "2026-11-10T00:00:00Z"},
		},
		keep: []string{"f"}, remove: []string{"a", "b", "c"},
		reasons: map[string][]string{"f": {"within 2d"}},
	},
	{
		name:   "AllInTheFutureAreAllWithin",
		policy: `{"keep_within": "2d", "keep_within_daily": "1d"}`,
		now:    "2020-01-01T00:00:00Z",
		snaps: [][]string{
			{"a", "2026-11-20T00:00:00Z"}, {"b", "2026-11-10T00:00:00Z"}, {"c", "2026-11-10T00:00:00+01:00"},
		},
		keep: []string{"a", "b", "c"}, remove: []string{},
		reasons: map[string][]string{
			"a": {"within 2d", "daily within 1d"}, "b": {"within 2d", "daily within 1d"},
			"c": {"within 2d", "oldest daily within 1d"},
		},
	},
	{
		// A tier-like policy: last 2 (n2, n1); daily 3 (n2 opens Monday
		// Oct 12, d11, d10); weekly 2 (n2 opens W42, d11 opens W41 on its
		// Sunday, so d04 in W40 is past the count); monthly 3 (n2 opens
		// October, s30 opens September, s01 is the oldest with one count
		// left).
		name:   "RulesCombine",
		policy: `{"keep_last": 2, "keep_daily": 3, "keep_weekly": 2, "keep_monthly": 3}`,
		snaps: [][]string{
			{"n2", "2026-10-12T20:00:00Z"}, {"n1", "2026-10-12T08:00:00Z"},
			{"d11", "2026-10-11T20:00:00Z"}, {"d10", "2026-10-10T20:00:00Z"},
			{"d09", "2026-10-09T20:00:00Z"}, {"d04", "2026-10-04T20:00:00Z"},
			{"s30", "2026-09-30T20:00:00Z"}, {"s01", "2026-09-01T20:00:00Z"},
		},
		keep:   []string{"n2", "n1", "d11", "d10", "s30", "s01"},
		remove: []string{"d09", "d04"},
		reasons: map[string][]string{
			"n2":  {"last snapshot", "daily snapshot", "weekly snapshot", "monthly snapshot"},
			"n1":  {"last snapshot"},
			"d11": {"daily snapshot", "weekly snapshot"},
			"d10": {"daily snapshot"},
			"s30": {"monthly snapshot"},
			"s01": {"oldest monthly snapshot"},
		},
	},
}

func TestPlanHandChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var snaps []retention.Snapshot
			for _, s := range tc.snaps {
				snaps = append(snaps, snap(t, s[0], s[1], s[2:]...))
			}
			var opts retention.Options
			if tc.now != "" {
				opts.Now = snap(t, "now", tc.now).Time
			}
			p := policy(t, tc.policy)
			got, err := retention.Plan(p, snaps, opts)
			require.NoError(t, err)
			require.Equal(t, tc.keep, got.Keep, "keep")
			require.Equal(t, tc.remove, got.Remove, "remove")
			require.Equal(t, tc.reasons, got.Reasons, "reasons")

			// The order snapshots arrive in changes nothing.
			reversed := slices.Clone(snaps)
			slices.Reverse(reversed)
			again, err := retention.Plan(p, reversed, opts)
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

// A snapshot's time carried in a named zone (as a Go caller may pass it)
// plans exactly like the same time written with its offset, whatever the
// machine's zone: buckets and windows use only the offset.
func TestPlanNamedZoneEqualsOffset(t *testing.T) {
	t.Parallel()
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	p := policy(t, `{"keep_hourly": 3, "keep_within": "2d", "keep_weekly": 2}`)
	var zoned, offset []retention.Snapshot
	start := time.Date(2026, 3, 26, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		tm := start.Add(time.Duration(i*37) * time.Minute).In(london)
		id := tm.UTC().Format("0102T1504")
		zoned = append(zoned, retention.Snapshot{ID: id, Time: tm})
		offset = append(offset, snap(t, id, tm.Format(time.RFC3339)))
	}
	a, err := retention.Plan(p, zoned, retention.Options{})
	require.NoError(t, err)
	b, err := retention.Plan(p, offset, retention.Options{})
	require.NoError(t, err)
	require.Equal(t, b, a)
	require.Len(t, a.Keep, len(a.Reasons))
}

func TestPlanRejectsInvalidInput(t *testing.T) {
	t.Parallel()
	good := snap(t, "a", "2026-10-01T00:00:00Z")
	for _, tc := range []struct {
		name   string
		policy retention.Policy
		snaps  []retention.Snapshot
		field  string
	}{
		{"NegativeCount", retention.Policy{KeepWeekly: -2}, []retention.Snapshot{good}, "keep_weekly"},
		{"NegativeDuration", retention.Policy{KeepWithinDaily: retention.Duration{Days: -1}}, []retention.Snapshot{good}, "keep_within_daily"},
		{"EmptyTagSet", retention.Policy{KeepTags: [][]string{{"a"}, {}}}, []retention.Snapshot{good}, "keep_tags[1]"},
		{"DuplicateID", retention.Policy{KeepLast: 1}, []retention.Snapshot{good, good}, "snapshots[1].id"},
		{"NoTime", retention.Policy{KeepLast: 1}, []retention.Snapshot{good, {ID: "b"}}, "snapshots[1].time"},
		{"NoID", retention.Policy{KeepLast: 1}, []retention.Snapshot{{Time: good.Time}}, "snapshots[0].id"},
		{"EmptyTag", retention.Policy{KeepLast: 1}, []retention.Snapshot{{ID: "b", Time: good.Time, Tags: []string{"x", ""}}}, "snapshots[0].tags[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := retention.Plan(tc.policy, tc.snaps, retention.Options{})
			var fe *retention.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.field, fe.Field, err.Error())
		})
	}
}

// Plan leaves the caller's slice alone.
func TestPlanDoesNotReorderInput(t *testing.T) {
	t.Parallel()
	snaps := []retention.Snapshot{
		snap(t, "old", "2026-10-01T00:00:00Z"), snap(t, "new", "2026-10-02T00:00:00Z"),
	}
	_, err := retention.Plan(retention.Policy{KeepLast: 1}, snaps, retention.Options{})
	require.NoError(t, err)
	require.Equal(t, "old", snaps[0].ID)
}
