package retention_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/retention"
)

// Property tests: random snapshot sets (mixed offsets, shared instants,
// tags) against random policies, with a fixed seed per round so a failure
// names a reproducible case.

const propertyRounds = 400

var offsets = []int{-8 * 3600, -5 * 3600, 0, 3600, 2 * 3600, 5*3600 + 1800, 9 * 3600, 13*3600 + 2700}

func randomSnapshots(r *rand.Rand) []retention.Snapshot {
	n := r.IntN(60)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	span := int64(2 * 365 * 24 * time.Hour)
	if r.IntN(3) == 0 {
		span = int64(72 * time.Hour) // dense: many snapshots per hour and day
	}
	out := make([]retention.Snapshot, 0, n)
	for i := range n {
		var t time.Time
		if i > 0 && r.IntN(8) == 0 {
			t = out[r.IntN(len(out))].Time // the same instant again
		} else {
			t = base.Add(time.Duration(r.Int64N(span)))
		}
		zone := time.FixedZone("", offsets[r.IntN(len(offsets))])
		var tags []string
		for _, tag := range []string{"a", "b", "c"} {
			if r.IntN(3) == 0 {
				tags = append(tags, tag)
			}
		}
		out = append(out, retention.Snapshot{ID: fmt.Sprintf("s%03d", r.IntN(1000)*100+i), Time: t.In(zone), Tags: tags})
	}
	return out
}

func randomCount(r *rand.Rand) int {
	switch r.IntN(5) {
	case 0, 1:
		return 0
	case 2:
		return retention.Unlimited
	default:
		return 1 + r.IntN(8)
	}
}

func randomDuration(r *rand.Rand) retention.Duration {
	if r.IntN(3) != 0 {
		return retention.Duration{}
	}
	return retention.Duration{Years: r.IntN(2) * r.IntN(2), Months: r.IntN(3) * r.IntN(2), Days: r.IntN(20), Hours: r.IntN(30)}
}

func randomPolicy(r *rand.Rand) retention.Policy {
	for {
		p := retention.Policy{
			KeepLast: randomCount(r), KeepHourly: randomCount(r), KeepDaily: randomCount(r),
			KeepWeekly: randomCount(r), KeepMonthly: randomCount(r), KeepYearly: randomCount(r),
			KeepWithin: randomDuration(r), KeepWithinHourly: randomDuration(r), KeepWithinDaily: randomDuration(r),
			KeepWithinWeekly: randomDuration(r), KeepWithinMonthly: randomDuration(r), KeepWithinYearly: randomDuration(r),
		}
		sets := [][]string{{"a"}, {"b", "c"}, {""}, {"a", "b"}}
		for _, s := range sets {
			if r.IntN(5) == 0 {
				p.KeepTags = append(p.KeepTags, s)
			}
		}
		if !p.IsEmpty() {
			return p
		}
	}
}

// looser returns a policy that keeps at least what p keeps: counts grow
// (or become unlimited), durations grow unit by unit, tag sets are added.
func looser(r *rand.Rand, p retention.Policy) retention.Policy {
	q := p
	q.KeepTags = slices.Clone(p.KeepTags)
	for _, c := range []*int{&q.KeepLast, &q.KeepHourly, &q.KeepDaily, &q.KeepWeekly, &q.KeepMonthly, &q.KeepYearly} {
		switch {
		case *c == retention.Unlimited:
		case r.IntN(6) == 0:
			*c = retention.Unlimited
		default:
			*c += r.IntN(3)
		}
	}
	for _, d := range []*retention.Duration{&q.KeepWithin, &q.KeepWithinHourly, &q.KeepWithinDaily, &q.KeepWithinWeekly, &q.KeepWithinMonthly, &q.KeepWithinYearly} {
		if r.IntN(2) == 0 {
			d.Years += r.IntN(2) * r.IntN(2)
			d.Months += r.IntN(2)
			d.Days += r.IntN(10)
			d.Hours += r.IntN(10)
		}
	}
	if r.IntN(3) == 0 {
		q.KeepTags = append(q.KeepTags, []string{"c"})
	}
	return q
}

func mustPlan(t *testing.T, p retention.Policy, snaps []retention.Snapshot) retention.Result {
	t.Helper()
	res, err := retention.Plan(p, snaps, retention.Options{})
	require.NoError(t, err)
	return res
}

func eachRound(t *testing.T, f func(t *testing.T, r *rand.Rand)) {
	t.Helper()
	for seed := range uint64(propertyRounds) {
		r := rand.New(rand.NewPCG(seed, 0x6c6576716f72))
		t.Run(fmt.Sprintf("Seed%d", seed), func(t *testing.T) { f(t, r) })
	}
}

func ids(snaps []retention.Snapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.ID
	}
	return out
}

func dedupeIDs(snaps []retention.Snapshot) []retention.Snapshot {
	seen := map[string]bool{}
	return slices.DeleteFunc(snaps, func(s retention.Snapshot) bool {
		dup := seen[s.ID]
		seen[s.ID] = true
		return dup
	})
}

// Every snapshot is either kept or removed, never both and never more
// kept than exist; each kept one has a reason, removed ones have none; the
// lists run newest first.
func TestPropertyPartition(t *testing.T) {
	t.Parallel()
	eachRound(t, func(t *testing.T, r *rand.Rand) {
		snaps := dedupeIDs(randomSnapshots(r))
		p := randomPolicy(r)
		res := mustPlan(t, p, snaps)
		require.LessOrEqual(t, len(res.Keep), len(snaps))
		all := append(slices.Clone(res.Keep), res.Remove...)
		require.ElementsMatch(t, ids(snaps), all)
		require.Len(t, res.Reasons, len(res.Keep))
		for _, id := range res.Keep {
			require.NotEmpty(t, res.Reasons[id], id)
		}
		byID := map[string]time.Time{}
		for _, s := range snaps {
			byID[s.ID] = s.Time
		}
		for _, list := range [][]string{res.Keep, res.Remove} {
			require.True(t, slices.IsSortedFunc(list, func(a, b string) int {
				if c := byID[b].Compare(byID[a]); c != 0 {
					return c
				}
				return compareStrings(a, b)
			}), "newest first, ties by id: %v", list)
		}
	})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// A snapshot kept by a policy is kept by any looser one.
func TestPropertyLooserPolicyKeepsMore(t *testing.T) {
	t.Parallel()
	eachRound(t, func(t *testing.T, r *rand.Rand) {
		snaps := dedupeIDs(randomSnapshots(r))
		p := randomPolicy(r)
		q := looser(r, p)
		strict, loose := mustPlan(t, p, snaps), mustPlan(t, q, snaps)
		require.Subset(t, loose.Keep, strict.Keep, "policy %+v vs looser %+v", p, q)
	})
}

// With counting rules only and finite counts, no more snapshots are kept
// than the counts add up to (the oldest snapshot kept "too" uses a count).
func TestPropertyCountsBoundTheKept(t *testing.T) {
	t.Parallel()
	eachRound(t, func(t *testing.T, r *rand.Rand) {
		snaps := dedupeIDs(randomSnapshots(r))
		p := retention.Policy{
			KeepLast: r.IntN(4), KeepHourly: r.IntN(4), KeepDaily: r.IntN(4),
			KeepWeekly: r.IntN(4), KeepMonthly: r.IntN(4), KeepYearly: r.IntN(4),
		}
		if p.IsEmpty() {
			p.KeepDaily = 1
		}
		sum := p.KeepLast + p.KeepHourly + p.KeepDaily + p.KeepWeekly + p.KeepMonthly + p.KeepYearly
		res := mustPlan(t, p, snaps)
		require.LessOrEqual(t, len(res.Keep), sum)
		if len(snaps) > 0 {
			require.NotEmpty(t, res.Keep, "a non-empty policy over snapshots keeps at least one")
		}
	})
}

// Rules are OR-ed: a policy keeps exactly what its rules keep one by one,
// and lists their reasons in rule order.
func TestPropertyRulesAreIndependent(t *testing.T) {
	t.Parallel()
	eachRound(t, func(t *testing.T, r *rand.Rand) {
		snaps := dedupeIDs(randomSnapshots(r))
		p := randomPolicy(r)
		whole := mustPlan(t, p, snaps)
		union := map[string][]string{}
		for _, single := range splitRules(p) {
			part := mustPlan(t, single, snaps)
			for _, id := range part.Keep {
				union[id] = append(union[id], part.Reasons[id]...)
			}
		}
		require.Equal(t, union, whole.Reasons)
	})
}

// splitRules returns one policy per rule that p turns on, in rule order.
func splitRules(p retention.Policy) []retention.Policy {
	var out []retention.Policy
	add := func(q retention.Policy) {
		if !q.IsEmpty() {
			out = append(out, q)
		}
	}
	for _, tags := range p.KeepTags {
		add(retention.Policy{KeepTags: [][]string{tags}})
	}
	add(retention.Policy{KeepWithin: p.KeepWithin})
	add(retention.Policy{KeepLast: p.KeepLast})
	add(retention.Policy{KeepHourly: p.KeepHourly})
	add(retention.Policy{KeepDaily: p.KeepDaily})
	add(retention.Policy{KeepWeekly: p.KeepWeekly})
	add(retention.Policy{KeepMonthly: p.KeepMonthly})
	add(retention.Policy{KeepYearly: p.KeepYearly})
	add(retention.Policy{KeepWithinHourly: p.KeepWithinHourly})
	add(retention.Policy{KeepWithinDaily: p.KeepWithinDaily})
	add(retention.Policy{KeepWithinWeekly: p.KeepWithinWeekly})
	add(retention.Policy{KeepWithinMonthly: p.KeepWithinMonthly})
	add(retention.Policy{KeepWithinYearly: p.KeepWithinYearly})
	return out
}

// The plan does not depend on the order the snapshots arrive in, even
// when several share an instant.
func TestPropertyInputOrderDoesNotMatter(t *testing.T) {
	t.Parallel()
	eachRound(t, func(t *testing.T, r *rand.Rand) {
		snaps := dedupeIDs(randomSnapshots(r))
		p := randomPolicy(r)
		want := mustPlan(t, p, snaps)
		shuffled := slices.Clone(snaps)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		require.Equal(t, want, mustPlan(t, p, shuffled))
	})
}

// keep_last n keeps exactly the n newest; keep_within keeps exactly those
// strictly after the newest minus the duration.
func TestPropertyLastAndWithinAreExact(t *testing.T) {
	t.Parallel()
	eachRound(t, func(t *testing.T, r *rand.Rand) {
		snaps := dedupeIDs(randomSnapshots(r))
		if len(snaps) == 0 {
			return
		}
		n := 1 + r.IntN(10)
		res := mustPlan(t, retention.Policy{KeepLast: n}, snaps)
		all := mustPlan(t, retention.Policy{KeepLast: retention.Unlimited}, snaps)
		require.Equal(t, all.Keep[:min(n, len(snaps))], res.Keep)

		d := retention.Duration{Days: r.IntN(30), Hours: 1 + r.IntN(24)}
		res = mustPlan(t, retention.Policy{KeepWithin: d}, snaps)
		newest := slices.MaxFunc(snaps, func(a, b retention.Snapshot) int { return a.Time.Compare(b.Time) }).Time
		_, off := newest.Zone()
		cutoff := d.Before(newest.In(time.FixedZone("", off)))
		var want []string
		for _, id := range all.Keep {
			i := slices.IndexFunc(snaps, func(s retention.Snapshot) bool { return s.ID == id })
			if snaps[i].Time.After(cutoff) {
				want = append(want, id)
			}
		}
		require.Equal(t, want, res.Keep)
	})
}
