package triage

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/levqor/levqor/pkg/strictyaml"
	"github.com/levqor/levqor/pkg/support/sla"
)

// EnvVar names the environment variable that points at the operators' own
// rules file. When it is unset, DefaultFile is used.
const EnvVar = "LEVQOR_SUPPORT_RULES"

// DefaultFile is the rules file shipped with Levqor, used when EnvVar is
// not set. It is also the starting point for an operator's own file.
//
//go:embed rules.default.yaml
var DefaultFile []byte

// ErrInvalid wraps every problem with a rules file.
var ErrInvalid = errors.New("invalid support rules")

// File is the support rules file: triage rules, routing rules and SLA
// targets, in YAML or JSON. Unknown keys are errors, so a misspelt key is
// caught at start-up rather than silently ignored.
type File struct {
	// Triage chooses category and severity.
	Triage TriageConfig `json:"triage"`
	// Routing chooses the queue.
	Routing RoutingConfig `json:"routing"`
	// SLA sets the targets and business hours of each SLA class.
	SLA sla.Config `json:"sla"`
}

// TriageConfig is the triage section: the categories and the rules that
// choose a ticket's category and severity.
type TriageConfig struct {
	// Categories a ticket can have. Their order breaks ties between
	// categories that score the same: earlier wins.
	Categories []string `json:"categories"`
	// DefaultCategory is the category when neither the customer nor any
	// rule chose one; it must be one of Categories.
	DefaultCategory string `json:"default_category"`
	// DefaultSeverity is the severity when neither the customer nor any
	// rule chose one.
	DefaultSeverity string `json:"default_severity"`
	// Rules are matched against every ticket's subject and body.
	Rules []RuleConfig `json:"rules"`
}

// RuleConfig is one triage rule. It fires when the ticket contains every
// phrase of All and at least one phrase of Any (either may be empty, not
// both), where a phrase occurrence overlapping an occurrence of one of
// Unless does not count ("not urgent" cancels "urgent"). A fired rule
// adds Weight to its Category's score and proposes its Severity.
type RuleConfig struct {
	// ID names the rule in every decision it takes part in, e.g.
	// "data_loss.lost"; unique in the file.
	ID string `json:"id"`
	// Any: the rule fires if one of these phrases occurs …
	Any []string `json:"any,omitempty"`
	// All: … and every one of these occurs.
	All []string `json:"all,omitempty"`
	// Unless: occurrences overlapping one of these phrases don't count.
	Unless []string `json:"unless,omitempty"`
	// Category the rule votes for, with Weight (default 1).
	Category string `json:"category,omitempty"`
	Weight   int    `json:"weight,omitempty"`
	// Severity the rule proposes; the highest proposed wins.
	Severity string `json:"severity,omitempty"`
	// OverrideCustomer lets the rule change a category or raise a
	// severity that the customer chose (meant for data loss: a customer
	// who files lost data as "billing, low" still gets a critical data
	// loss ticket). Other rules never change the customer's choice.
	OverrideCustomer bool `json:"override_customer,omitempty"`
}

// RoutingConfig is the routing section: the first rule that matches a
// ticket chooses its queue; no match means DefaultQueue.
type RoutingConfig struct {
	// DefaultQueue receives every ticket no rule routes, unknown tiers
	// included, so no ticket is ever dropped.
	DefaultQueue string `json:"default_queue"`
	// Rules are tried in order.
	Rules []RouteConfig `json:"rules"`
}

// RouteConfig is one routing rule. Every condition given must hold; a
// list matches any of its values; an empty condition matches anything.
type RouteConfig struct {
	// ID names the rule in decisions; unique in the file.
	ID string `json:"id"`
	// Tiers are catalog tiers (starter, growth, business, enterprise).
	Tiers []string `json:"tiers,omitempty"`
	// SLAClasses are catalog SLA classes (standard, business, priority,
	// enterprise).
	SLAClasses []string `json:"sla_classes,omitempty"`
	// Severities and Categories are the ticket's (after triage).
	Severities []string `json:"severities,omitempty"`
	Categories []string `json:"categories,omitempty"`
	// DFY, when set, matches accounts that have (true) or have not
	// (false) bought a Done-For-You package.
	DFY *bool `json:"dfy,omitempty"`
	// Queue the ticket goes to.
	Queue string `json:"queue"`
}

// Load reads a rules file (YAML or JSON); path "" loads DefaultFile.
// Errors name the file and the field at fault.
func Load(path string) (*Rules, error) {
	if path == "" {
		r, err := Parse(DefaultFile)
		if err != nil {
			return nil, fmt.Errorf("default support rules: %w", err)
		}
		return r, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvVar, err)
	}
	r, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", EnvVar, path, err)
	}
	return r, nil
}

// Parse reads a rules file from YAML or JSON (JSON is YAML) and validates
// it.
func Parse(data []byte) (*Rules, error) {
	js, generic, err := strictyaml.ToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		if field, msg, ok := locate(generic, reflect.TypeFor[File](), ""); ok {
			return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, field, msg)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return New(f)
}

// locate finds the first place (in sorted key order) where the decoded
// document v does not fit type t: an unknown key or a value of the wrong
// kind. encoding/json reports these without the path, so the operator
// would not know which of forty rules has the typo.
func locate(v any, t reflect.Type, path string) (field, msg string, ok bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return "", "", false
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch t.Kind() {
	case reflect.Struct:
		m, isMap := v.(map[string]any)
		if !isMap {
			return path, "want a mapping of keys", true
		}
		fields := map[string]reflect.Type{}
		var known []string
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			fields[name] = t.Field(i).Type
			known = append(known, name)
		}
		for _, k := range sortedKeys(m) {
			ft, found := fields[k]
			if !found {
				return join(k), "unknown key (want one of " + strings.Join(known, ", ") + ")", true
			}
			if f, s, bad := locate(m[k], ft, join(k)); bad {
				return f, s, true
			}
		}
	case reflect.Map:
		m, isMap := v.(map[string]any)
		if !isMap {
			return path, "want a mapping of keys", true
		}
		for _, k := range sortedKeys(m) {
			if f, s, bad := locate(m[k], t.Elem(), join(k)); bad {
				return f, s, true
			}
		}
	case reflect.Slice:
		list, isList := v.([]any)
		if !isList {
			return path, "want a list", true
		}
		for i, x := range list {
			if f, s, bad := locate(x, t.Elem(), path+"["+strconv.Itoa(i)+"]"); bad {
				return f, s, true
			}
		}
	case reflect.String:
		if _, isString := v.(string); !isString {
			return path, fmt.Sprintf("%v: want text (quote it)", v), true
		}
	case reflect.Bool:
		if _, isBool := v.(bool); !isBool {
			return path, fmt.Sprintf("%v: want true or false", v), true
		}
	case reflect.Int:
		if _, isInt := v.(int); !isInt {
			return path, fmt.Sprintf("%v: want a whole number", v), true
		}
	case reflect.Float64:
		switch v.(type) {
		case int, float64:
		default:
			return path, fmt.Sprintf("%v: want a number", v), true
		}
	}
	return "", "", false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
