package retention_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/levqor/levqor/pkg/retention"
)

// BenchmarkPlan10000 plans 10,000 hourly snapshots (about 14 months, in an
// offset that changes with summer time) under a typical tier policy.
func BenchmarkPlan10000(b *testing.B) {
	summer, winter := time.FixedZone("", 3600), time.FixedZone("", 0)
	start := time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)
	snaps := make([]retention.Snapshot, 10_000)
	for i := range snaps {
		t := start.Add(time.Duration(i) * time.Hour)
		zone := winter
		if m := t.Month(); m >= time.April && m <= time.October {
			zone = summer
		}
		var tags []string
		if i%500 == 0 {
			tags = []string{"pre-upgrade"}
		}
		snaps[i] = retention.Snapshot{ID: fmt.Sprintf("snap-%05d", i), Time: t.In(zone), Tags: tags}
	}
	p := retention.Policy{
		KeepLast: 3, KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 3,
		KeepWithin: retention.Duration{Days: 2}, KeepTags: [][]string{{"pre-upgrade"}},
	}
	b.ReportAllocs()
	var kept int
	for b.Loop() {
		res, err := retention.Plan(p, snaps, retention.Options{})
		if err != nil {
			b.Fatal(err)
		}
		kept = len(res.Keep)
	}
	b.ReportMetric(float64(kept), "kept")
}
