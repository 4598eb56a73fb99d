package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/control"
	"github.com/levqor/levqor/pkg/store"
)

// Consumer states in ConsumerStatus.State.
const (
	// StateHealthy: the consumer keeps up.
	StateHealthy = "healthy"
	// StateLagging: a backlog at or over the lag threshold, or messages
	// being redelivered.
	StateLagging = "lagging"
	// StateStuck: the oldest unacknowledged message is older than the stuck
	// age, or a message has failed at least the stuck number of
	// deliveries and is still being retried.
	StateStuck = "stuck"
)

// Report is the overview `levqor status` prints and GET /admin/consumers
// returns.
type Report struct {
	// At is when the figures were read.
	At time.Time `json:"at"`
	// Thresholds are those the states were judged by.
	Thresholds Thresholds `json:"thresholds"`
	// Streams lists Levqor's streams in topology order.
	Streams []StreamStatus `json:"streams"`
	// Consumers lists every durable consumer, by stream in the order of
	// Streams, then by name.
	Consumers []ConsumerStatus `json:"consumers"`
	// Scheduler says whether ticks arrive, when Settings.TickEvery is set.
	Scheduler *SchedulerStatus `json:"scheduler,omitempty"`
	// Paused lists what operators paused: keys "schedule.<job>" and
	// "consumer.<name>".
	Paused map[string]control.Pause `json:"paused,omitempty"`
}

// Scheduler states.
const (
	SchedulerTicking = "ticking"
	SchedulerSilent  = "silent"
	SchedulerWaiting = "waiting"
)

// SchedulerStatus judges the scheduler by the TICKS stream: silent when
// its last tick is older than three periods of the most frequent job.
type SchedulerStatus struct {
	State string `json:"state"`
	// LastTick is when the TICKS stream stored its last message; nil
	// when it holds none (State waiting).
	LastTick *time.Time `json:"last_tick,omitempty"`
	// EverySeconds is the most frequent job's period.
	EverySeconds float64 `json:"every_seconds"`
}

// StreamStatus describes one stream.
type StreamStatus struct {
	Name     string `json:"name"`
	Subjects string `json:"subjects"`
	// Missing is true when the stream does not exist: no Levqor process
	// has started against this NATS yet, or its state was lost.
	Missing   bool       `json:"missing,omitempty"`
	Messages  uint64     `json:"messages"`
	Bytes     uint64     `json:"bytes"`
	FirstSeq  uint64     `json:"first_seq"`
	LastSeq   uint64     `json:"last_seq"`
	FirstTime *time.Time `json:"first_time,omitempty"`
	LastTime  *time.Time `json:"last_time,omitempty"`
	Consumers int        `json:"consumers"`
}

// ConsumerStatus describes one durable consumer.
type ConsumerStatus struct {
	Name   string `json:"name"`
	Stream string `json:"stream"`
	Filter string `json:"filter"`
	// Pending counts messages not yet delivered.
	Pending uint64 `json:"pending"`
	// AckPending counts messages delivered and not yet acknowledged.
	AckPending int `json:"ack_pending"`
	// Redelivered counts unacknowledged messages delivered more than once.
	Redelivered int `json:"redelivered"`
	// Waiting counts pull requests waiting: workers idle and connected.
	Waiting int `json:"waiting"`
	// OldestUnacked* describe the oldest message not yet acknowledged,
	// delivered or not.
	OldestUnackedSeq        uint64     `json:"oldest_unacked_seq,omitempty"`
	OldestUnackedAt         *time.Time `json:"oldest_unacked_at,omitempty"`
	OldestUnackedAgeSeconds float64    `json:"oldest_unacked_age_seconds"`
	// LastActive is when the consumer last delivered a message.
	LastActive *time.Time `json:"last_active,omitempty"`
	// Failing counts messages whose latest delivery failed and which are
	// still being retried; FailingRepeatedly those among them that failed
	// at least the stuck number of deliveries.
	Failing           int `json:"failing"`
	FailingRepeatedly int `json:"failing_repeatedly"`
	// DeadLetters counts this consumer's messages in the DLQ.
	DeadLetters uint64 `json:"dead_letters"`
	// State is StateHealthy, StateLagging or StateStuck; Reasons say why.
	State   string   `json:"state"`
	Reasons []string `json:"reasons,omitempty"`
}

// Status reads every stream and durable consumer and judges each
// consumer's health by the thresholds.
func (o *Ops) Status(ctx context.Context) (*Report, error) {
	now := o.now().UTC()
	th := o.set.Thresholds
	rep := &Report{At: now, Thresholds: th, Streams: []StreamStatus{}, Consumers: []ConsumerStatus{}}
	paused, err := o.Pauses(ctx)
	if err != nil {
		return nil, err
	}
	if len(paused) > 0 {
		rep.Paused = paused
	}

	dlq, err := o.deadLetterCounts(ctx)
	if err != nil {
		return nil, err
	}
	failures, err := o.store.ListFailures(ctx, store.ListFailuresParams{Limit: 10000})
	if err != nil {
		return nil, err
	}
	failing := map[string][]store.FailureRecord{}
	for _, f := range failures {
		failing[f.Consumer] = append(failing[f.Consumer], f)
	}

	for _, k := range bus.Kinds {
		name := o.topo.StreamName(k)
		ss := StreamStatus{Name: name, Subjects: o.topo.Wildcard(k)}
		stream, err := o.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			ss.Missing = true
			rep.Streams = append(rep.Streams, ss)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", name, err)
		}
		st := stream.CachedInfo().State
		ss.Messages, ss.Bytes, ss.FirstSeq, ss.LastSeq = st.Msgs, st.Bytes, st.FirstSeq, st.LastSeq
		if st.Msgs > 0 {
			ss.FirstTime, ss.LastTime = timePtr(st.FirstTime), timePtr(st.LastTime)
		}
		infos, err := durables(ctx, stream)
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			ss.Consumers++
			cs, err := o.consumerStatus(ctx, stream, info, now, failing[info.Name])
			if err != nil {
				return nil, err
			}
			cs.DeadLetters = dlq[o.topo.Subject(bus.DLQ, info.Name)]
			rep.Consumers = append(rep.Consumers, cs)
		}
		rep.Streams = append(rep.Streams, ss)
	}
	if every := o.set.TickEvery; every > 0 {
		sch := &SchedulerStatus{State: SchedulerWaiting, EverySeconds: every.Seconds()}
		for _, ss := range rep.Streams {
			if ss.Name == o.topo.StreamName(bus.Ticks) && ss.LastTime != nil {
				sch.LastTick, sch.State = ss.LastTime, SchedulerTicking
				if now.Sub(*ss.LastTime) > 3*every {
					sch.State = SchedulerSilent
				}
			}
		}
		rep.Scheduler = sch
	}
	// Streams were read in topology order; keep it, and sort by name
	// within a stream.
	order := map[string]int{}
	for i, s := range rep.Streams {
		order[s.Name] = i
	}
	slices.SortStableFunc(rep.Consumers, func(a, b ConsumerStatus) int {
		if c := order[a.Stream] - order[b.Stream]; c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return rep, nil
}

func timePtr(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}

// deadLetterCounts returns the number of dead letters per DLQ subject.
func (o *Ops) deadLetterCounts(ctx context.Context) (map[string]uint64, error) {
	name := o.topo.StreamName(bus.DLQ)
	stream, err := o.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", name, err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(o.topo.Wildcard(bus.DLQ)))
	if err != nil {
		return nil, fmt.Errorf("counting dead letters: %w", err)
	}
	if info.State.Subjects == nil {
		return map[string]uint64{}, nil
	}
	return info.State.Subjects, nil
}

// oldestUnacked returns the first message after the consumer's ack floor
// that matches its filter: everything before it is acknowledged, so it is
// the oldest message the consumer still owes an acknowledgement for.
func oldestUnacked(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo) (*jetstream.RawStreamMsg, error) {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return nil, nil
	}
	filter := info.Config.FilterSubject
	if filter == "" {
		filter = ">"
	}
	m, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(filter))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the oldest unacknowledged message of %s: %w", info.Name, err)
	}
	return m, nil
}

// unresolved keeps the failures that still hold the consumer back: not
// dead-lettered, not processed since (ListFailures' default), and after the
// consumer's ack floor (at or below it JetStream has them acknowledged or
// terminated).
func unresolved(failures []store.FailureRecord, info *jetstream.ConsumerInfo) []store.FailureRecord {
	var out []store.FailureRecord
	for _, f := range failures {
		if f.Stream == info.Stream && f.StreamSeq > info.AckFloor.Stream {
			out = append(out, f)
		}
	}
	return out
}

func (o *Ops) consumerStatus(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo, now time.Time, failures []store.FailureRecord) (ConsumerStatus, error) {
	th := o.set.Thresholds
	cs := ConsumerStatus{
		Name: info.Name, Stream: info.Stream, Filter: info.Config.FilterSubject,
		Pending: info.NumPending, AckPending: info.NumAckPending, Redelivered: info.NumRedelivered,
		Waiting: info.NumWaiting, LastActive: info.Delivered.Last,
	}
	oldest, err := oldestUnacked(ctx, stream, info)
	if err != nil {
		return cs, err
	}
	var age time.Duration
	if oldest != nil {
		cs.OldestUnackedSeq = oldest.Sequence
		cs.OldestUnackedAt = timePtr(oldest.Time)
		age = max(now.Sub(oldest.Time), 0)
		cs.OldestUnackedAgeSeconds = age.Round(time.Millisecond).Seconds()
	}
	for _, f := range unresolved(failures, info) {
		cs.Failing++
		if f.Deliveries >= th.StuckDeliveries {
			cs.FailingRepeatedly++
		}
	}

	backlog := cs.Pending + uint64(cs.AckPending)
	var stuck, lagging []string
	if oldest != nil && age >= th.StuckAge {
		stuck = append(stuck, fmt.Sprintf("oldest unacknowledged message (seq %d) is %s old; threshold %s", oldest.Sequence, roundAge(age), th.StuckAge))
	}
	if cs.FailingRepeatedly > 0 {
		stuck = append(stuck, fmt.Sprintf("%d message(s) failed %d or more deliveries and are still retried; see levqor stuck --consumer %s", cs.FailingRepeatedly, th.StuckDeliveries, cs.Name))
	}
	if backlog >= uint64(th.LagMessages) {
		lagging = append(lagging, fmt.Sprintf("%d messages behind; threshold %d", backlog, th.LagMessages))
	}
	if cs.Redelivered > 0 {
		lagging = append(lagging, fmt.Sprintf("%d message(s) being redelivered", cs.Redelivered))
	}
	switch {
	case len(stuck) > 0:
		cs.State, cs.Reasons = StateStuck, append(stuck, lagging...)
		if cs.Waiting == 0 && backlog > 0 {
			cs.Reasons = append(cs.Reasons, "no worker is waiting for messages: are the workers running?")
		}
	case len(lagging) > 0:
		cs.State, cs.Reasons = StateLagging, lagging
	default:
		cs.State = StateHealthy
	}
	return cs, nil
}

// roundAge rounds an age for people: to the second, or the minute past an
// hour.
func roundAge(d time.Duration) time.Duration {
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
