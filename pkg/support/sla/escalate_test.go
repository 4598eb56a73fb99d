package sla_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/sla"
)

func keys(es []sla.Escalation) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out
}

func TestEscalations(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	// Business class, normal: first response 4h, resolution 30h, Mon–Fri
	// 08:00–18:00 London time. Opened Monday 08:00.
	ticket := sla.Ticket{SLAClass: "business", Severity: "normal", Opened: ldn(23, 8, 0)}

	require.Empty(t, p.Escalations(ldn(23, 10, 0), ticket, nil), "half the first-response target used")

	warn := p.Escalations(ldn(23, 11, 12), ticket, nil)
	require.Equal(t, []sla.Escalation{{Key: "first_response.at_risk", Clock: sla.ClockFirstResponse, State: sla.StateAtRisk,
		Severity: "normal", Due: ldn(23, 12, 0)}}, warn, "80% used: a warning, no severity change, no queue change")
	recorded := keys(warn)
	require.Empty(t, p.Escalations(ldn(23, 11, 12), ticket, recorded), "the same tick again")
	require.Empty(t, p.Escalations(ldn(23, 12, 0), ticket, recorded), "due, not yet breached")

	breach := p.Escalations(ldn(23, 12, 0).Add(time.Nanosecond), ticket, recorded)
	require.Equal(t, []sla.Escalation{{Key: "first_response.breached", Clock: sla.ClockFirstResponse, State: sla.StateBreached,
		Severity: "high", Queue: "escalations", Due: ldn(23, 12, 0)}}, breach)
	recorded = append(recorded, keys(breach)...)
	ticket.Severity = breach[0].Severity
	for _, now := range []time.Time{ldn(23, 12, 5), ldn(23, 17, 0), ldn(24, 9, 0)} {
		require.Empty(t, p.Escalations(now, ticket, recorded), "the first-response breach escalates once (at %s)", now)
	}

	// High: resolution 16h, so at risk after 12h48m (Tuesday 10:48) and
	// breached after Tuesday 14:00.
	resWarn := p.Escalations(ldn(24, 11, 0), ticket, recorded)
	require.Equal(t, []string{"resolution.at_risk"}, keys(resWarn))
	recorded = append(recorded, keys(resWarn)...)
	resBreach := p.Escalations(ldn(24, 14, 1), ticket, recorded)
	require.Equal(t, []string{"resolution.breached"}, keys(resBreach))
	require.Equal(t, "critical", resBreach[0].Severity, "high → critical")
	recorded = append(recorded, keys(resBreach)...)
	ticket.Severity = resBreach[0].Severity
	require.Empty(t, p.Escalations(ldn(26, 9, 0), ticket, recorded), "both breaches escalated; nothing left")

	// Answering and resolving stop everything, however late.
	ticket.FirstResponse, ticket.Resolved = ldn(26, 10, 0), ldn(26, 11, 0)
	require.Empty(t, p.Escalations(ldn(27, 9, 0), ticket, nil), "stopped clocks never escalate")
}

func TestEscalationsAfterMissedChecks(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	ticket := sla.Ticket{SLAClass: "business", Severity: "normal", Opened: ldn(23, 8, 0)}

	// The check did not run for two days: both clocks breached at once.
	both := p.Escalations(ldn(26, 12, 0), ticket, nil)
	require.Equal(t, []string{"first_response.breached", "resolution.breached"}, keys(both), "breaches only, no stale warnings")
	for _, e := range both {
		require.Equal(t, "high", e.Severity, "one step up, even for two breaches at once")
		require.Equal(t, "escalations", e.Queue)
	}
	require.Empty(t, p.Escalations(ldn(26, 12, 0), ticket, keys(both)))

	// A breach already recorded suppresses a later at-risk warning of
	// the same clock (e.g. after an agent lowers the severity again).
	lowered := ticket
	lowered.Severity = "low" // first response 8h
	require.Empty(t, p.Escalations(ldn(23, 15, 0), lowered, []string{"first_response.breached"}))
}

func TestEscalationsWhilePending(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	opened := ldn(23, 8, 0)
	// Business, critical: resolution 8h, at risk after 6h24m.
	pending := sla.Ticket{SLAClass: "business", Severity: "critical", Opened: opened, FirstResponse: ldn(23, 8, 30),
		Pauses: []sla.Pause{{From: ldn(23, 15, 0)}}}
	require.Equal(t, sla.StateAtRisk, p.Status(ldn(24, 12, 0), pending).Resolution.State)
	require.Empty(t, p.Escalations(ldn(24, 12, 0), pending, nil), "no warning while waiting on the customer")

	late := pending
	late.Pauses = []sla.Pause{{From: ldn(23, 16, 30)}}
	got := p.Escalations(ldn(24, 12, 0), late, nil)
	require.Equal(t, []string{"resolution.breached"}, keys(got), "breached before the customer was asked: still escalates")
	require.Equal(t, "critical", got[0].Severity, "critical is the cap")
}

// TestCheckLoopNeverEscalatesTwice runs the breach check the way the
// support worker will, every five minutes with duplicate deliveries, over
// a business week, applying each escalation as it comes.
func TestCheckLoopNeverEscalatesTwice(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	for _, class := range []string{"standard", "business", "priority", "enterprise"} {
		for _, severity := range sla.Severities {
			ticket := sla.Ticket{SLAClass: class, Severity: severity, Opened: ldn(23, 7, 55)}
			var recorded []string
			var log []sla.Escalation
			for now := ticket.Opened; now.Before(ldn(30, 18, 0)); now = now.Add(5 * time.Minute) {
				for range 2 { // every tick delivered twice
					for _, e := range p.Escalations(now, ticket, recorded) {
						require.NotContains(t, recorded, e.Key, "%s/%s: %s escalated twice", class, severity, e.Key)
						recorded = append(recorded, e.Key)
						log = append(log, e)
						ticket.Severity = e.Severity
					}
				}
			}
			require.Contains(t, recorded, "first_response.breached", "%s/%s: nobody answered for a week", class, severity)
			require.Contains(t, recorded, "resolution.breached", "%s/%s", class, severity)
			require.LessOrEqual(t, len(log), 4, "%s/%s: at most a warning and a breach per clock: %v", class, severity, recorded)
			for i, e := range log {
				if e.State == sla.StateBreached {
					require.Equal(t, "escalations", e.Queue)
				}
				if i > 0 {
					require.GreaterOrEqual(t, sla.Rank(e.Severity), sla.Rank(log[i-1].Severity), "severity never goes down")
				}
			}
			for _, clock := range []string{sla.ClockFirstResponse, sla.ClockResolution} {
				warned := slices.Index(recorded, clock+".at_risk")
				breached := slices.Index(recorded, clock+".breached")
				require.True(t, warned < breached, "%s/%s: a warning, if any, comes before the breach: %v", class, severity, recorded)
			}
		}
	}
}
