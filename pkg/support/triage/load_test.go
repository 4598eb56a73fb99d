package triage_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/levqor/levqor/pkg/support/triage"
)

// customRules is an operator's own file: a compliance category of their
// own, routed to their own queue, and a 24×7 SLA everywhere.
const customRules = `
triage:
  categories: [compliance, other]
  default_category: other
  default_severity: low
  rules:
    - id: compliance.audit
      category: compliance
      weight: 2
      severity: high
      any: [audit*, soc 2, iso 27001, "evidence request"]
routing:
  default_queue: frontdesk
  rules:
    - id: route.compliance
      categories: [compliance]
      queue: compliance_team
sla:
  at_risk: 0.5
  escalation_queue: managers
  classes:
    standard: &targets
      targets:
        critical: {first_response: 1h, resolution: 4h}
        high: {first_response: 2h, resolution: 8h}
        normal: {first_response: 4h, resolution: 16h}
        low: {first_response: 8h, resolution: 32h}
    business: *targets
    priority: *targets
    enterprise: *targets
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestLoadOperatorsOwnRules(t *testing.T) {
	t.Parallel()
	var generic any
	require.NoError(t, yaml.Unmarshal([]byte(customRules), &generic))
	asJSON, err := json.Marshal(generic)
	require.NoError(t, err)

	for name, path := range map[string]string{
		"YAML": writeFile(t, "rules.yaml", customRules),
		"JSON": writeFile(t, "rules.json", string(asJSON)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := triage.Load(path)
			require.NoError(t, err)
			d := r.Classify(triage.Input{Subject: "SOC 2 evidence request", Body: "Our auditors need the backup logs.", Tier: "growth"})
			require.Equal(t, triage.Decision{Category: "compliance", Severity: "high", Queue: "compliance_team",
				FiredRules: []string{"compliance.audit", "route.compliance"}}, d)
			d = r.Classify(triage.Input{Subject: "We lost data", Tier: "enterprise"})
			require.Equal(t, triage.Decision{Category: "other", Severity: "low", Queue: "frontdesk",
				FiredRules: []string{"default.category", "default.severity", "default.queue"}}, d, "the shipped rules are gone")
			require.InDelta(t, 0.5, r.SLA().AtRisk(), 1e-9)
			require.Equal(t, "managers", r.SLA().EscalationQueue())
			require.Nil(t, r.SLA().Class("standard").Calendar, "no business hours: 24×7")
		})
	}
}

func TestLoadErrorsNameTheFileAndField(t *testing.T) {
	t.Parallel()
	def := string(triage.DefaultFile)
	for _, tc := range []struct {
		name     string
		old, new string // edit of the default file; old "" replaces the whole file with new
		want     string
	}{
		{"MisspeltKey", "      severity: critical\n      override_customer: true\n", "      sevrity: critical\n      override_customer: true\n",
			"triage.rules[0].sevrity: unknown key (want one of id, any, all, unless, category, weight, severity, override_customer)"},
		{"UnknownSection", "\nrouting:\n", "\nroutes:\n", "routes: unknown key"},
		{"WeightNotANumber", "weight: 6", "weight: six", "triage.rules[0].weight: six: want a whole number"},
		{"PhrasesNotAList", "    - id: data_loss.ransomware\n", "    - id: data_loss.ransomware\n      unless: ransom note\n", "triage.rules[1].unless: want a list"},
		{"UnknownTier", "tiers: [enterprise]", "tiers: [enterprize]", `routing.rules[0].tiers[0]: "enterprize": want one of starter, growth, business, enterprise`},
		{"UnknownSLAClassInRoute", "sla_classes: [priority, enterprise]", "sla_classes: [priority, gold]", `routing.rules[1].sla_classes[1]: "gold": want one of standard, business, priority, enterprise`},
		{"UnknownCategoryInRoute", "categories: [data_loss]", "categories: [dataloss]", `routing.rules[2].categories[0]: "dataloss": want one of data_loss, restore_request, backup_failure, billing, account, other`},
		{"DuplicateID", "- id: data_loss.ransomware", "- id: data_loss.lost", `triage.rules[1].id: "data_loss.lost" is already the id of triage.rules[0]`},
		{"ReservedID", "- id: data_loss.ransomware", "- id: default.ransomware", `triage.rules[1].id: "default.ransomware": customer. and default. are reserved`},
		{"BadSeverity", "      severity: critical\n      override_customer: true\n", "      severity: urgent\n      override_customer: true\n",
			`triage.rules[0].severity: "urgent": want one of low, normal, high, critical`},
		{"StarInsideAWord", "        - restor*\n", "        - re*tore\n", `triage.rules[4].any[0]: "re*tore": * may only end a word`},
		{"EmptyPhrase", "        - restor*\n", "        - \"?!\"\n", "triage.rules[4].any[0]: empty phrase"},
		{"RuleWithoutCategoryOrSeverity", "      category: restore_request\n      weight: 3\n", "", "rule restore_request.ask decides nothing"},
		{"WeightWithoutCategory", "    - id: urgency.low\n", "    - id: urgency.low\n      weight: 2\n", "triage.rules[17].weight: a weight counts toward a category"},
		{"UnlistedCategory", "category: billing\n", "category: invoices\n", `.category: "invoices": want one of triage.categories (data_loss, restore_request, backup_failure, billing, account, other)`},
		{"DefaultCategoryNotListed", "default_category: other", "default_category: misc", `triage.default_category: "misc"`},
		{"DurationInDays", "low: {first_response: 24h, resolution: 80h}", "low: {first_response: 3d, resolution: 80h}",
			`sla.classes.standard.targets.low.first_response: "3d": want a duration such as 30m, 4h or 1h30m`},
		{"TimeZoneTypo", "time_zone: Europe/London\n        days: [mon, tue, wed, thu, fri]\n        open: \"08:00\"", "time_zone: Europe/Londres\n        days: [mon, tue, wed, thu, fri]\n        open: \"08:00\"",
			`sla.classes.business.business_hours.time_zone: "Europe/Londres" is not a known time zone`},
		{"BadQueue", "default_queue: general", "default_queue: General Queue", `routing.default_queue: "General Queue"`},
		{"NotYAML", "", "triage: [\n", "yaml:"},
		{"EmptyFile", "", "", "triage.categories: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			content := tc.new
			if tc.old != "" {
				require.Contains(t, def, tc.old, "the edit applies to the default file")
				content = strings.Replace(def, tc.old, tc.new, 1)
			}
			path := writeFile(t, "support-rules.yaml", content)
			_, err := triage.Load(path)
			require.ErrorIs(t, err, triage.ErrInvalid)
			require.ErrorContains(t, err, "LEVQOR_SUPPORT_RULES "+path+": ")
			require.ErrorContains(t, err, tc.want)

			_, err = triage.Parse([]byte(content))
			require.ErrorContains(t, err, tc.want, "Parse reports the same")
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := triage.Load(path)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "LEVQOR_SUPPORT_RULES")
	require.ErrorContains(t, err, path)
}

func TestDefaultFileIsTheDefault(t *testing.T) {
	t.Parallel()
	fromEmbedded, err := triage.Load("")
	require.NoError(t, err)
	fromDisk, err := triage.Load(writeFile(t, "rules.yaml", string(triage.DefaultFile)))
	require.NoError(t, err)
	in := triage.Input{Subject: "Restore my files urgently", Tier: "business", SLAClass: "business"}
	require.Equal(t, fromEmbedded.Classify(in), fromDisk.Classify(in))
	require.Equal(t, "LEVQOR_SUPPORT_RULES", triage.EnvVar)
}
