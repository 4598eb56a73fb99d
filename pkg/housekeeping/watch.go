package housekeeping

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// StuckRedeliveredDefault is how many of a consumer's unacknowledged
// messages must have been redelivered for it to count as stuck. A single
// failing message is the DLQ's business; several at once mean the
// consumer cannot make progress (its database down, a bad deploy).
const StuckRedeliveredDefault = 3

// DLQAccountThresholdDefault is how many of one account's messages a
// consumer must dead-letter between two watches for the watch to raise
// ops.dlq_growing for that account, so support opens a ticket for it.
const DLQAccountThresholdDefault = 3

// accountWindowDefault is how far back the first watch, with no previous
// slot to count from, looks for an account's dead letters.
const accountWindowDefault = time.Hour

// observeTimeout bounds one inspection of NATS.
const observeTimeout = 10 * time.Second

// ConsumerStatus is what one watch saw of a consumer.
type ConsumerStatus struct {
	// Consumer is the durable name, also the token of its dead-letter
	// subject.
	Consumer string `json:"consumer"`
	// Stream it reads; empty for a consumer known only from dead letters.
	Stream string `json:"stream,omitempty"`
	// Pending is how many messages wait to be delivered.
	Pending uint64 `json:"pending_messages"`
	// AckPending is how many were delivered and not yet acknowledged.
	AckPending int `json:"ack_pending_messages"`
	// Redelivered is how many of those were delivered more than once.
	Redelivered int `json:"redelivered_messages"`
	// OldestUnacked is when JetStream stored the oldest message awaiting
	// acknowledgement; nil when none is.
	OldestUnacked *time.Time `json:"oldest_unacked_stored_at,omitempty"`
	// DLQMessages is how many of its dead letters the DLQ holds.
	DLQMessages uint64 `json:"dlq_messages"`
	// Stuck: messages awaiting acknowledgement, at least the threshold of
	// them redelivered.
	Stuck bool `json:"stuck"`
}

// Watcher handles housekeeping.watch ticks.
type Watcher struct {
	// Store records the watch's state and events; required.
	Store *store.Store
	// JS is inspected; required.
	JS jetstream.JetStream
	// Topology names the streams and subjects.
	Topology bus.Topology
	// StuckRedelivered is the stuck threshold; zero means
	// StuckRedeliveredDefault.
	StuckRedelivered int
	// DLQAccountThreshold is how many of one account's messages a consumer
	// must dead-letter between two watches to raise ops.dlq_growing for
	// the account; zero means DLQAccountThresholdDefault.
	DLQAccountThreshold int

	once     sync.Once
	mu       sync.Mutex
	gauges   watchGauges
	exported map[string]bool // consumers with gauge series
}

type watchGauges struct {
	pending, ackPending, redelivered, oldestAge, stuck, dlq *prometheus.GaugeVec
}

func (w *Watcher) init() {
	w.once.Do(func() {
		g := func(name, help string) *prometheus.GaugeVec {
			return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"consumer"})
		}
		w.gauges = watchGauges{
			pending:     g("levqor_consumer_pending_messages", "Messages waiting to be delivered to the consumer, at the last watch."),
			ackPending:  g("levqor_consumer_ack_pending_messages", "Messages delivered to the consumer and not yet acknowledged, at the last watch."),
			redelivered: g("levqor_consumer_redelivered_messages", "Unacknowledged messages delivered to the consumer more than once, at the last watch."),
			oldestAge:   g("levqor_consumer_oldest_unacked_age_seconds", "Age of the oldest message awaiting the consumer's acknowledgement (0 when none), at the last watch."),
			stuck:       g("levqor_consumer_stuck", "1 when the consumer has unacknowledged messages and at least the threshold of them redelivered, at the last watch."),
			dlq:         g("levqor_dlq_messages", "Dead letters of the consumer held by the DLQ, at the last watch."),
		}
		w.exported = map[string]bool{}
	})
}

// Register adds the watch's gauges to reg; gauges already registered by an
// earlier Watcher are taken over.
func (w *Watcher) Register(reg prometheus.Registerer) {
	w.init()
	w.mu.Lock()
	defer w.mu.Unlock()
	gs := &w.gauges
	for _, p := range []**prometheus.GaugeVec{&gs.pending, &gs.ackPending, &gs.redelivered, &gs.oldestAge, &gs.stuck, &gs.dlq} {
		*p = registerGauge(reg, *p)
	}
}

// topo is the watcher's topology with defaults filled in.
func (w *Watcher) topo() bus.Topology {
	if w.Topology.Streams == nil || w.Topology.Prefix == "" {
		return w.Topology.WithDefaults()
	}
	return w.Topology
}

func (w *Watcher) threshold() int {
	if w.StuckRedelivered > 0 {
		return w.StuckRedelivered
	}
	return StuckRedeliveredDefault
}

func (w *Watcher) accountThreshold() int {
	if w.DLQAccountThreshold > 0 {
		return w.DLQAccountThreshold
	}
	return DLQAccountThresholdDefault
}

// Handle runs one watch: it inspects NATS, exports the gauges and, through
// the inbox (once per tick, however often it is delivered), records what it
// saw and raises events for what changed since the previous slot. A tick
// for a slot older than one already watched changes nothing.
func (w *Watcher) Handle(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch("watch", scheduler.Jobs{scheduler.JobHousekeepingWatch: w.Run})(ctx, m)
}

// Run is Handle for a decoded tick.
func (w *Watcher) Run(ctx context.Context, m *bus.Message, t scheduler.Tick) error {
	if w.JS == nil {
		return bus.Permanentf("the watch needs JetStream, and this worker was built without it")
	}
	seen, err := w.Observe(ctx)
	if err != nil {
		return fmt.Errorf("watching consumers: %w", err)
	}
	w.export(seen, time.Now())

	var raised []raisedEvent
	stale := false
	err = inbox.Handler(w.Store, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
		raised, stale = nil, false
		moved, err := tx.AdvanceTickWatermark(ctx, store.AdvanceTickWatermarkParams{Job: t.Job, Slot: t.Slot})
		if err != nil {
			return err
		}
		if !moved {
			stale = true
			return nil
		}
		raised, err = w.record(ctx, tx, m, t, seen)
		return err
	})(ctx, m)
	if err != nil {
		return err
	}
	log := bus.Logger(ctx).WithField("slot", t.Slot.Format(time.RFC3339))
	if stale {
		log.Info("a watch of this or a later slot already ran; nothing to do")
		return nil
	}
	for _, r := range raised {
		fields := r.status.logFields()
		if r.accountID != "" {
			fields["account_id"], fields["dead_lettered"] = r.accountID, r.deadLettered
		}
		log.WithFields(fields).WithField("event", r.event.Subject(w.topo())).Warn(r.message)
	}
	log.WithField("consumers", len(seen)).Debug("watched")
	return nil
}

// raisedEvent is an event record enqueued, logged once its transaction has
// committed.
type raisedEvent struct {
	event   events.Name
	message string
	status  ConsumerStatus
	// accountID and deadLettered are set on a per-account event.
	accountID    string
	deadLettered int
}

// record compares seen with the previous watch's state within tx, enqueues
// the events, saves the new state and returns the events raised.
func (w *Watcher) record(ctx context.Context, tx *store.Tx, m *bus.Message, t scheduler.Tick, seen []ConsumerStatus) ([]raisedEvent, error) {
	prev, err := tx.WatchStates(ctx)
	if err != nil {
		return nil, err
	}
	// Consumers gone since the last watch (deleted, or DLQ purged) are
	// recorded with nothing, so that later growth counts from zero.
	byName := map[string]bool{}
	for _, c := range seen {
		byName[c.Consumer] = true
	}
	for name, p := range prev {
		if !byName[name] {
			seen = append(seen, ConsumerStatus{Consumer: name, Stream: p.Stream})
		}
	}
	corr := m.CorrelationID()
	if corr == "" {
		corr = m.ID()
	}
	var raised []raisedEvent
	for _, c := range seen {
		p, known := prev[c.Consumer]
		if int64(c.DLQMessages) > p.DLQMessages {
			ev := events.DLQGrowing{Consumer: c.Consumer, Stream: c.Stream, DLQMessages: c.DLQMessages, Previous: uint64(p.DLQMessages), Slot: t.Slot}
			if known {
				ps := p.Slot
				ev.PreviousSlot = &ps
			}
			if err := w.enqueue(ctx, tx, ev, corr); err != nil {
				return nil, err
			}
			raised = append(raised, raisedEvent{event: events.NameDLQGrowing, message: "dead-letter queue growing", status: c})
		}
		if c.Stuck && !p.Stuck {
			ev := events.ConsumerStuck{
				Consumer: c.Consumer, Stream: c.Stream, Pending: c.Pending, AckPending: c.AckPending,
				Redelivered: c.Redelivered, OldestUnacked: c.OldestUnacked, DLQMessages: c.DLQMessages,
				Threshold: w.threshold(), Slot: t.Slot,
			}
			if err := w.enqueue(ctx, tx, ev, corr); err != nil {
				return nil, err
			}
			raised = append(raised, raisedEvent{event: events.NameConsumerStuck, message: "consumer stuck", status: c})
		}
		err := tx.SaveWatchState(ctx, store.WatchState{
			Consumer: c.Consumer, Stream: c.Stream, DLQMessages: int64(c.DLQMessages), Stuck: c.Stuck, Slot: t.Slot,
		})
		if err != nil {
			return nil, err
		}
	}
	accounts, err := w.recordAccounts(ctx, tx, t, corr, prev, seen)
	if err != nil {
		return nil, err
	}
	return append(raised, accounts...), nil
}

// recordAccounts raises ops.dlq_growing for each (account, consumer) whose
// dead letters of the account reached the threshold in the window from the
// previous watch's slot (the hour before t.Slot when there was none) to
// t.Slot. Consecutive windows do not overlap, so a dead letter counts in
// one watch only.
func (w *Watcher) recordAccounts(ctx context.Context, tx *store.Tx, t scheduler.Tick, corr string, prev map[string]store.WatchState, seen []ConsumerStatus) ([]raisedEvent, error) {
	var since time.Time
	for _, p := range prev {
		if p.Slot.After(since) {
			since = p.Slot
		}
	}
	var previousSlot *time.Time
	if since.IsZero() || !since.Before(t.Slot) {
		since = t.Slot.Add(-accountWindowDefault)
	} else {
		ps := since
		previousSlot = &ps
	}
	counts, err := tx.AccountDeadLetters(ctx, since, t.Slot)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]ConsumerStatus, len(seen))
	for _, c := range seen {
		byName[c.Consumer] = c
	}
	var raised []raisedEvent
	for _, n := range counts {
		if n.DeadLettered < w.accountThreshold() {
			continue
		}
		c, ok := byName[n.Consumer]
		if !ok {
			c = ConsumerStatus{Consumer: n.Consumer}
		}
		ev := events.DLQGrowing{
			Consumer: n.Consumer, Stream: c.Stream, DLQMessages: c.DLQMessages, Previous: uint64(prev[n.Consumer].DLQMessages),
			PreviousSlot: previousSlot, Slot: t.Slot, AccountID: n.AccountID, DeadLettered: n.DeadLettered,
		}
		if err := w.enqueue(ctx, tx, ev, corr); err != nil {
			return nil, err
		}
		raised = append(raised, raisedEvent{
			event: events.NameDLQGrowing, message: "dead letters piling up for an account", status: c,
			accountID: n.AccountID, deadLettered: n.DeadLettered,
		})
	}
	return raised, nil
}

// enqueue writes an event to the outbox within tx, with the watch tick's
// correlation id and, when the event names an account, the Levqor-Account
// header.
func (w *Watcher) enqueue(ctx context.Context, tx *store.Tx, ev events.Event, corr string) error {
	_, err := events.Emit(ctx, tx, w.topo(), ev, corr)
	return err
}

// Observe inspects every durable consumer of Levqor's five streams and
// counts the DLQ's messages per consumer. The result is sorted by consumer.
func (w *Watcher) Observe(ctx context.Context) ([]ConsumerStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	topo := w.topo()
	byName := map[string]*ConsumerStatus{}
	for _, k := range bus.Kinds { // the DLQ too: workers may consume dead letters
		if err := w.observeStream(ctx, topo, k, byName); err != nil {
			return nil, err
		}
	}
	dlq, err := w.JS.Stream(ctx, topo.StreamName(bus.DLQ))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("opening the DLQ stream: %w", err)
	}
	if err == nil {
		info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(topo.Wildcard(bus.DLQ)))
		if err != nil {
			return nil, fmt.Errorf("counting dead letters: %w", err)
		}
		for subject, n := range info.State.Subjects {
			name, ok := topo.Unprefixed(bus.DLQ, subject)
			if !ok {
				continue
			}
			c := byName[name]
			if c == nil {
				c = &ConsumerStatus{Consumer: name}
				byName[name] = c
			}
			c.DLQMessages = n
		}
	}
	out := make([]ConsumerStatus, 0, len(byName))
	for _, c := range byName {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Consumer < out[j].Consumer })
	return out, nil
}

func (w *Watcher) observeStream(ctx context.Context, topo bus.Topology, k bus.Kind, byName map[string]*ConsumerStatus) error {
	name := topo.StreamName(k)
	stream, err := w.JS.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // not created yet: nothing consumes it
	}
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", name, err)
	}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Config.Durable == "" {
			continue // someone's ephemeral consumer, e.g. the nats CLI
		}
		c := &ConsumerStatus{
			Consumer:    info.Name,
			Stream:      name,
			Pending:     info.NumPending,
			AckPending:  info.NumAckPending,
			Redelivered: info.NumRedelivered,
		}
		c.Stuck = c.AckPending > 0 && c.Redelivered >= w.threshold()
		if c.AckPending > 0 {
			c.OldestUnacked = oldestUnacked(ctx, stream, k, info, topo)
		}
		byName[c.Consumer] = c
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("listing consumers of %s: %w", name, err)
	}
	return nil
}

// oldestUnacked returns when the oldest message awaiting the consumer's
// acknowledgement was stored: the first message of its filter after the
// ack floor. nil when it cannot tell.
func oldestUnacked(ctx context.Context, stream jetstream.Stream, k bus.Kind, info *jetstream.ConsumerInfo, topo bus.Topology) *time.Time {
	filter := info.Config.FilterSubject
	if filter == "" && len(info.Config.FilterSubjects) == 1 {
		filter = info.Config.FilterSubjects[0]
	}
	if filter == "" {
		filter = topo.Wildcard(k)
	}
	msg, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter))
	if err != nil || msg.Sequence > info.Delivered.Stream {
		return nil
	}
	at := msg.Time.UTC()
	return &at
}

// export sets the gauges to what seen says and drops the series of
// consumers that are gone.
func (w *Watcher) export(seen []ConsumerStatus, now time.Time) {
	w.init()
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.gauges
	current := map[string]bool{}
	for _, c := range seen {
		current[c.Consumer] = true
		g.pending.WithLabelValues(c.Consumer).Set(float64(c.Pending))
		g.ackPending.WithLabelValues(c.Consumer).Set(float64(c.AckPending))
		g.redelivered.WithLabelValues(c.Consumer).Set(float64(c.Redelivered))
		age := 0.0
		if c.OldestUnacked != nil {
			age = max(now.Sub(*c.OldestUnacked).Seconds(), 0)
		}
		g.oldestAge.WithLabelValues(c.Consumer).Set(age)
		stuck := 0.0
		if c.Stuck {
			stuck = 1
		}
		g.stuck.WithLabelValues(c.Consumer).Set(stuck)
		g.dlq.WithLabelValues(c.Consumer).Set(float64(c.DLQMessages))
	}
	for name := range w.exported {
		if !current[name] {
			for _, v := range []*prometheus.GaugeVec{g.pending, g.ackPending, g.redelivered, g.oldestAge, g.stuck, g.dlq} {
				v.DeleteLabelValues(name)
			}
		}
	}
	w.exported = current
}

// logFields is the watch's view of a consumer, for log lines.
func (c ConsumerStatus) logFields() logrus.Fields {
	return logrus.Fields{"consumer": c.Consumer, "dlq_messages": c.DLQMessages, "ack_pending": c.AckPending, "redelivered": c.Redelivered}
}
