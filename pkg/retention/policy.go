package retention

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Unlimited is the count that keeps every period: "keep_daily": -1 keeps
// the newest snapshot of every day that has one (restic's "unlimited").
const Unlimited = -1

// Policy says which snapshots to keep; every snapshot it does not keep is
// removed. Its rules are OR-ed: a snapshot is kept when any rule keeps it.
// The zero Policy is empty and keeps everything.
//
// The JSON form uses the rule names in the field tags; ParsePolicy reads
// it strictly and MarshalJSON writes it.
type Policy struct {
	// KeepLast keeps the n newest snapshots.
	KeepLast int `json:"keep_last,omitempty"`
	// KeepHourly keeps the newest snapshot of each of the n newest hours
	// that have one.
	KeepHourly int `json:"keep_hourly,omitempty"`
	// KeepDaily keeps the newest snapshot of each of the n newest days
	// that have one.
	KeepDaily int `json:"keep_daily,omitempty"`
	// KeepWeekly keeps the newest snapshot of each of the n newest ISO
	// weeks (Monday to Sunday) that have one.
	KeepWeekly int `json:"keep_weekly,omitempty"`
	// KeepMonthly keeps the newest snapshot of each of the n newest
	// calendar months that have one.
	KeepMonthly int `json:"keep_monthly,omitempty"`
	// KeepYearly keeps the newest snapshot of each of the n newest
	// calendar years that have one.
	KeepYearly int `json:"keep_yearly,omitempty"`

	// KeepWithin keeps every snapshot taken less than this long before
	// the newest snapshot.
	KeepWithin Duration `json:"keep_within,omitzero"`
	// KeepWithinHourly keeps the newest snapshot of every hour inside the
	// window that KeepWithin would use for this duration.
	KeepWithinHourly Duration `json:"keep_within_hourly,omitzero"`
	// KeepWithinDaily is KeepWithinHourly for days.
	KeepWithinDaily Duration `json:"keep_within_daily,omitzero"`
	// KeepWithinWeekly is KeepWithinHourly for ISO weeks.
	KeepWithinWeekly Duration `json:"keep_within_weekly,omitzero"`
	// KeepWithinMonthly is KeepWithinHourly for months.
	KeepWithinMonthly Duration `json:"keep_within_monthly,omitzero"`
	// KeepWithinYearly is KeepWithinHourly for years.
	KeepWithinYearly Duration `json:"keep_within_yearly,omitzero"`

	// KeepTags keeps every snapshot that carries all tags of at least one
	// of the sets, like restic's repeated --keep-tag a,b:
	// [["a","b"],["c"]] keeps a snapshot tagged both a and b, or tagged c.
	// The set [""] matches snapshots without tags.
	KeepTags [][]string `json:"keep_tags,omitempty"`
}

// IsEmpty reports whether p has no rule at all. An empty policy keeps every
// snapshot (restic refuses to run one; Levqor never deletes on it).
func (p Policy) IsEmpty() bool {
	return p.KeepLast == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 &&
		p.KeepMonthly == 0 && p.KeepYearly == 0 &&
		p.KeepWithin.IsZero() && p.KeepWithinHourly.IsZero() && p.KeepWithinDaily.IsZero() &&
		p.KeepWithinWeekly.IsZero() && p.KeepWithinMonthly.IsZero() && p.KeepWithinYearly.IsZero() &&
		len(p.KeepTags) == 0
}

// Validate checks a policy built in Go the way ParsePolicy checks JSON:
// counts are -1 or more, durations are not negative, tag sets are not
// empty and use "" only alone. The error is a *FieldError naming the rule.
func (p Policy) Validate() error {
	for _, c := range p.counts() {
		if *c.n < Unlimited {
			return fieldErr(c.name, "count must be -1 (unlimited), 0 (off) or more, got %d", *c.n)
		}
	}
	for _, d := range p.durations() {
		if err := d.d.validate(); err != nil {
			return fieldErr(d.name, "%v", err)
		}
	}
	for i, set := range p.KeepTags {
		if err := validateTagSet(set); err != nil {
			return fieldErr(fmt.Sprintf("keep_tags[%d]", i), "%v", err)
		}
	}
	return nil
}

func validateTagSet(set []string) error {
	if len(set) == 0 {
		return errors.New(`empty tag set; use [""] to keep snapshots without tags`)
	}
	for _, t := range set {
		if t == "" && len(set) > 1 {
			return errors.New(`the empty tag means "no tags" and must stand alone: [""]`)
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
	d    *Duration
}

// counts lists the counting rules in their fixed order, with JSON names.
func (p *Policy) counts() [6]namedCount {
	return [6]namedCount{
		{"keep_last", &p.KeepLast},
		{"keep_hourly", &p.KeepHourly},
		{"keep_daily", &p.KeepDaily},
		{"keep_weekly", &p.KeepWeekly},
		{"keep_monthly", &p.KeepMonthly},
		{"keep_yearly", &p.KeepYearly},
	}
}

// durations lists the duration rules in their fixed order, with JSON names.
func (p *Policy) durations() [6]namedDuration {
	return [6]namedDuration{
		{"keep_within", &p.KeepWithin},
		{"keep_within_hourly", &p.KeepWithinHourly},
		{"keep_within_daily", &p.KeepWithinDaily},
		{"keep_within_weekly", &p.KeepWithinWeekly},
		{"keep_within_monthly", &p.KeepWithinMonthly},
		{"keep_within_yearly", &p.KeepWithinYearly},
	}
}

// RuleNames are the keys a policy's JSON may use, in the order rules are
// evaluated and reasons are listed.
var RuleNames = []string{
	"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
	"keep_within", "keep_within_hourly", "keep_within_daily", "keep_within_weekly",
	"keep_within_monthly", "keep_within_yearly", "keep_tags",
}

// ParsePolicy reads a policy's JSON strictly: a single object whose keys are
// rule names (RuleNames), each at most once; counts are integers (-1 for
// unlimited), durations are strings in restic's notation ("30d",
// "1y2m3d4h"), keep_tags is a list of lists of strings; null means the
// rule is off. Anything else is a *FieldError naming the key.
func ParsePolicy(data []byte) (Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return Policy{}, jsonErr("", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Policy{}, fieldErr("", "a policy must be a JSON object such as {\"keep_daily\": 7}")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Policy{}, jsonErr("", err)
		}
		key, _ := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Policy{}, jsonErr(key, err)
		}
		if seen[key] {
			return Policy{}, fieldErr(key, "given twice")
		}
		seen[key] = true
		if err := p.set(key, bytes.TrimSpace(raw)); err != nil {
			return Policy{}, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Policy{}, jsonErr("", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Policy{}, fieldErr("", "unexpected data after the policy object")
	}
	return p, nil
}

// set decodes one rule's raw JSON value into p.
func (p *Policy) set(key string, raw []byte) error {
	isNull := string(raw) == "null"
	for _, c := range p.counts() {
		if c.name != key {
			continue
		}
		if isNull {
			return nil
		}
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			return fieldErr(key, "want an integer count (-1 for unlimited), got %s", clip(raw))
		}
		if n < Unlimited {
			return fieldErr(key, "count must be -1 (unlimited), 0 (off) or more, got %d", n)
		}
		*c.n = n
		return nil
	}
	for _, d := range p.durations() {
		if d.name != key {
			continue
		}
		if isNull {
			return nil
		}
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return fieldErr(key, "want a duration string such as \"30d\" or \"1y2m3d4h\", got %s", clip(raw))
		}
		v, err := ParseDuration(s)
		if err != nil {
			return fieldErr(key, "%v", err)
		}
		*d.d = v
		return nil
	}
	if key == "keep_tags" {
		if isNull {
			return nil
		}
		sets, err := parseTagSets(raw)
		if err != nil {
			return err
		}
		if len(sets) > 0 { // [] is off, like null
			p.KeepTags = sets
		}
		return nil
	}
	return fieldErr(key, "unknown policy rule %q (known: %s)", key, strings.Join(RuleNames, ", "))
}

func parseTagSets(raw []byte) ([][]string, error) {
	const want = `want a list of tag sets such as [["a","b"],["c"]]`
	var outer []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &outer) != nil {
		return nil, fieldErr("keep_tags", "%s, got %s", want, clip(raw))
	}
	sets := make([][]string, 0, len(outer))
	for i, r := range outer {
		field := fmt.Sprintf("keep_tags[%d]", i)
		var inner []json.RawMessage
		if len(r) == 0 || r[0] != '[' || json.Unmarshal(r, &inner) != nil {
			return nil, fieldErr(field, "%s, got %s", want, clip(r))
		}
		set := make([]string, 0, len(inner))
		for j, t := range inner {
			var s string
			if len(t) == 0 || t[0] != '"' || json.Unmarshal(t, &s) != nil {
				return nil, fieldErr(fmt.Sprintf("%s[%d]", field, j), "want a tag string, got %s", clip(t))
			}
			set = append(set, s)
		}
		if err := validateTagSet(set); err != nil {
			return nil, fieldErr(field, "%v", err)
		}
		sets = append(sets, set)
	}
	return sets, nil
}

var (
	_ json.Marshaler   = Policy{}
	_ json.Unmarshaler = (*Policy)(nil)
)

// MarshalJSON writes the rules that are on, in the form ParsePolicy reads.
func (p Policy) MarshalJSON() ([]byte, error) {
	type plain Policy // no methods: the field tags do the work
	return json.Marshal(plain(p))
}

// UnmarshalJSON reads a policy with ParsePolicy, so a Policy embedded in a
// larger document is held to the same rules.
func (p *Policy) UnmarshalJSON(data []byte) error {
	v, err := ParsePolicy(data)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// jsonErr turns a decoder error into a FieldError without Go type names.
func jsonErr(field string, err error) *FieldError {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return fieldErr(field, "invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fieldErr(field, "invalid JSON: unexpected end of input")
	default:
		return fieldErr(field, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// clip quotes at most 40 bytes of a raw value for an error message.
func clip(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}
