package notify

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/strictyaml"
)

// RecipientCustomer names, in a rule, the contact email of the account an
// event concerns.
const RecipientCustomer = "customer"

//go:embed rules.default.yaml
var defaultRules []byte

// DefaultRules returns the shipped rules file, for operators to copy.
func DefaultRules() []byte { return append([]byte(nil), defaultRules...) }

// Recipient is a named group of Levqor's staff and where to reach them:
// email addresses, and chat channels' incoming webhooks (Slack's, or a
// Slack-compatible one such as Mattermost's). In the file, a plain list is
// short for email addresses only.
type Recipient struct {
	Email []string `json:"email,omitempty"`
	Chat  []string `json:"chat,omitempty"`
}

// UnmarshalJSON reads a list of addresses or an {email, chat} object,
// refusing unknown keys.
func (r *Recipient) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		return json.Unmarshal(t, &r.Email)
	}
	type plain Recipient
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(r))
}

// Rules say who hears about which event. Build them with Load or Parse,
// which validate every entry.
type Rules struct {
	// Recipients maps a name to the people it stands for.
	Recipients map[string]Recipient `json:"recipients"`
	// Rules maps an event name to the recipients' names.
	Rules map[string][]string `json:"rules"`
}

// Load reads the rules file at path (LEVQOR_NOTIFY_RULES), or the shipped
// defaults when path is empty. Errors name the variable, the file and
// every entry at fault.
func Load(path string) (*Rules, error) {
	if path == "" {
		r, err := Parse(defaultRules)
		if err != nil {
			return nil, fmt.Errorf("LEVQOR_NOTIFY_RULES: the shipped rules: %w", err)
		}
		return r, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_NOTIFY_RULES: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_NOTIFY_RULES %s: %w", filepath.Base(path), err)
	}
	return r, nil
}

// Parse reads and validates a rules file (YAML or JSON): every event must
// be one Levqor publishes and have a template, every recipient must be
// "customer" or a named list, and every address must be an email address.
func Parse(data []byte) (*Rules, error) {
	var r Rules
	if err := strictyaml.Decode(data, &r); err != nil {
		return nil, fmt.Errorf("invalid notify rules: %w", err)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("invalid notify rules: %w", err)
	}
	return &r, nil
}

func (r *Rules) validate() error {
	var errs []string
	known := map[string]bool{}
	for _, n := range events.Names() {
		known[string(n)] = true
	}
	for _, name := range sortedKeys(r.Recipients) {
		if name == RecipientCustomer {
			errs = append(errs, fmt.Sprintf("recipients.%s: %q is reserved for the account's contact email", name, name))
			continue
		}
		rc := r.Recipients[name]
		if len(rc.Email)+len(rc.Chat) == 0 {
			errs = append(errs, fmt.Sprintf("recipients.%s: no addresses", name))
		}
		for i, addr := range rc.Email {
			if _, err := mail.ParseAddress(addr); err != nil || strings.ContainsAny(addr, "<>") {
				errs = append(errs, fmt.Sprintf("recipients.%s.email[%d]: %q is not an email address", name, i, addr))
			}
		}
		for i, hook := range rc.Chat {
			if u, err := url.Parse(hook); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
				errs = append(errs, fmt.Sprintf("recipients.%s.chat[%d]: not an http(s) incoming-webhook URL", name, i))
			}
		}
	}
	if len(r.Rules) == 0 {
		errs = append(errs, "rules: none: nobody would be told anything")
	}
	for _, ev := range sortedKeys(r.Rules) {
		switch {
		case !known[ev]:
			errs = append(errs, fmt.Sprintf("rules.%s: no such event (events: %s)", ev, strings.Join(eventNames(), ", ")))
			continue
		case !hasTemplate(ev):
			errs = append(errs, fmt.Sprintf("rules.%s: Levqor has no message for this event (it has: %s)", ev, strings.Join(templateEvents(), ", ")))
		}
		if len(r.Rules[ev]) == 0 {
			errs = append(errs, fmt.Sprintf("rules.%s: no recipients", ev))
		}
		for _, to := range r.Rules[ev] {
			if _, ok := r.Recipients[to]; !ok && to != RecipientCustomer {
				errs = append(errs, fmt.Sprintf("rules.%s: unknown recipient %q (recipients: %s)", ev, to, strings.Join(r.recipientNames(), ", ")))
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// For returns the recipients' names for event, in the file's order.
func (r *Rules) For(event string) []string { return r.Rules[event] }

func (r *Rules) recipientNames() []string {
	return append([]string{RecipientCustomer}, sortedKeys(r.Recipients)...)
}

func eventNames() []string {
	var out []string
	for _, n := range events.Names() {
		out = append(out, string(n))
	}
	slices.Sort(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
