package support

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support/sla"
	"github.com/levqor/levqor/pkg/support/triage"
)

// WorkerName is the worker's name in LEVQOR_WORKERS.
const WorkerName = "support"

// Domain is the command domain the worker handles:
// levqor.cmd.support.<action>.
const Domain = "support"

// The worker's durable consumers.
const (
	ConsumerCommands = "support-cmd"
	ConsumerTicks    = "support-tick"
	ConsumerEvents   = "support-event"
)

// Actions of the support domain.
const (
	ActionCreateTicket = "create_ticket"
	ActionAddMessage   = "add_message"
	ActionSetStatus    = "set_status"
)

// TicketIDPrefix starts every ticket id.
const TicketIDPrefix = "tkt_"

// JobAutoClose closes long-resolved tickets, as the scheduler's catalog
// names it.
const JobAutoClose = scheduler.JobSupportAutoClose

// AutoCloseAfterDefault is LEVQOR_SUPPORT_AUTOCLOSE_AFTER: how long a
// resolved ticket waits for a reply before support.autoclose closes it.
const AutoCloseAfterDefault = 7 * 24 * time.Hour

// JobSLACheck is the periodic breach watch, as the scheduler's catalog
// names it.
const JobSLACheck = scheduler.JobSupportSLACheck

// CommandConsumer declares support-cmd: every support command.
func CommandConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerCommands, Kind: bus.Commands, Filter: Domain + ".>"}
}

// TickConsumer declares support-tick: the support jobs' ticks.
func TickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerTicks, Kind: bus.Ticks, Filter: Domain + ".>"}
}

// EventConsumer declares support-event: every event, with one filter
// subject; the worker acts on the incidents it opens tickets for and
// acknowledges the rest.
func EventConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerEvents, Kind: bus.Events, Filter: ">"}
}

// The worker's handlers have the shapes their runtimes expect.
var (
	_ command.Func    = (*Worker)(nil).Handle
	_ bus.Handler     = (*Worker)(nil).HandleTick
	_ inbox.TxHandler = (*Worker)(nil).HandleEvent
)

// Worker is the support worker: it opens, triages, routes and updates
// tickets (commands), watches their SLA clocks (the support.sla_check
// tick) and opens tickets for incidents other domains report (events).
type Worker struct {
	// Store holds the tickets; required.
	Store *store.Store
	// Rules triage and route tickets and hold the SLA policy; required
	// (triage.Load("") gives the shipped rules).
	Rules *triage.Rules
	// Catalog resolves legacy tier names for routing; nil routes the
	// tier as the account stores it.
	Catalog *catalog.Catalog
	// Runtime does the command bookkeeping; required.
	Runtime *command.Runtime
	// Topology names the subjects of the events the worker emits.
	Topology bus.Topology
	// Clock is the time for what carries no time of its own; nil is
	// time.Now. Commands are timed by when the API accepted them, events
	// by their own time and ticks by their slot, so that a redelivery or
	// a replay decides the same.
	Clock func() time.Time
	// Metrics count tickets and escalations; nil counts nothing.
	Metrics *Metrics
	// AutoCloseAfter is how long a resolved ticket stays resolved before
	// support.autoclose closes it; zero means AutoCloseAfterDefault.
	AutoCloseAfter time.Duration
	// DFYFollowupAfter is how long a DFY work item may stay open without
	// a change before dfy.followup chases it; zero means
	// DFYFollowupAfterDefault.
	DFYFollowupAfter time.Duration
}

func (w *Worker) now() time.Time {
	if w.Clock != nil {
		return w.Clock().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

func (w *Worker) topology() bus.Topology {
	if w.Topology.Streams == nil {
		return w.Topology.WithDefaults()
	}
	return w.Topology
}

func (w *Worker) policy() *sla.Policy { return w.Rules.SLA() }

// Register adds the worker's consumers to r: support-cmd and support-dlq
// for the commands, support-tick for the SLA check and support-event for
// other domains' incidents.
func (w *Worker) Register(r *bus.Router) {
	r.Handle(CommandConsumer(), w.Runtime.Handler(w.Handle))
	r.Handle(w.Runtime.DeadLetters(WorkerName+"-dlq", ConsumerCommands))
	r.Handle(TickConsumer(), w.HandleTick)
	r.Handle(DFYTickConsumer(), w.HandleTick)
	r.Handle(EventConsumer(), inbox.Handler(w.Store, w.HandleEvent))
}

// Handle carries out one support command (a command.Func).
func (w *Worker) Handle(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "support", Domain, command.Actions{
		ActionCreateTicket: command.Typed(w.createTicket),
		ActionAddMessage:   command.Typed(w.addMessage),
		ActionSetStatus:    command.Typed(w.setStatus),
	})
}

// TicketIDFor is the id of the ticket command cmdID opens: the same on
// every retry of the command.
func TicketIDFor(cmdID string) string { return derivedID("ticket created by " + cmdID) }

// IncidentTicketID is the id of the ticket about incident of account.
func IncidentTicketID(accountID, incident string) string {
	return derivedID("ticket for incident " + incident + " of " + accountID)
}

func derivedID(seed string) string {
	sum := sha256.Sum256([]byte("levqor " + seed))
	return command.DerivedID(TicketIDPrefix, sum[:])
}

// commandTime is when the API accepted the command.
func (w *Worker) commandTime(e *command.Envelope) time.Time {
	if e.CreatedAt.IsZero() {
		return w.now()
	}
	// The database keeps microseconds: the answer shows what it keeps.
	return e.CreatedAt.UTC().Truncate(time.Microsecond)
}

// profile is what routing and the SLA know of an account.
type profile struct {
	Tier     string
	SLAClass string
	DFY      bool
}

// accountProfile reads the account's tier (canonical), SLA class and
// whether it bought a Done-For-You package. An unknown account wraps
// store.ErrNotFound.
func (w *Worker) accountProfile(ctx context.Context, tx *store.Tx, accountID string) (*store.Account, profile, error) {
	acc, err := tx.GetAccount(ctx, accountID)
	if err != nil {
		return nil, profile{}, err
	}
	var p profile
	if acc.Tier != nil {
		p.Tier = *acc.Tier
		if w.Catalog != nil {
			if t, ok := w.Catalog.Tier(p.Tier); ok {
				p.Tier = t
			}
		}
	}
	var ent catalog.Entitlements
	if len(acc.Entitlements) > 0 {
		// Entitlements billing could not write in this shape leave the
		// class empty: the SLA falls back to its fallback class.
		_ = json.Unmarshal(acc.Entitlements, &ent)
	}
	p.SLAClass = w.policy().Class(ent.SLA).Name
	if p.DFY, err = tx.HasDFYPurchase(ctx, accountID); err != nil {
		return nil, profile{}, err
	}
	return acc, p, nil
}

// slaTicket is what the SLA package needs of t.
func slaTicket(t *store.Ticket) sla.Ticket {
	st := sla.Ticket{SLAClass: t.SLAClass, Severity: t.Severity, Opened: t.OpenedAt}
	if t.FirstResponseAt != nil {
		st.FirstResponse = *t.FirstResponseAt
	}
	if t.ResolvedAt != nil {
		st.Resolved = *t.ResolvedAt
	}
	for _, p := range t.Pauses {
		sp := sla.Pause{From: p.From}
		if p.To != nil {
			sp.To = *p.To
		}
		st.Pauses = append(st.Pauses, sp)
	}
	return st
}

// refresh recomputes t's due times and clock states at now. Breached,
// once set, stays set: the ticket did miss a target.
func (w *Worker) refresh(t *store.Ticket, now time.Time) sla.Report {
	r := w.policy().Status(now, slaTicket(t))
	due := func(c sla.Clock) *time.Time {
		if c.Due.IsZero() {
			return nil
		}
		d := c.Due.UTC()
		return &d
	}
	t.FirstResponseDue, t.ResolutionDue = due(r.FirstResponse), due(r.Resolution)
	if n := len(t.Pauses); n > 0 && t.Pauses[n-1].To == nil && !t.Pauses[n-1].From.After(now) &&
		t.ResolvedAt == nil && r.Resolution.State != sla.StateBreached {
		// Paused from this very instant on: the due time depends on when
		// the pause ends (sla counts a pause from the instant after).
		t.ResolutionDue = nil
	}
	t.FirstResponseState, t.ResolutionState = string(r.FirstResponse.State), string(r.Resolution.State)
	t.SLACheckedAt = now
	if r.FirstResponse.State == sla.StateBreached || r.Resolution.State == sla.StateBreached {
		t.Breached = true
	}
	return r
}

// lastChange is the newest instant recorded on t, so that a change is
// never placed before one already applied.
func lastChange(t *store.Ticket) time.Time {
	last := t.OpenedAt
	later := func(p *time.Time) {
		if p != nil && p.After(last) {
			last = *p
		}
	}
	later(t.FirstResponseAt)
	later(t.ResolvedAt)
	later(t.ClosedAt)
	for i := range t.Pauses {
		later(&t.Pauses[i].From)
		later(t.Pauses[i].To)
	}
	return last
}

func notBefore(at, floor time.Time) time.Time {
	if at.Before(floor) {
		return floor
	}
	return at
}

func openPause(t *store.Ticket, at time.Time) {
	if n := len(t.Pauses); n > 0 && t.Pauses[n-1].To == nil {
		return
	}
	t.Pauses = append(t.Pauses, store.TicketPause{From: at})
}

func closePause(t *store.Ticket, at time.Time) {
	if n := len(t.Pauses); n > 0 && t.Pauses[n-1].To == nil {
		end := at
		t.Pauses[n-1].To = &end
	}
}

// ErrTransition is the cause of a status change a ticket cannot make.
var ErrTransition = errors.New("support: status change not allowed")

// transition moves t to status to at at and reports whether that reopened
// it. Pending and resolved pause the resolution clock; open resumes it;
// resolved and closed stop it.
func transition(t *store.Ticket, to string, at time.Time) (reopened bool, err error) {
	from := t.Status
	if from == to {
		return false, nil
	}
	switch to {
	case store.TicketPending:
		if from != store.TicketOpen {
			return false, fmt.Errorf("%w: only an open ticket can become pending (it is %s)", ErrTransition, from)
		}
		openPause(t, at)
	case store.TicketOpen:
		closePause(t, at)
		if from == store.TicketResolved || from == store.TicketClosed {
			t.ResolvedAt, t.ClosedAt, reopened = nil, nil, true
		}
	case store.TicketResolved:
		if from == store.TicketClosed {
			return false, fmt.Errorf("%w: a closed ticket is reopened (status open), not resolved", ErrTransition)
		}
		openPause(t, at)
		resolved := at
		t.ResolvedAt = &resolved
	case store.TicketClosed:
		openPause(t, at)
		if t.ResolvedAt == nil {
			resolved := at
			t.ResolvedAt = &resolved
		}
		closed := at
		t.ClosedAt = &closed
	default:
		return false, fmt.Errorf("%w: unknown status %q", ErrTransition, to)
	}
	t.Status = to
	return reopened, nil
}

// emit writes a support event to the outbox in tx. The events are listed
// in pkg/events; they carry the ticket's account, id, subject, status,
// category, severity and queue (ticketAt), never message bodies.
func (w *Worker) emit(ctx context.Context, tx *store.Tx, correlation string, ev events.Event) error {
	_, err := events.Emit(ctx, tx, w.topology(), ev, correlation)
	return err
}

// ticketAt is what every support event says of t, changed at at.
func ticketAt(t *store.Ticket, at time.Time) events.Ticket {
	return events.Ticket{
		AccountID: t.AccountID, TicketID: t.ID, Subject: t.Subject, Status: t.Status,
		Category: t.Category, Severity: t.Severity, Queue: t.Queue, Origin: t.Origin, At: at.UTC(),
	}
}

// history appends an entry to t's history.
func history(ctx context.Context, tx *store.Tx, t *store.Ticket, kind, actor string, at time.Time, detail map[string]any) error {
	var raw json.RawMessage
	if detail != nil {
		b, err := json.Marshal(detail)
		if err != nil {
			return err
		}
		raw = b
	}
	_, err := tx.AppendTicketEvent(ctx, store.TicketEvent{TicketID: t.ID, AccountID: t.AccountID, Kind: kind, Actor: actor, Detail: raw, At: at})
	return err
}

// Metrics count what the worker does.
type Metrics struct {
	opened      *prometheus.CounterVec
	escalations *prometheus.CounterVec
	reopened    prometheus.Counter
	checks      *prometheus.HistogramVec
}

// NewMetrics creates the worker's metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_support_tickets_opened_total",
			Help: "Tickets opened, by origin (customer, agent, automatic) and queue."}, []string{"origin", "queue"}),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_support_escalations_total",
			Help: "SLA escalations raised, by clock and state (at_risk, breached)."}, []string{"clock", "state"}),
		reopened: prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_support_tickets_reopened_total",
			Help: "Tickets reopened, by a person or by a repeated incident."}),
		checks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "levqor_support_sla_check_duration_seconds",
			Help: "Duration of an SLA check over every open and pending ticket, by result.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)},
			[]string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.opened, m.escalations, m.reopened, m.checks)
	}
	return m
}

func (m *Metrics) ticketOpened(origin, queue string) {
	if m != nil {
		m.opened.WithLabelValues(origin, queue).Inc()
	}
}

func (m *Metrics) escalated(clock, state string) {
	if m != nil {
		m.escalations.WithLabelValues(clock, state).Inc()
	}
}

func (m *Metrics) ticketReopened() {
	if m != nil {
		m.reopened.Inc()
	}
}

func (m *Metrics) check(d time.Duration, failed bool) {
	if m == nil {
		return
	}
	result := "ok"
	if failed {
		result = "failed"
	}
	m.checks.WithLabelValues(result).Observe(d.Seconds())
}
