package sla

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/catalog"
)

// Defaults for the optional fields of Config.
const (
	// AtRiskDefault is the share of a target that, once used, makes a
	// clock at risk.
	AtRiskDefault = 0.8
	// FallbackClassDefault is the class used for a ticket whose SLA class
	// is empty or unknown, so that no ticket is ever without targets.
	FallbackClassDefault = "standard"
	// EscalationQueueDefault is the queue a breached ticket moves to.
	EscalationQueueDefault = "escalations"
)

// ErrInvalid wraps every validation failure of an SLA configuration.
var ErrInvalid = errors.New("invalid sla configuration")

// Config is the sla section of the support rules file.
type Config struct {
	// AtRisk is the share of a target (more than 0, less than 1) at which
	// a clock counts as at risk; 0 means AtRiskDefault.
	AtRisk float64 `json:"at_risk,omitempty"`
	// FallbackClass is the class for tickets whose class is empty or
	// unknown; "" means FallbackClassDefault.
	FallbackClass string `json:"fallback_class,omitempty"`
	// EscalationQueue is where a breached ticket goes; "" means
	// EscalationQueueDefault.
	EscalationQueue string `json:"escalation_queue,omitempty"`
	// Classes holds the targets of each of the catalog's SLA classes, all
	// of which must be present.
	Classes map[string]ClassConfig `json:"classes"`
}

// ClassConfig is one SLA class: its business hours (none: 24×7) and its
// targets per severity (every severity must have one).
type ClassConfig struct {
	// BusinessHours are the class's opening hours; nil means 24×7.
	BusinessHours *HoursConfig `json:"business_hours,omitempty"`
	// Targets per severity: low, normal, high, critical.
	Targets map[string]TargetConfig `json:"targets"`
}

// TargetConfig holds the two targets of one (class, severity), as Go
// durations ("30m", "4h", "1h30m") of business time. There is no day unit
// on purpose: a business day is as long as the class's opening hours, so
// targets say hours.
type TargetConfig struct {
	// FirstResponse: from opening to an agent's first reply.
	FirstResponse string `json:"first_response"`
	// Resolution: from opening to resolved, pauses excluded; at least
	// FirstResponse.
	Resolution string `json:"resolution"`
}

// Targets are the parsed targets of one (class, severity).
type Targets struct {
	// FirstResponse and Resolution are business time.
	FirstResponse time.Duration
	Resolution    time.Duration
}

// Class is a validated SLA class.
type Class struct {
	// Name is the class name, e.g. "business".
	Name string
	// Calendar is the class's business hours; nil means 24×7.
	Calendar *Calendar
	targets  map[string]Targets
}

// Targets returns the class's targets for severity; an unknown severity
// reads SeverityDefault's.
func (c *Class) Targets(severity string) Targets {
	s, ok := NormalizeSeverity(severity)
	if !ok {
		s = SeverityDefault
	}
	return c.targets[s]
}

// Policy is a validated SLA configuration: what Status and Escalations
// evaluate tickets against.
type Policy struct {
	atRisk          float64
	fallback        string
	escalationQueue string
	classes         map[string]*Class
}

var queueName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// New validates cfg and fills its defaults. Every problem is reported, each
// naming its field under "sla.".
func New(cfg Config) (*Policy, error) {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, "sla."+field+": "+fmt.Sprintf(format, args...))
	}
	p := &Policy{
		atRisk:          cfg.AtRisk,
		fallback:        strings.TrimSpace(cfg.FallbackClass),
		escalationQueue: strings.TrimSpace(cfg.EscalationQueue),
		classes:         map[string]*Class{},
	}
	if p.atRisk == 0 {
		p.atRisk = AtRiskDefault
	}
	if p.fallback == "" {
		p.fallback = FallbackClassDefault
	}
	if p.escalationQueue == "" {
		p.escalationQueue = EscalationQueueDefault
	}
	if !(p.atRisk > 0 && p.atRisk < 1) {
		bad("at_risk", "%g: want a share of the target between 0 and 1, e.g. 0.8", cfg.AtRisk)
	}
	if !slices.Contains(catalog.SLAClasses, p.fallback) {
		bad("fallback_class", "%q: want one of %s", p.fallback, strings.Join(catalog.SLAClasses, ", "))
	}
	if !queueName.MatchString(p.escalationQueue) {
		bad("escalation_queue", "%q: want a queue name of lower-case letters, digits and _", p.escalationQueue)
	}
	names := make([]string, 0, len(cfg.Classes))
	for name := range cfg.Classes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !slices.Contains(catalog.SLAClasses, name) {
			bad("classes."+name, "unknown SLA class; want one of %s", strings.Join(catalog.SLAClasses, ", "))
			continue
		}
		cc := cfg.Classes[name]
		field := "classes." + name
		class := &Class{Name: name, targets: map[string]Targets{}}
		if cc.BusinessHours != nil {
			cal, calErrs := newCalendar("sla."+field+".business_hours", *cc.BusinessHours)
			errs = append(errs, calErrs...)
			class.Calendar = cal
		}
		for sev := range cc.Targets {
			if !slices.Contains(Severities, sev) {
				bad(field+".targets."+sev, "unknown severity; want one of %s", strings.Join(Severities, ", "))
			}
		}
		for _, sev := range Severities {
			tc, ok := cc.Targets[sev]
			if !ok {
				bad(field+".targets."+sev, "missing; every class needs targets for %s", strings.Join(Severities, ", "))
				continue
			}
			tf := field + ".targets." + sev
			fr, errFR := parseTarget(tc.FirstResponse)
			if errFR != nil {
				bad(tf+".first_response", "%v", errFR)
			}
			res, errRes := parseTarget(tc.Resolution)
			if errRes != nil {
				bad(tf+".resolution", "%v", errRes)
			}
			if errFR == nil && errRes == nil && res < fr {
				bad(tf+".resolution", "%s is shorter than first_response %s", tc.Resolution, tc.FirstResponse)
			}
			class.targets[sev] = Targets{FirstResponse: fr, Resolution: res}
		}
		p.classes[name] = class
	}
	for _, name := range catalog.SLAClasses {
		if _, ok := cfg.Classes[name]; !ok {
			bad("classes."+name, "missing; every SLA class of the catalog needs targets")
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return p, nil
}

func parseTarget(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing; want a duration such as 30m or 4h")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 30m, 4h or 1h30m (hours of business time; there is no day unit)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration", s)
	}
	return d, nil
}

// Class returns the named class, or the fallback class when name is empty
// or unknown (a ticket is never left without targets).
func (p *Policy) Class(name string) *Class {
	if c, ok := p.classes[strings.ToLower(strings.TrimSpace(name))]; ok {
		return c
	}
	return p.classes[p.fallback]
}

// AtRisk is the share of a target at which a clock becomes at risk.
func (p *Policy) AtRisk() float64 { return p.atRisk }

// EscalationQueue is the queue a breached ticket moves to.
func (p *Policy) EscalationQueue() string { return p.escalationQueue }
