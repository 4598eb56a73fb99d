package backups

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
)

// Where a source's effective policy comes from.
const (
	// OriginTier: the default policy of the account's tier (its
	// entitlements, add-ons included).
	OriginTier = "tier"
	// OriginSource: the source's own policy, within the tier's limits.
	OriginSource = "source"
)

// Effective is the policy a sweep applies to a source, and why.
type Effective struct {
	// Policy is the policy applied.
	Policy retention.Policy `json:"policy"`
	// Origin is OriginTier or OriginSource.
	Origin string `json:"policy_origin"`
	// Tier is the account's tier, "" when it has none (then the tier's
	// policy is empty and nothing is deleted).
	Tier string `json:"tier,omitempty"`
	// Notes explain adjustments: a source policy cut back to the tier's
	// limits after a downgrade.
	Notes []string `json:"policy_notes,omitempty"`
}

// Entitlements reads an account's entitlements as billing wrote them; {}
// (no tier) is the zero value, whose retention policy is empty.
func Entitlements(raw json.RawMessage) (catalog.Entitlements, error) {
	var e catalog.Entitlements
	if len(raw) == 0 {
		return e, nil
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, fmt.Errorf("reading entitlements: %w", err)
	}
	return e, nil
}

// SourcePolicy decodes a source's own policy; nil when it follows its tier.
func SourcePolicy(src *store.BackupSource) (*retention.Policy, error) {
	if len(src.Policy) == 0 || string(src.Policy) == "null" {
		return nil, nil
	}
	p, err := retention.ParsePolicy(src.Policy)
	if err != nil {
		return nil, fmt.Errorf("source %s: stored policy: %w", src.ID, err)
	}
	return &p, nil
}

// EffectivePolicy is the policy a sweep of src applies: the source's own
// policy cut to the tier's limits (Limit), or the tier's default when the
// source has none, or when nothing of its own policy is left after the
// cut (an empty policy would keep more than the tier pays for).
func EffectivePolicy(src *store.BackupSource, acc *store.Account) (Effective, error) {
	ent, err := Entitlements(acc.Entitlements)
	if err != nil {
		return Effective{}, fmt.Errorf("account %s: %w", acc.ID, err)
	}
	eff := Effective{Policy: ent.Retention, Origin: OriginTier, Tier: ent.Tier}
	own, err := SourcePolicy(src)
	if err != nil || own == nil {
		return eff, err
	}
	limited, notes := Limit(*own, ent.Retention)
	if limited.IsEmpty() {
		eff.Notes = append(notes, "nothing of the source's policy is within the tier's limits; the tier's policy applies")
		return eff, nil
	}
	eff.Policy, eff.Origin, eff.Notes = limited, OriginSource, notes
	return eff, nil
}

// A policy is within a tier's limits when it can never keep a snapshot
// that the tier's policy would not keep: it may keep less than the tier
// pays for, never more. Rule by rule:
//
//   - a counting rule (keep_last … keep_yearly) may be used only if the
//     tier's policy has it, with a count no higher; -1 (unlimited) only
//     where the tier's is unlimited;
//   - a keep_within* rule may be used only if the tier's policy has it,
//     with a window that is no longer on any calendar: no unit larger than
//     the tier's ("6m" within "1y6m"), or a longest possible length (a
//     year counted as 366 days, a month as 31) no more than the tier's
//     shortest (365 days, 28): "11m" is within "1y", "12m" is not;
//   - each keep_tags set must contain every tag of one of the tier's sets
//     (so it matches fewer snapshots).
//
// Add-ons that extend retention (extended_retention) raise the tier's
// policy in the entitlements, so they raise these limits too. An account
// without a tier has an empty policy, which keeps everything: any policy
// is within its limits.
//
// Limit returns p cut to these limits and a note for each cut.
func Limit(p, tier retention.Policy) (retention.Policy, []string) {
	if tier.IsEmpty() {
		return p, nil
	}
	var notes []string
	out := p
	oc, tc := counts(&out), counts(&tier)
	for i := range oc {
		o, t := oc[i].n, *tc[i].n
		switch {
		case *o == 0 || t == retention.Unlimited:
		case t == 0:
			notes = append(notes, fmt.Sprintf("%s is not part of the tier's policy; dropped", oc[i].name))
			*o = 0
		case *o == retention.Unlimited || *o > t:
			notes = append(notes, fmt.Sprintf("%s %s is more than the tier's %d; cut to %d", oc[i].name, countString(*o), t, t))
			*o = t
		}
	}
	od, td := durations(&out), durations(&tier)
	for i := range od {
		o, t := od[i].d, *td[i].d
		switch {
		case o.IsZero():
		case t.IsZero():
			notes = append(notes, fmt.Sprintf("%s is not part of the tier's policy; dropped", od[i].name))
			*o = retention.Duration{}
		case !durationWithin(*o, t):
			notes = append(notes, fmt.Sprintf("%s %s can be longer than the tier's %s; cut to %s", od[i].name, o, t, t))
			*o = t
		}
	}
	var sets [][]string
	for i, set := range out.KeepTags {
		if narrowerThanOne(set, tier.KeepTags) {
			sets = append(sets, set)
			continue
		}
		notes = append(notes, fmt.Sprintf("keep_tags[%d] %s matches snapshots the tier's policy does not keep; dropped", i, tagSet(set)))
	}
	out.KeepTags = sets
	return out, notes
}

// CheckWithin returns a *retention.FieldError naming the first rule of p
// outside the tier's limits ("keep_monthly"), or nil. An empty p is
// refused: it would keep every snapshot forever.
func CheckWithin(p, tier retention.Policy, tierName string) *retention.FieldError {
	if p.IsEmpty() {
		return &retention.FieldError{Message: `a source policy needs at least one rule; send {"policy": null} to follow the tier's default policy`}
	}
	if tier.IsEmpty() {
		return nil
	}
	who := "the tier's policy"
	if tierName != "" {
		who = "the " + tierName + " tier's policy"
	}
	pc, tc := counts(&p), counts(&tier)
	for i := range pc {
		o, t := *pc[i].n, *tc[i].n
		switch {
		case o == 0 || t == retention.Unlimited:
		case t == 0:
			return &retention.FieldError{Field: pc[i].name, Message: fmt.Sprintf("%s is not part of %s (%s); a source may keep less than its tier, never more", pc[i].name, who, policyString(tier))}
		case o == retention.Unlimited || o > t:
			return &retention.FieldError{Field: pc[i].name, Message: fmt.Sprintf("%s %s is more than %s allows (%d)", pc[i].name, countString(o), who, t)}
		}
	}
	pd, td := durations(&p), durations(&tier)
	for i := range pd {
		o, t := *pd[i].d, *td[i].d
		switch {
		case o.IsZero():
		case t.IsZero():
			return &retention.FieldError{Field: pd[i].name, Message: fmt.Sprintf("%s is not part of %s (%s); a source may keep less than its tier, never more", pd[i].name, who, policyString(tier))}
		case !durationWithin(o, t):
			return &retention.FieldError{Field: pd[i].name, Message: fmt.Sprintf("%s %s can be longer than %s allows (%s): count a year as 366 days and a month as 31 for yours, 365 and 28 for the tier's", pd[i].name, o, who, t)}
		}
	}
	for i, set := range p.KeepTags {
		if !narrowerThanOne(set, tier.KeepTags) {
			return &retention.FieldError{Field: fmt.Sprintf("keep_tags[%d]", i), Message: fmt.Sprintf("tag set %s keeps snapshots %s does not keep", tagSet(set), who)}
		}
	}
	return nil
}

type namedCount struct {
	name string
	n    *int
}

type namedDuration struct {
	name string
	d    *retention.Duration
}

func counts(p *retention.Policy) [6]namedCount {
	return [6]namedCount{
		{"keep_last", &p.KeepLast}, {"keep_hourly", &p.KeepHourly}, {"keep_daily", &p.KeepDaily},
		{"keep_weekly", &p.KeepWeekly}, {"keep_monthly", &p.KeepMonthly}, {"keep_yearly", &p.KeepYearly},
	}
}

func durations(p *retention.Policy) [6]namedDuration {
	return [6]namedDuration{
		{"keep_within", &p.KeepWithin}, {"keep_within_hourly", &p.KeepWithinHourly}, {"keep_within_daily", &p.KeepWithinDaily},
		{"keep_within_weekly", &p.KeepWithinWeekly}, {"keep_within_monthly", &p.KeepWithinMonthly}, {"keep_within_yearly", &p.KeepWithinYearly},
	}
}

// durationWithin reports whether window o never reaches further back than
// window t, from any instant: when each of its units is no larger (the
// calendar arithmetic is monotonic in each unit), or when its longest
// possible length is at most t's shortest.
func durationWithin(o, t retention.Duration) bool {
	if o.Years <= t.Years && o.Months <= t.Months && o.Days <= t.Days && o.Hours <= t.Hours {
		return true
	}
	return maxHours(o) <= minHours(t)
}

// minHours and maxHours bound, in hours, how far back d reaches from any
// instant with restic's calendar arithmetic (Duration.Before): y years and
// m months span between 365y+28m and 366y+31m days, whatever the date.
func minHours(d retention.Duration) int64 {
	return (int64(d.Years)*365+int64(d.Months)*28+int64(d.Days))*24 + int64(d.Hours)
}

func maxHours(d retention.Duration) int64 {
	return (int64(d.Years)*366+int64(d.Months)*31+int64(d.Days))*24 + int64(d.Hours)
}

// narrowerThanOne reports whether set contains every tag of one of sets,
// so it matches only snapshots that set matches.
func narrowerThanOne(set []string, sets [][]string) bool {
	for _, t := range sets {
		all := true
		for _, tag := range t {
			if !slices.Contains(set, tag) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func countString(n int) string {
	if n == retention.Unlimited {
		return "-1 (unlimited)"
	}
	return fmt.Sprint(n)
}

func tagSet(set []string) string { return "[" + strings.Join(set, ", ") + "]" }

func policyString(p retention.Policy) string {
	b, err := json.Marshal(p)
	if err != nil {
		return "?"
	}
	return string(b)
}
