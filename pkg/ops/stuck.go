package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// StuckMessage is a message a consumer keeps failing at, or has not
// acknowledged for long.
type StuckMessage struct {
	Consumer  string `json:"consumer"`
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"stream_seq"`
	Subject   string `json:"subject"`
	MsgID     string `json:"msg_id,omitempty"`
	// Deliveries is the delivery count at the latest failure the worker
	// reported; 0 when it reported none (the worker hangs or died).
	Deliveries int `json:"deliveries"`
	// PublishedAt is when the stream stored the message; AgeSeconds is how
	// long ago that was.
	PublishedAt *time.Time `json:"published_at,omitempty"`
	AgeSeconds  float64    `json:"age_seconds"`
	// FirstFailedAt, LastFailedAt and LastError describe the failures the
	// worker reported.
	FirstFailedAt *time.Time `json:"first_failed_at,omitempty"`
	LastFailedAt  *time.Time `json:"last_failed_at,omitempty"`
	LastError     string     `json:"last_error"`
	// Reasons say which thresholds it crossed.
	Reasons []string `json:"reasons"`
}

// Stuck lists the messages delivered at least the stuck number of times or
// unacknowledged for at least the stuck age, for one consumer or (empty)
// all, oldest first. Two sources meet here: the failures workers report
// (store.RecordFailure), and JetStream's ack floor, which shows the oldest
// unacknowledged message even when its worker hangs without failing.
func (o *Ops) Stuck(ctx context.Context, consumer string) ([]StuckMessage, error) {
	if consumer != "" && !consumerNameRe.MatchString(consumer) {
		return nil, invalid("consumer", "%q is not a consumer name", consumer)
	}
	now := o.now().UTC()
	th := o.set.Thresholds
	failures, err := o.store.ListFailures(ctx, store.ListFailuresParams{Consumer: consumer, Limit: 10000})
	if err != nil {
		return nil, err
	}
	byConsumer := map[string][]store.FailureRecord{}
	for _, f := range failures {
		byConsumer[f.Consumer] = append(byConsumer[f.Consumer], f)
	}

	out := []StuckMessage{}
	found := consumer == ""
	for _, k := range bus.Kinds {
		name := o.topo.StreamName(k)
		stream, err := o.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", name, err)
		}
		var infos []*jetstream.ConsumerInfo
		if consumer != "" {
			info, err := stream.Consumer(ctx, consumer)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("reading consumer %s: %w", consumer, err)
			}
			infos = append(infos, info.CachedInfo())
			found = true
		} else {
			all, err := durables(ctx, stream)
			if err != nil {
				return nil, err
			}
			infos = append(infos, all...)
		}
		for _, info := range infos {
			msgs, err := o.stuckOf(ctx, stream, info, byConsumer[info.Name], now, th)
			if err != nil {
				return nil, err
			}
			out = append(out, msgs...)
		}
	}
	if !found {
		return nil, fmt.Errorf("consumer %s: %w", consumer, ErrNotFound)
	}
	slices.SortStableFunc(out, func(a, b StuckMessage) int {
		if a.AgeSeconds != b.AgeSeconds {
			if a.AgeSeconds > b.AgeSeconds {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Consumer, b.Consumer)
	})
	return out, nil
}

func (o *Ops) stuckOf(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo,
	failures []store.FailureRecord, now time.Time, th Thresholds) ([]StuckMessage, error) {
	candidates := map[uint64]*StuckMessage{}
	for _, f := range unresolved(failures, info) {
		first, last := f.FirstFailedAt, f.At
		candidates[f.StreamSeq] = &StuckMessage{
			Consumer: info.Name, Stream: info.Stream, StreamSeq: f.StreamSeq, Subject: f.Subject, MsgID: f.MsgID,
			Deliveries: f.Deliveries, FirstFailedAt: &first, LastFailedAt: &last, LastError: f.Error,
		}
	}
	// The oldest delivered, unacknowledged message, failing or not.
	if oldest, err := oldestUnacked(ctx, stream, info); err != nil {
		return nil, err
	} else if oldest != nil && oldest.Sequence <= info.Delivered.Stream {
		if _, ok := candidates[oldest.Sequence]; !ok {
			candidates[oldest.Sequence] = &StuckMessage{
				Consumer: info.Name, Stream: info.Stream, StreamSeq: oldest.Sequence, Subject: oldest.Subject,
				MsgID:     msgIDOf(oldest.Header, info.Stream, oldest.Sequence),
				LastError: "(no failure reported: the handler may hang, or its worker died while handling it)",
			}
		}
	}

	var out []StuckMessage
	for seq, c := range candidates {
		at := c.FirstFailedAt
		if m, err := stream.GetMsg(ctx, seq); err == nil {
			at = timePtr(m.Time)
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("reading %s seq %d: %w", info.Stream, seq, err)
		}
		var age time.Duration
		if at != nil {
			c.PublishedAt = at
			age = max(now.Sub(*at), 0)
			c.AgeSeconds = age.Round(time.Millisecond).Seconds()
		}
		if c.Deliveries >= th.StuckDeliveries {
			c.Reasons = append(c.Reasons, fmt.Sprintf("failed %d deliveries; threshold %d", c.Deliveries, th.StuckDeliveries))
		}
		if age >= th.StuckAge {
			c.Reasons = append(c.Reasons, fmt.Sprintf("unacknowledged for %s; threshold %s", roundAge(age), th.StuckAge))
		}
		if len(c.Reasons) > 0 {
			out = append(out, *c)
		}
	}
	return out, nil
}

// msgIDOf is the logical id of a stored message, as bus.Message.ID
// computes it for a delivery.
func msgIDOf(h nats.Header, stream string, seq uint64) string {
	if h == nil {
		h = nats.Header{}
	}
	return (&bus.Message{Header: h, Stream: stream, StreamSeq: seq}).ID()
}
