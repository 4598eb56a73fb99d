package triage

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/support/sla"
)

// Classifier decides a new ticket's category, severity and queue. The
// rule-based Rules is the default; a smarter classifier can replace it as
// long as it explains itself through FiredRules.
type Classifier interface {
	Classify(Input) Decision
}

var _ Classifier = (*Rules)(nil)

// Input is what a classifier sees of a ticket and its account.
type Input struct {
	// Subject and Body are the customer's words, matched by the rules.
	Subject string `json:"subject"`
	Body    string `json:"body"`
	// Category and Severity are the customer's own choice, "" when none
	// was made.
	Category string `json:"category,omitempty"`
	Severity string `json:"severity,omitempty"`
	// Tier is the account's catalog tier, already resolved from legacy
	// names (catalog.Catalog.Tier); "" or unknown routes to the default
	// queue unless a rule without a tier condition matches.
	Tier string `json:"tier,omitempty"`
	// SLAClass is the account's SLA class from its entitlements.
	SLAClass string `json:"sla_class,omitempty"`
	// DFY is true when the account has bought a Done-For-You package.
	DFY bool `json:"dfy,omitempty"`
}

// Decision is a classifier's answer. FiredRules lists, in order, the
// triage rules that fired, the pseudo-rules for choices not made by a rule
// (customer.category, customer.severity, default.category,
// default.severity), and the routing rule that chose the queue (or
// default.queue), so an agent can see why a ticket landed where it did.
type Decision struct {
	// Category is one of the rules file's categories.
	Category string `json:"category"`
	// Severity is one of sla.Severities.
	Severity string `json:"severity"`
	// Queue is the queue the ticket goes to.
	Queue string `json:"queue"`
	// FiredRules explains the decision, in the order above.
	FiredRules []string `json:"fired_rules"`
}

// The pseudo-rule ids a Decision lists when no rule made a choice.
const (
	FiredCustomerCategory = "customer.category"
	FiredCustomerSeverity = "customer.severity"
	FiredDefaultCategory  = "default.category"
	FiredDefaultSeverity  = "default.severity"
	FiredDefaultQueue     = "default.queue"
)

// Rules is a validated rules file: the rule-based Classifier, the router
// and the SLA policy.
type Rules struct {
	categories      []string
	defaultCategory string
	defaultSeverity string
	rules           []rule
	routes          []RouteConfig
	defaultQueue    string
	sla             *sla.Policy
}

type rule struct {
	RuleConfig
	any, all, unless []phrase
}

var (
	idPattern   = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
	namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// New validates f. Every problem is reported, each naming its field.
func New(f File) (*Rules, error) {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	t := f.Triage
	r := &Rules{
		categories:      t.Categories,
		defaultCategory: t.DefaultCategory,
		defaultSeverity: t.DefaultSeverity,
		routes:          slices.Clone(f.Routing.Rules),
		defaultQueue:    f.Routing.DefaultQueue,
	}
	if len(t.Categories) == 0 {
		bad("triage.categories", "missing; want a list such as [data_loss, billing, other]")
	}
	for i, c := range t.Categories {
		if !namePattern.MatchString(c) {
			bad(fmt.Sprintf("triage.categories[%d]", i), "%q: want lower-case letters, digits and _", c)
		} else if slices.Index(t.Categories, c) < i {
			bad(fmt.Sprintf("triage.categories[%d]", i), "%q is listed twice", c)
		}
	}
	if !slices.Contains(t.Categories, t.DefaultCategory) {
		bad("triage.default_category", "%q: want one of triage.categories (%s)", t.DefaultCategory, strings.Join(t.Categories, ", "))
	}
	if !slices.Contains(sla.Severities, t.DefaultSeverity) {
		bad("triage.default_severity", "%q: want one of %s", t.DefaultSeverity, strings.Join(sla.Severities, ", "))
	}
	ids := map[string]string{}
	checkID := func(field, id string) {
		switch {
		case !idPattern.MatchString(id):
			bad(field+".id", "%q: want dotted lower-case words such as data_loss.lost", id)
		case strings.HasPrefix(id, "customer.") || strings.HasPrefix(id, "default."):
			bad(field+".id", "%q: customer. and default. are reserved for choices not made by a rule", id)
		case ids[id] != "":
			bad(field+".id", "%q is already the id of %s", id, ids[id])
		default:
			ids[id] = field
		}
	}
	phrases := func(field string, list []string) []phrase {
		var out []phrase
		for i, s := range list {
			p, err := parsePhrase(s)
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", field, i), "%v", err)
				continue
			}
			out = append(out, p)
		}
		return out
	}
	for i, rc := range t.Rules {
		field := fmt.Sprintf("triage.rules[%d]", i)
		checkID(field, rc.ID)
		ru := rule{RuleConfig: rc, any: phrases(field+".any", rc.Any), all: phrases(field+".all", rc.All), unless: phrases(field+".unless", rc.Unless)}
		if len(rc.Any) == 0 && len(rc.All) == 0 {
			bad(field, "rule %s has no phrases; want any or all", rc.ID)
		}
		if rc.Category == "" && rc.Severity == "" {
			bad(field, "rule %s decides nothing; want a category, a severity or both", rc.ID)
		}
		if rc.Category != "" && !slices.Contains(t.Categories, rc.Category) {
			bad(field+".category", "%q: want one of triage.categories (%s)", rc.Category, strings.Join(t.Categories, ", "))
		}
		if rc.Severity != "" && !slices.Contains(sla.Severities, rc.Severity) {
			bad(field+".severity", "%q: want one of %s", rc.Severity, strings.Join(sla.Severities, ", "))
		}
		switch {
		case rc.Weight < 0:
			bad(field+".weight", "%d: want a positive weight", rc.Weight)
		case rc.Weight > 0 && rc.Category == "":
			bad(field+".weight", "a weight counts toward a category, and rule %s has none", rc.ID)
		case rc.Weight == 0:
			ru.Weight = 1
		}
		r.rules = append(r.rules, ru)
	}
	if !namePattern.MatchString(f.Routing.DefaultQueue) {
		bad("routing.default_queue", "%q: want a queue name of lower-case letters, digits and _", f.Routing.DefaultQueue)
	}
	for i, rc := range f.Routing.Rules {
		field := fmt.Sprintf("routing.rules[%d]", i)
		checkID(field, rc.ID)
		if !namePattern.MatchString(rc.Queue) {
			bad(field+".queue", "%q: want a queue name of lower-case letters, digits and _", rc.Queue)
		}
		oneOf := func(key string, got, want []string) {
			for j, v := range got {
				if !slices.Contains(want, v) {
					bad(fmt.Sprintf("%s.%s[%d]", field, key, j), "%q: want one of %s", v, strings.Join(want, ", "))
				}
			}
		}
		oneOf("tiers", rc.Tiers, catalog.Tiers)
		oneOf("sla_classes", rc.SLAClasses, catalog.SLAClasses)
		oneOf("severities", rc.Severities, sla.Severities)
		oneOf("categories", rc.Categories, t.Categories)
	}
	policy, err := sla.New(f.SLA)
	if err != nil {
		errs = append(errs, strings.TrimPrefix(err.Error(), sla.ErrInvalid.Error()+": "))
	}
	r.sla = policy
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return r, nil
}

// SLA is the SLA policy of the rules file.
func (r *Rules) SLA() *sla.Policy { return r.sla }

// Categories lists the ticket categories, for validating a customer's
// choice.
func (r *Rules) Categories() []string { return slices.Clone(r.categories) }

// Classify decides a ticket's category, severity and queue:
//
//   - Category: the customer's choice when it is one of the categories,
//     unless a rule with override_customer fires for another category;
//     otherwise the category whose fired rules weigh most (ties: the one
//     listed first); otherwise the default category.
//   - Severity: the customer's choice when it is a severity, raised (never
//     lowered) by the highest severity of a fired override_customer rule;
//     otherwise the highest severity any fired rule proposes; otherwise
//     the default severity.
//   - Queue: Route of the result.
//
// A customer's choice that is not a known category or severity is ignored
// here; the API rejects it before a ticket is created.
func (r *Rules) Classify(in Input) Decision {
	txt := newText(in.Subject, in.Body)
	var fired []*rule
	var d Decision
	for i := range r.rules {
		if r.rules[i].fires(txt) {
			fired = append(fired, &r.rules[i])
			d.FiredRules = append(d.FiredRules, r.rules[i].ID)
		}
	}

	customerCategory := strings.ToLower(strings.TrimSpace(in.Category))
	if slices.Contains(r.categories, customerCategory) {
		d.Category = customerCategory
		if c := r.bestCategory(fired, true); c != "" && c != customerCategory {
			d.Category = c
		} else {
			d.FiredRules = append(d.FiredRules, FiredCustomerCategory)
		}
	} else if c := r.bestCategory(fired, false); c != "" {
		d.Category = c
	} else {
		d.Category = r.defaultCategory
		d.FiredRules = append(d.FiredRules, FiredDefaultCategory)
	}

	if sev, ok := sla.NormalizeSeverity(in.Severity); ok {
		d.Severity = sev
		if s := highestSeverity(fired, true); sla.Rank(s) > sla.Rank(sev) {
			d.Severity = s
		} else {
			d.FiredRules = append(d.FiredRules, FiredCustomerSeverity)
		}
	} else if s := highestSeverity(fired, false); s != "" {
		d.Severity = s
	} else {
		d.Severity = r.defaultSeverity
		d.FiredRules = append(d.FiredRules, FiredDefaultSeverity)
	}

	queue, by := r.Route(in, d.Category, d.Severity)
	d.Queue = queue
	d.FiredRules = append(d.FiredRules, by)
	return d
}

// Route returns the queue for a ticket of the given category and severity
// from the account in in (its tier, SLA class and DFY), and the id of the
// routing rule that chose it, or default.queue. The worker calls it again
// when an agent changes a ticket's category or severity.
func (r *Rules) Route(in Input, category, severity string) (queue, ruleID string) {
	tier := strings.ToLower(strings.TrimSpace(in.Tier))
	class := strings.ToLower(strings.TrimSpace(in.SLAClass))
	category = strings.ToLower(strings.TrimSpace(category))
	severity = strings.ToLower(strings.TrimSpace(severity))
	for _, rc := range r.routes {
		if matchesAny(rc.Tiers, tier) && matchesAny(rc.SLAClasses, class) &&
			matchesAny(rc.Severities, severity) && matchesAny(rc.Categories, category) &&
			(rc.DFY == nil || *rc.DFY == in.DFY) {
			return rc.Queue, rc.ID
		}
	}
	return r.defaultQueue, FiredDefaultQueue
}

func matchesAny(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }

// fires reports whether the rule matches t.
func (ru *rule) fires(t *text) bool {
	var cancelled []span
	for _, p := range ru.unless {
		cancelled = append(cancelled, t.find(p)...)
	}
	for _, p := range ru.all {
		if !t.has(p, cancelled) {
			return false
		}
	}
	if len(ru.any) == 0 {
		return true
	}
	for _, p := range ru.any {
		if t.has(p, cancelled) {
			return true
		}
	}
	return false
}

// bestCategory is the category with the highest total weight among the
// fired rules (only override_customer rules when overrideOnly), ties
// going to the category listed first; "" when none voted.
func (r *Rules) bestCategory(fired []*rule, overrideOnly bool) string {
	score := map[string]int{}
	for _, ru := range fired {
		if ru.Category != "" && (ru.OverrideCustomer || !overrideOnly) {
			score[ru.Category] += ru.Weight
		}
	}
	best := ""
	for _, c := range r.categories {
		if s, ok := score[c]; ok && (best == "" || s > score[best]) {
			best = c
		}
	}
	return best
}

// highestSeverity is the highest severity the fired rules propose (only
// override_customer rules when overrideOnly); "" when none does.
func highestSeverity(fired []*rule, overrideOnly bool) string {
	best := ""
	for _, ru := range fired {
		if ru.Severity != "" && (ru.OverrideCustomer || !overrideOnly) && sla.Rank(ru.Severity) > sla.Rank(best) {
			best = ru.Severity
		}
	}
	return best
}
