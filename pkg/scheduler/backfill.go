package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
)

// BackfillMaxSlots bounds one backfill: a range holding more slots is
// refused rather than flooding the workers.
const BackfillMaxSlots = 1000

// BackfillError is a backfill refused for its input; Field is "job",
// "since" or "until".
type BackfillError struct {
	Field, Message string
}

func (e *BackfillError) Error() string { return e.Message }

// BackfillResult says what a backfill did, slot by slot.
type BackfillResult struct {
	Job string `json:"job"`
	// Published are the slots published now; Present those the TICKS
	// stream held already (published on time, or by an earlier backfill).
	Published []Published `json:"published"`
	Present   []time.Time `json:"present"`
}

// Backfill publishes, oldest first, a tick for every slot of job in
// [since, until] that the TICKS stream does not hold: slots missed while
// the scheduler was down for longer than the catch-up window, or while
// the job was off. Each tick carries the slot's own dedupe id, as the
// scheduler's would, so a slot is never ticked twice, and is marked
// Backfill so that the scheduler does not take it for its newest slot.
// The range must end in the past and lie within what the stream keeps
// (TICKS' max age): older slots cannot be told apart from slots already
// run. Disabled jobs can be backfilled.
func (s *Scheduler) Backfill(ctx context.Context, job string, since, until time.Time) (BackfillResult, error) {
	res := BackfillResult{Job: job, Published: []Published{}, Present: []time.Time{}}
	if s.js == nil {
		return res, errors.New("backfill needs JetStream")
	}
	j, ok := Lookup(s.cfg.Jobs, job)
	if !ok {
		return res, &BackfillError{"job", fmt.Sprintf("no job named %q (jobs: %s)", job, joinNames(s.cfg.Jobs))}
	}
	now := s.cfg.Now()
	keep := s.cfg.Topology.Streams[bus.Ticks].MaxAge
	switch {
	case !since.Before(until):
		return res, &BackfillError{"until", fmt.Sprintf("since %s is not before until %s", since.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339))}
	case until.After(now):
		return res, &BackfillError{"until", fmt.Sprintf("until %s is in the future: the scheduler publishes those slots itself", until.UTC().Format(time.RFC3339))}
	case keep > 0 && since.Before(now.Add(-keep)):
		return res, &BackfillError{"since", fmt.Sprintf("since %s is older than the TICKS stream keeps (%s, so since %s): whether those slots ran cannot be told",
			since.UTC().Format(time.RFC3339), keep, now.Add(-keep).UTC().Format(time.RFC3339))}
	}
	sc, err := j.Schedule()
	if err != nil {
		return res, err
	}
	var slots []time.Time
	for t := sc.Next(since.Add(-time.Nanosecond)); !t.IsZero() && !t.After(until); t = sc.Next(t) {
		slots = append(slots, t.UTC())
		if len(slots) > BackfillMaxSlots {
			return res, &BackfillError{"since", fmt.Sprintf("the range holds more than %d slots of %s; backfill it in parts", BackfillMaxSlots, job)}
		}
	}
	present, err := s.tickedSlots(ctx, job, since)
	if err != nil {
		return res, err
	}
	last, err := s.Last(ctx, job)
	if err != nil && !errors.Is(err, ErrUnreadableTick) {
		return res, err
	}
	for _, slot := range slots {
		if present[MsgID(job, slot)] {
			res.Present = append(res.Present, slot)
			continue
		}
		t := Tick{Job: job, Slot: slot, Backfill: true}
		if !last.Slot.IsZero() {
			ls := last.Slot
			t.LastScheduled = &ls
		}
		id := MsgID(job, slot)
		pr, err := s.publish(ctx, t, id)
		if err != nil {
			return res, fmt.Errorf("publishing the tick of %s: %w", id, err)
		}
		if pr.Duplicate {
			res.Present = append(res.Present, slot)
			continue
		}
		s.log.WithFields(logrus.Fields{"job": job, "slot": slot.Format(time.RFC3339), "msg_id": id, "stream_seq": pr.Seq}).Info("backfilled tick published")
		res.Published = append(res.Published, Published{Tick: t, MsgID: id, Seq: pr.Seq})
	}
	return res, nil
}

// tickedSlots reads the dedupe ids of job's ticks stored since since.
func (s *Scheduler) tickedSlots(ctx context.Context, job string, since time.Time) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	stream := s.cfg.Topology.StreamName(bus.Ticks)
	start := since.Add(-time.Second)
	cons, err := s.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.cfg.Topology.Subject(bus.Ticks, job)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
	})
	if err != nil {
		return nil, fmt.Errorf("reading the ticks of %s: %w", job, err)
	}
	out := map[string]bool{}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the ticks of %s: %w", job, err)
	}
	for remaining := info.NumPending; remaining > 0; {
		batch, err := cons.Fetch(int(min(remaining, 256)), jetstream.FetchMaxWait(s.cfg.Timeout))
		if err != nil {
			return nil, fmt.Errorf("reading the ticks of %s: %w", job, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			out[m.Headers().Get(nats.MsgIdHdr)] = true
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("reading the ticks of %s: %w", job, err)
		}
		if n == 0 {
			// A slot left unread would be published again, and run twice.
			return nil, fmt.Errorf("reading the ticks of %s: %d stored ticks could not be read; nothing was published", job, remaining)
		}
		remaining -= uint64(n)
	}
	return out, nil
}
