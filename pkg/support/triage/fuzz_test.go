package triage_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/sla"
	"github.com/levqor/levqor/pkg/support/triage"
)

// FuzzClassify: ticket text comes from the internet. Whatever it is, the
// classifier answers with a known category and severity, a queue, and the
// rules that decided, and it respects a customer's valid severity.
func FuzzClassify(f *testing.F) {
	for _, seed := range [][5]string{
		{"We lost data", "", "", "", "enterprise"},
		{"Restore my files urgently", "not urgent", "billing", "low", "business"},
		{"", "", "", "", ""},
		{"\x00", "\x00lost\x00data", "data_loss", "critical", "starter"},
		{"can’t restore", "RESTORE* FAIL*", "BILLING", " HIGH ", "premium"},
		{"💾 backups failing", "ransomware ransomware ransomware", "other", "normal", "growth"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4], seed[4] == "enterprise")
	}
	r, err := triage.Load("")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, subject, body, category, severity, tier string, dfy bool) {
		in := triage.Input{Subject: subject, Body: body, Category: category, Severity: severity, Tier: tier, DFY: dfy}
		d := r.Classify(in)
		require.Contains(t, r.Categories(), d.Category)
		require.Contains(t, sla.Severities, d.Severity)
		require.NotEmpty(t, d.Queue)
		require.NotEmpty(t, d.FiredRules)
		last := d.FiredRules[len(d.FiredRules)-1]
		require.True(t, last == triage.FiredDefaultQueue || strings.HasPrefix(last, "route."), "decided by a route: %q", last)
		if s, ok := sla.NormalizeSeverity(severity); ok {
			require.GreaterOrEqual(t, sla.Rank(d.Severity), sla.Rank(s), "never below the customer's choice")
		}
		require.Equal(t, d, r.Classify(in), "deterministic")
		require.False(t, slices.Contains(d.FiredRules, ""))
	})
}

func BenchmarkClassify(b *testing.B) {
	r, err := triage.Load("")
	require.NoError(b, err)
	body := ""
	for range 40 {
		body += "Since the upgrade last Tuesday the nightly job for our file server reports an error and the " +
			"dashboard shows the last successful snapshot from the weekend. We need this fixed before month end. "
	}
	in := triage.Input{Subject: "Backups not running after upgrade", Body: body, Tier: "business", SLAClass: "business"}
	b.ReportAllocs()
	for b.Loop() {
		r.Classify(in)
	}
}
