package sla

import (
	"slices"
	"strings"
)

// The ticket severities, from lowest to highest.
const (
	SeverityLow      = "low"
	SeverityNormal   = "normal"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Severities lists the severities from lowest to highest. The order is the
// escalation order: Bump moves one step along it.
var Severities = []string{SeverityLow, SeverityNormal, SeverityHigh, SeverityCritical}

// SeverityDefault is the severity assumed for a ticket whose severity is
// empty or unknown, so that an odd value never leaves a ticket without a
// target.
const SeverityDefault = SeverityNormal

// NormalizeSeverity returns s in canonical form (trimmed, lower case) and
// whether it is a known severity.
func NormalizeSeverity(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	return s, slices.Contains(Severities, s)
}

// Rank is s's position in Severities (0 for low, 3 for critical), or -1
// when s is not a severity.
func Rank(s string) int {
	s, _ = NormalizeSeverity(s)
	return slices.Index(Severities, s)
}

// Bump is the severity one step above s, capped at critical. An unknown
// severity counts as SeverityDefault, so its bump is high.
func Bump(s string) string {
	r := Rank(s)
	if r < 0 {
		r = Rank(SeverityDefault)
	}
	return Severities[min(r+1, len(Severities)-1)]
}
