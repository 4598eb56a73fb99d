package retention

import (
	"slices"
	"strings"
	"time"
)

// ReasonNoPolicy is the one reason given for every snapshot when the policy
// is empty: an empty policy removes nothing.
const ReasonNoPolicy = "no policy"

// Options tune Plan.
type Options struct {
	// Now, when set, is the current time. Snapshots after it are skipped
	// when finding the newest snapshot that the keep_within* windows are
	// measured back from (as restic does), so one snapshot stamped by a
	// clock far in the future cannot slide every window past the real
	// snapshots. When no snapshot is at or before Now, every snapshot is
	// inside every window. Zero means: measure from the newest snapshot,
	// whatever its time.
	Now time.Time
}

// Result is a plan: which snapshots to keep, which to remove, and why each
// kept one is kept.
type Result struct {
	// Keep lists the ids of the snapshots to keep, newest first (ties in
	// time by id).
	Keep []string `json:"keep"`
	// Remove lists the ids of the snapshots to remove, in the same order.
	Remove []string `json:"remove"`
	// Reasons maps each kept id to the rules that keep it, in rule order:
	// tag sets, keep_within, the counting rules (last, hourly, daily,
	// weekly, monthly, yearly), then keep_within_hourly … _yearly.
	Reasons map[string][]string `json:"reasons"`
}

// bucket indexes the period keys of an entry.
const (
	hourly = iota
	daily
	weekly
	monthly
	yearly
	numBuckets
)

var bucketNames = [numBuckets]string{"hourly", "daily", "weekly", "monthly", "yearly"}

// entry is a snapshot with its period keys, each read in the snapshot's own
// UTC offset: YYYYMMDDHH, YYYYMMDD, ISO YYYYWW, YYYYMM, YYYY.
type entry struct {
	snap *Snapshot
	keys [numBuckets]int64
}

func newEntry(s *Snapshot) entry {
	y, mo, d := s.Time.Date()
	h := s.Time.Hour()
	iy, iw := s.Time.ISOWeek()
	yy := int64(y)
	return entry{snap: s, keys: [numBuckets]int64{
		hourly:  yy*1_000_000 + int64(mo)*10_000 + int64(d)*100 + int64(h),
		daily:   yy*10_000 + int64(mo)*100 + int64(d),
		weekly:  int64(iy)*100 + int64(iw),
		monthly: yy*100 + int64(mo),
		yearly:  yy,
	}}
}

// counter is the running state of one counting rule.
type counter struct {
	left   int // counts left; -1 is unlimited, 0 is off or used up
	bucket int // index into entry.keys; -1 for keep_last, where every snapshot is new
	last   int64
	seen   bool
	reason string
	oldest string
}

// window is the running state of one keep_within_* rule.
type window struct {
	on     bool
	cutoff time.Time
	bucket int
	last   int64
	seen   bool
	reason string
	oldest string
}

// Plan applies policy p to snapshots and says which to keep and why. It
// follows restic's `forget` (see the package documentation for where it
// differs). It returns a *FieldError when p or a snapshot is invalid;
// snapshots is not modified.
func Plan(p Policy, snapshots []Snapshot, opts Options) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	if err := validateSnapshots(snapshots); err != nil {
		return Result{}, err
	}
	n := len(snapshots)
	entries := make([]entry, n)
	for i := range snapshots {
		entries[i] = newEntry(&snapshots[i])
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := b.snap.Time.Compare(a.snap.Time); c != 0 {
			return c
		}
		return strings.Compare(a.snap.ID, b.snap.ID)
	})

	res := Result{Keep: make([]string, 0, n), Remove: []string{}, Reasons: make(map[string][]string, n)}
	if p.IsEmpty() {
		for _, e := range entries {
			res.Keep = append(res.Keep, e.snap.ID)
			res.Reasons[e.snap.ID] = []string{ReasonNoPolicy}
		}
		return res, nil
	}
	if n == 0 {
		return res, nil
	}

	latest, found := newest(entries, opts.Now)
	inside := func(t, cutoff time.Time) bool { return !found || t.After(cutoff) }

	tagReasons := make([]string, len(p.KeepTags))
	for i, set := range p.KeepTags {
		tagReasons[i] = "has tags [" + strings.Join(set, ", ") + "]"
	}
	var withinCutoff time.Time
	withinReason := "within " + p.KeepWithin.String()
	if !p.KeepWithin.IsZero() {
		withinCutoff = p.KeepWithin.Before(latest)
	}

	counts := p.counts()
	var counters [len(counts)]counter
	for i, c := range counts {
		counters[i] = counter{left: *c.n, bucket: i - 1}
		if i == 0 {
			counters[i].reason = "last snapshot"
		} else {
			counters[i].reason = bucketNames[i-1] + " snapshot"
		}
		counters[i].oldest = "oldest " + counters[i].reason
	}
	durs := p.durations()
	var windows [numBuckets]window
	for i := range windows {
		d := *durs[i+1].d
		windows[i] = window{on: !d.IsZero(), bucket: i, reason: bucketNames[i] + " within " + d.String()}
		windows[i].oldest = "oldest " + windows[i].reason
		if windows[i].on {
			windows[i].cutoff = d.Before(latest)
		}
	}

	for i, e := range entries {
		isOldest := i == n-1
		t := e.snap.Time
		var reasons []string
		for j, set := range p.KeepTags {
			if hasTags(e.snap.Tags, set) {
				reasons = append(reasons, tagReasons[j])
			}
		}
		if !p.KeepWithin.IsZero() && inside(t, withinCutoff) {
			reasons = append(reasons, withinReason)
		}
		for c := range counters {
			ct := &counters[c]
			if ct.left == 0 {
				continue
			}
			isNew, key := true, int64(0)
			if ct.bucket >= 0 {
				key = e.keys[ct.bucket]
				isNew = !ct.seen || key != ct.last
			}
			if !isNew && !isOldest {
				continue
			}
			ct.seen, ct.last = true, key
			if ct.left > 0 {
				ct.left--
			}
			if isNew {
				reasons = append(reasons, ct.reason)
			} else {
				reasons = append(reasons, ct.oldest)
			}
		}
		for w := range windows {
			wd := &windows[w]
			if !wd.on || !inside(t, wd.cutoff) {
				continue
			}
			key := e.keys[wd.bucket]
			isNew := !wd.seen || key != wd.last
			if !isNew && !isOldest {
				continue
			}
			wd.seen, wd.last = true, key
			if isNew {
				reasons = append(reasons, wd.reason)
			} else {
				reasons = append(reasons, wd.oldest)
			}
		}
		if len(reasons) == 0 {
			res.Remove = append(res.Remove, e.snap.ID)
			continue
		}
		res.Keep = append(res.Keep, e.snap.ID)
		res.Reasons[e.snap.ID] = reasons
	}
	return res, nil
}

// newest finds the time the keep_within* windows are measured back from:
// the newest snapshot not after now (any snapshot when now is zero), in
// its own UTC offset as a fixed zone so that calendar arithmetic does not
// depend on the machine's time zone. found is false when every snapshot
// is after now.
func newest(sorted []entry, now time.Time) (latest time.Time, found bool) {
	for _, e := range sorted {
		if now.IsZero() || !e.snap.Time.After(now) {
			t := e.snap.Time
			_, off := t.Zone()
			return t.In(time.FixedZone("", off)), true
		}
	}
	return time.Time{}, false
}

// hasTags reports whether tags include every tag of set; the set [""]
// matches a snapshot without tags (restic's --keep-tag with an empty value).
func hasTags(tags, set []string) bool {
	if len(set) == 1 && set[0] == "" {
		return len(tags) == 0
	}
	for _, want := range set {
		if !slices.Contains(tags, want) {
			return false
		}
	}
	return true
}
