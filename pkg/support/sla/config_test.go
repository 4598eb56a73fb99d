package sla_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/sla"
)

func validConfig() sla.Config {
	targets := map[string]sla.TargetConfig{}
	for _, s := range sla.Severities {
		targets[s] = sla.TargetConfig{FirstResponse: "1h", Resolution: "8h"}
	}
	return sla.Config{Classes: map[string]sla.ClassConfig{
		"standard":   {Targets: targets, BusinessHours: &sla.HoursConfig{TimeZone: "Europe/London", Days: weekdaysOnly, Open: "09:00", Close: "17:00"}},
		"business":   {Targets: targets},
		"priority":   {Targets: targets},
		"enterprise": {Targets: targets},
	}}
}

func TestNewFillsDefaults(t *testing.T) {
	t.Parallel()
	p, err := sla.New(validConfig())
	require.NoError(t, err)
	require.InDelta(t, sla.AtRiskDefault, p.AtRisk(), 1e-9)
	require.Equal(t, sla.EscalationQueueDefault, p.EscalationQueue())
	require.Equal(t, sla.FallbackClassDefault, p.Class("unknown").Name)
	require.NotNil(t, p.Class("standard").Calendar)
	require.Nil(t, p.Class("business").Calendar)
}

func TestNewNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*sla.Config)
		want   string
	}{
		{"AtRiskTooHigh", func(c *sla.Config) { c.AtRisk = 1.5 }, "sla.at_risk: 1.5: want a share of the target between 0 and 1"},
		{"UnknownFallback", func(c *sla.Config) { c.FallbackClass = "gold" }, `sla.fallback_class: "gold": want one of standard, business, priority, enterprise`},
		{"BadQueue", func(c *sla.Config) { c.EscalationQueue = "Esc!" }, `sla.escalation_queue: "Esc!"`},
		{"MissingClass", func(c *sla.Config) { delete(c.Classes, "priority") }, "sla.classes.priority: missing"},
		{"UnknownClass", func(c *sla.Config) { c.Classes["gold"] = c.Classes["business"] }, "sla.classes.gold: unknown SLA class"},
		{"MissingSeverity", func(c *sla.Config) {
			c.Classes["business"] = sla.ClassConfig{Targets: map[string]sla.TargetConfig{"critical": {FirstResponse: "1h", Resolution: "2h"}}}
		}, "sla.classes.business.targets.high: missing"},
		{"UnknownSeverity", func(c *sla.Config) {
			cc := c.Classes["enterprise"]
			cc.Targets = map[string]sla.TargetConfig{"urgent": {FirstResponse: "1h", Resolution: "2h"}}
			for _, s := range sla.Severities {
				cc.Targets[s] = sla.TargetConfig{FirstResponse: "1h", Resolution: "2h"}
			}
			c.Classes["enterprise"] = cc
		}, "sla.classes.enterprise.targets.urgent: unknown severity"},
		{"DayUnit", func(c *sla.Config) {
			setTarget(c, "standard", "low", sla.TargetConfig{FirstResponse: "2d", Resolution: "80h"})
		},
			`sla.classes.standard.targets.low.first_response: "2d": want a duration such as 30m, 4h or 1h30m`},
		{"NegativeTarget", func(c *sla.Config) {
			setTarget(c, "standard", "low", sla.TargetConfig{FirstResponse: "-1h", Resolution: "80h"})
		},
			`sla.classes.standard.targets.low.first_response: "-1h": want a positive duration`},
		{"MissingResolution", func(c *sla.Config) { setTarget(c, "standard", "low", sla.TargetConfig{FirstResponse: "1h"}) },
			"sla.classes.standard.targets.low.resolution: missing"},
		{"ResolutionBeforeResponse", func(c *sla.Config) {
			setTarget(c, "priority", "high", sla.TargetConfig{FirstResponse: "4h", Resolution: "2h"})
		},
			"sla.classes.priority.targets.high.resolution: 2h is shorter than first_response 4h"},
		{"BadHours", func(c *sla.Config) { c.Classes["standard"].BusinessHours.Open = "nine" },
			`sla.classes.standard.business_hours.open: "nine"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tc.change(&c)
			_, err := sla.New(c)
			require.ErrorIs(t, err, sla.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func setTarget(c *sla.Config, class, severity string, tc sla.TargetConfig) {
	cc := c.Classes[class]
	targets := map[string]sla.TargetConfig{}
	for k, v := range cc.Targets {
		targets[k] = v
	}
	targets[severity] = tc
	cc.Targets = targets
	c.Classes[class] = cc
}

func TestSeverities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ from, want string }{
		{"low", "normal"}, {"normal", "high"}, {"high", "critical"}, {"critical", "critical"},
		{" HIGH ", "critical"}, {"", "high"}, {"urgent", "high"},
	} {
		require.Equal(t, tc.want, sla.Bump(tc.from), "bump %q", tc.from)
	}
	require.Equal(t, 0, sla.Rank("low"))
	require.Equal(t, 3, sla.Rank("Critical"))
	require.Equal(t, -1, sla.Rank("urgent"))
	s, ok := sla.NormalizeSeverity(" Normal ")
	require.True(t, ok)
	require.Equal(t, "normal", s)
}
