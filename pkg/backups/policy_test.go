package backups_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
)

func policy(t *testing.T, js string) retention.Policy {
	t.Helper()
	p, err := retention.ParsePolicy([]byte(js))
	require.NoError(t, err)
	return p
}

func TestCheckWithin(t *testing.T) {
	t.Parallel()
	tier := `{"keep_daily": 14, "keep_weekly": 8, "keep_monthly": 6, "keep_within": "1y", "keep_tags": [["legal"]]}`
	for name, tc := range map[string]struct {
		policy, field string
	}{
		"Same":                 {tier, ""},
		"Fewer":                {`{"keep_daily": 3}`, ""},
		"ShorterWindow":        {`{"keep_within": "11m"}`, ""},
		"NarrowerTags":         {`{"keep_tags": [["legal", "2026"]]}`, ""},
		"MoreDays":             {`{"keep_daily": 15}`, "keep_daily"},
		"Unlimited":            {`{"keep_monthly": -1}`, "keep_monthly"},
		"RuleTheTierLacks":     {`{"keep_last": 3}`, "keep_last"},
		"YearlyTheTierLacks":   {`{"keep_daily": 1, "keep_yearly": 1}`, "keep_yearly"},
		"TwelveMonthsIsNotOK":  {`{"keep_within": "12m"}`, "keep_within"},
		"WindowTheTierLacks":   {`{"keep_within_daily": "7d"}`, "keep_within_daily"},
		"WiderTags":            {`{"keep_tags": [["other"]]}`, "keep_tags[0]"},
		"EmptyKeepsEverything": {`{}`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			fe := backups.CheckWithin(policy(t, tc.policy), policy(t, tier), "growth")
			if name == "EmptyKeepsEverything" {
				require.NotNil(t, fe, "an empty source policy would keep everything forever")
				require.Contains(t, fe.Message, "null")
				return
			}
			if tc.field == "" {
				require.Nil(t, fe)
				return
			}
			require.NotNil(t, fe)
			require.Equal(t, tc.field, fe.Field, fe.Message)
			require.Contains(t, fe.Message, "growth")
		})
	}
	require.Nil(t, backups.CheckWithin(policy(t, `{"keep_last": 1000}`), retention.Policy{}, ""),
		"without a tier nothing is deleted, so any policy keeps less")
}

// TestLimitNeverKeepsMoreThanTheTier checks the promise behind the
// limits on random policies and snapshots: a policy cut by Limit keeps no
// snapshot that the tier's policy would not keep.
func TestLimitNeverKeepsMoreThanTheTier(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(6, 2026))
	count := func() int { return []int{0, 0, 1, 2, 3, 5, 8, 13, -1}[r.IntN(9)] }
	dur := func() retention.Duration {
		if r.IntN(2) == 0 {
			return retention.Duration{}
		}
		return retention.Duration{Years: r.IntN(2), Months: r.IntN(14), Days: r.IntN(40), Hours: r.IntN(30)}
	}
	tags := func() [][]string {
		return [][][]string{nil, {{"a"}}, {{"a", "b"}}, {{"b"}, {"c"}}}[r.IntN(4)]
	}
	random := func() retention.Policy {
		return retention.Policy{KeepLast: count(), KeepHourly: count(), KeepDaily: count(), KeepWeekly: count(), KeepMonthly: count(), KeepYearly: count(),
			KeepWithin: dur(), KeepWithinDaily: dur(), KeepWithinMonthly: dur(), KeepTags: tags()}
	}
	start := time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)
	for round := range 400 {
		tier, own := random(), random()
		if tier.IsEmpty() {
			continue
		}
		limited, _ := backups.Limit(own, tier)
		if limited.IsEmpty() {
			continue
		}
		require.Nil(t, backups.CheckWithin(limited, tier, ""), "round %d: Limit's result passes the check", round)
		var snaps []retention.Snapshot
		at := start
		for i := range 60 + r.IntN(200) {
			at = at.Add(time.Duration(1+r.IntN(72)) * time.Hour)
			s := retention.Snapshot{ID: string(rune('A'+i%26)) + at.Format("0601021504"), Time: at}
			if r.IntN(4) == 0 {
				s.Tags = []string{[]string{"a", "b", "c"}[r.IntN(3)]}
			}
			snaps = append(snaps, s)
		}
		byTier, err := retention.Plan(tier, snaps, retention.Options{})
		require.NoError(t, err)
		byOwn, err := retention.Plan(limited, snaps, retention.Options{})
		require.NoError(t, err)
		for _, id := range byOwn.Keep {
			_, kept := byTier.Reasons[id]
			require.True(t, kept, "round %d: %s kept by %s but not by the tier's %s", round, id, js(limited), js(tier))
		}
	}
}

func TestEffectivePolicy(t *testing.T) {
	t.Parallel()
	ent := `{"tier":"growth","storage_gb":500,"sources":5,"sla":"standard","retention":{"keep_daily":14,"keep_weekly":8,"keep_monthly":6}}`
	acc := &store.Account{ID: "acc_1", Entitlements: json.RawMessage(ent)}
	for name, tc := range map[string]struct {
		own, want, origin string
		notes             int
	}{
		"TierDefault":        {"", `{"keep_daily":14,"keep_weekly":8,"keep_monthly":6}`, backups.OriginTier, 0},
		"OwnWithinLimits":    {`{"keep_daily":3}`, `{"keep_daily":3}`, backups.OriginSource, 0},
		"CutAfterADowngrade": {`{"keep_daily":30,"keep_monthly":12}`, `{"keep_daily":14,"keep_monthly":6}`, backups.OriginSource, 2},
		"NothingLeft":        {`{"keep_yearly":5}`, `{"keep_daily":14,"keep_weekly":8,"keep_monthly":6}`, backups.OriginTier, 2},
	} {
		t.Run(name, func(t *testing.T) {
			src := &store.BackupSource{ID: "src_1"}
			if tc.own != "" {
				src.Policy = json.RawMessage(tc.own)
			}
			eff, err := backups.EffectivePolicy(src, acc)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, js(eff.Policy))
			require.Equal(t, tc.origin, eff.Origin)
			require.Equal(t, "growth", eff.Tier)
			require.Len(t, eff.Notes, tc.notes, eff.Notes)
		})
	}
	none, err := backups.EffectivePolicy(&store.BackupSource{ID: "src_1"}, &store.Account{ID: "acc_2", Entitlements: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.True(t, none.Policy.IsEmpty(), "no tier: an empty policy, which deletes nothing")
	require.Empty(t, none.Tier)
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
