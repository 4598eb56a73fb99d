package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/bus"
)

// WindowRequest asks ReplayWindow to re-run one consumer's handlers over
// the messages its stream stored between Since and Until.
//
// Each message is published again to its subject with headers naming the
// consumer (Levqor-Replay-For): that consumer's workers run it, through
// its inbox, exactly as the first time; every other consumer of the
// subject acknowledges it without running anything. No handler runs in
// the process that asks, so the tools need no worker's dependencies.
type WindowRequest struct {
	// Consumer whose handlers run; required. It is a durable consumer on
	// the NATS server.
	Consumer string `json:"consumer"`
	// Stream, optional, must be the consumer's stream (name or kind, any
	// case); it guards against replaying the wrong thing.
	Stream string `json:"stream,omitempty"`
	// Since (required) and Until (default now) bound when the stream stored
	// the messages.
	Since time.Time `json:"since"`
	Until time.Time `json:"until,omitzero"`
	// Subject narrows the window to a subject filter within the
	// consumer's.
	Subject string `json:"subject,omitempty"`
	// DryRun lists what would be replayed, and what the consumer's inbox
	// shows it already processed, and publishes nothing.
	DryRun bool `json:"dry_run"`
	// Force re-runs handlers for messages the consumer already processed;
	// without it those are skipped, and only messages it never processed
	// are replayed. Either way a message id is replayed once per window: a
	// dead letter's replay shares its original's id.
	Force bool `json:"force"`
	// Note is the operator's reason, kept in the audit trail.
	Note string `json:"note,omitempty"`
}

// Window item statuses.
const (
	WindowReplayed     = "replayed"
	WindowSkipped      = "skipped"
	WindowFailed       = "failed"
	WindowDeadLettered = "dead_lettered"
	WindowWouldReplay  = "would_replay"
	WindowWouldSkip    = "would_skip"
)

// WindowItem is what happened to one message of the window.
type WindowItem struct {
	Seq         uint64    `json:"seq"`
	Subject     string    `json:"subject"`
	MsgID       string    `json:"msg_id"`
	PublishedAt time.Time `json:"published_at"`
	Status      string    `json:"status"`
	// ReplayedSeq is the replay's sequence in the stream.
	ReplayedSeq uint64 `json:"replayed_seq,omitempty"`
	Error       string `json:"error,omitempty"`
}

// WindowResult reports a window replay.
type WindowResult struct {
	Request WindowRequest `json:"request"`
	// Stream is the stream read and published to.
	Stream string `json:"stream"`
	// Selected counts the messages in the window for the consumer;
	// Replayed those published again for it, Skipped those it had already
	// processed (or that repeat an id replayed earlier in the window),
	// Failed those that could not be published. In a dry run Replayed and
	// Skipped count what would happen.
	Selected int `json:"selected"`
	Replayed int `json:"replayed"`
	Skipped  int `json:"skipped"`
	Failed   int `json:"failed"`
	// FirstSeq and LastSeq bound the replays' sequences in the stream.
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// Waited is set once WaitWindow saw the consumer settle every replay:
	// Handled of them acknowledged, DeadLettered given up on.
	Waited       bool `json:"waited"`
	Handled      int  `json:"handled"`
	DeadLettered int  `json:"dead_lettered"`
	// Items lists the messages in a dry run, and the failures and dead
	// letters otherwise (the first 1000).
	Items []WindowItem `json:"items"`

	// dlqFrom is the DLQ stream's next sequence when the replay began:
	// WaitWindow reads the dead letters from there on.
	dlqFrom uint64
	// replays maps a replay's stream sequence to the message it replays.
	replays map[uint64]WindowItem
}

func (r *WindowResult) counts() map[string]int {
	return map[string]int{"selected": r.Selected, "replayed": r.Replayed, "skipped": r.Skipped, "failed": r.Failed}
}

func (r *WindowResult) addItem(it WindowItem) {
	if len(r.Items) < maxItems {
		r.Items = append(r.Items, it)
	}
}

// windowBatch is how many messages ReplayWindow looks up in the inbox at
// once before publishing them.
var windowBatch = 200

// ReplayWindow publishes the window again for req.Consumer; see
// WindowRequest. It returns once every replay is stored: the consumer's
// workers handle them from then on, and WaitWindow waits for them. A
// replay that fails is retried and dead-lettered like any message.
func (o *Ops) ReplayWindow(ctx context.Context, actor string, req WindowRequest, progress Progress) (*WindowResult, error) {
	wc, filter, err := o.validateWindow(ctx, &req)
	if err != nil {
		return nil, err
	}
	res := &WindowResult{Request: req, Stream: wc.stream, Items: []WindowItem{}, replays: map[uint64]WindowItem{}}
	if !req.DryRun {
		dlq, err := o.js.Stream(ctx, o.topo.StreamName(bus.DLQ))
		if err != nil {
			return nil, fmt.Errorf("reading the dead-letter stream: %w", err)
		}
		res.dlqFrom = dlq.CachedInfo().State.LastSeq + 1
	}
	// A replay's own dedupe id names this run, so that running the same
	// window again (after the next fix) publishes again.
	run := randomHex(6)

	type pending struct {
		m  storedMsg
		it WindowItem
	}
	var batch []pending
	seen := map[string]bool{} // a message and its replays share one id
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		done := map[string]bool{}
		if !req.Force {
			ids := make([]string, 0, len(batch))
			for _, p := range batch {
				ids = append(ids, p.it.MsgID)
			}
			var err error
			if done, err = o.store.ProcessedMsgIDs(ctx, wc.name, ids); err != nil {
				return err
			}
		}
		for _, p := range batch {
			it := p.it
			switch {
			case seen[it.MsgID] || done[it.MsgID]:
				res.Skipped++
				it.Status = WindowSkipped
				if req.DryRun {
					it.Status = WindowWouldSkip
				}
			case req.DryRun:
				res.Replayed++
				it.Status = WindowWouldReplay
			default:
				if err := ctx.Err(); err != nil {
					return err // the operator stopped the replay
				}
				it = o.replayInWindow(ctx, res, wc, run, p.m, it)
			}
			seen[it.MsgID] = true
			if req.DryRun || it.Status == WindowFailed {
				res.addItem(it)
			}
		}
		batch = batch[:0]
		return nil
	}
	err = o.scan(ctx, scanOptions{Stream: wc.stream, Filter: filter, Since: req.Since, Until: req.Until}, progress, func(m storedMsg) error {
		if !subjectMatches(wc.filter, m.Subject) {
			return nil
		}
		if to := m.Header.Get(bus.HeaderReplayFor); to != "" && to != wc.name {
			return nil // a replay for another consumer: this one never ran it
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		res.Selected++
		batch = append(batch, pending{m: m, it: WindowItem{Seq: m.Seq, Subject: m.Subject, MsgID: msgIDOf(m.Header, wc.stream, m.Seq), PublishedAt: m.Time}})
		if len(batch) >= windowBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	params := map[string]any{"request": req, "stream": wc.stream}
	if err != nil {
		if req.DryRun || res.Replayed+res.Failed == 0 {
			return nil, err
		}
		// Replays were published before the run stopped: the consumer
		// runs them, and they must be in the trail.
		params["stopped_by"] = err.Error()
		if aerr := o.audit(ctx, actor, ActionReplayWindow, params, res.counts(), outcomeOf(false, res.Replayed+res.Skipped, res.Failed+1)); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return res, fmt.Errorf("replay stopped after %d message(s): %w", res.Selected, err)
	}
	if err := o.audit(ctx, actor, ActionReplayWindow, params, res.counts(), outcomeOf(req.DryRun, res.Replayed+res.Skipped, res.Failed)); err != nil {
		return res, err
	}
	return res, nil
}

// replayInWindow publishes one message of the window again for the
// consumer and records the outcome in res.
func (o *Ops) replayInWindow(ctx context.Context, res *WindowResult, wc windowConsumer, run string, m storedMsg, it WindowItem) WindowItem {
	h := WindowReplayHeaders(m.Header, it.MsgID, m.Seq, wc.name, res.Request.Force)
	id := "replay:" + wc.stream + ":" + strconv.FormatUint(m.Seq, 10) + ":" + wc.name + ":" + run
	pub, err := o.pub.Publish(ctx, m.Subject, id, h, m.Data)
	if err != nil {
		res.Failed++
		it.Status, it.Error = WindowFailed, "replay not published: "+err.Error()
		return it
	}
	res.Replayed++
	it.Status, it.ReplayedSeq = WindowReplayed, pub.Seq
	res.replays[pub.Seq] = it
	if res.FirstSeq == 0 {
		res.FirstSeq = pub.Seq
	}
	res.LastSeq = max(res.LastSeq, pub.Seq)
	return it
}

// WindowReplayHeaders returns the headers of a window replay of a stored
// message for consumer: the original headers without JetStream's own, the
// logical id in Levqor-Msg-Id, Levqor-Replay-Of set to the stream sequence
// replayed, Levqor-Replay-For to the consumer, and Levqor-Replay-Force
// when the operator forced the run.
func WindowReplayHeaders(stored nats.Header, msgID string, seq uint64, consumer string, force bool) nats.Header {
	h := nats.Header{}
	for k, v := range stored {
		if strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "Levqor-Replay-") {
			continue
		}
		h[k] = slices.Clone(v)
	}
	h.Set(bus.HeaderOriginalMsgID, msgID)
	h.Set(bus.HeaderReplayOf, strconv.FormatUint(seq, 10))
	h.Set(bus.HeaderReplayFor, consumer)
	if force {
		h.Set(bus.HeaderReplayForce, "true")
	}
	return h
}

// WaitWindow waits until the consumer has settled every replay of res (its
// ack floor passed the last one), then counts those it handled and those
// it dead-lettered, listing the dead letters with their reason. A
// consumer no worker runs keeps the wait going until ctx ends; the error
// is then ctx's, and res says how many replays are still pending.
func (o *Ops) WaitWindow(ctx context.Context, res *WindowResult) error {
	if res.Request.DryRun || res.LastSeq == 0 {
		res.Waited = true
		return nil
	}
	c, err := o.js.Consumer(ctx, res.Stream, res.Request.Consumer)
	if err != nil {
		return fmt.Errorf("reading consumer %s: %w", res.Request.Consumer, err)
	}
	for {
		info, err := c.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading consumer %s: %w", res.Request.Consumer, err)
		}
		if info.AckFloor.Stream >= res.LastSeq {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to handle the replays (its ack floor is at %d, the last replay at %d): %w",
				res.Request.Consumer, info.AckFloor.Stream, res.LastSeq, ctx.Err())
		case <-time.After(WaitHandledPollDefault):
		}
	}
	dead := 0
	err = o.scan(ctx, scanOptions{Stream: o.topo.StreamName(bus.DLQ), Filter: o.topo.Subject(bus.DLQ, res.Request.Consumer), FromSeq: res.dlqFrom}, nil, func(m storedMsg) error {
		if m.Header.Get(bus.HeaderDlqStream) != res.Stream {
			return nil
		}
		seq, err := strconv.ParseUint(m.Header.Get(bus.HeaderDlqSeq), 10, 64)
		it, ok := res.replays[seq]
		if err != nil || !ok {
			return nil
		}
		dead++
		it.Status, it.Error = WindowDeadLettered, fmt.Sprintf("dead letter %d: %s", m.Seq, m.Header.Get(bus.HeaderDlqReason))
		res.addItem(it)
		return nil
	})
	if err != nil {
		return err
	}
	res.Waited, res.DeadLettered, res.Handled = true, dead, res.Replayed-dead
	return nil
}

// windowConsumer is the durable consumer a window is replayed for.
type windowConsumer struct {
	name   string
	kind   bus.Kind
	stream string
	// filter is its full subject filter.
	filter string
}

// findConsumer looks for the durable consumer name on the server, in the
// stream of kind only when kind is set.
func (o *Ops) findConsumer(ctx context.Context, name string, kinds []bus.Kind) (windowConsumer, bool, error) {
	for _, k := range kinds {
		stream := o.topo.StreamName(k)
		c, err := o.js.Consumer(ctx, stream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return windowConsumer{}, false, fmt.Errorf("reading consumer %s of %s: %w", name, stream, err)
		}
		filter := c.CachedInfo().Config.FilterSubject
		if filter == "" {
			filter = o.topo.Wildcard(k)
		}
		return windowConsumer{name: name, kind: k, stream: stream, filter: filter}, true, nil
	}
	return windowConsumer{}, false, nil
}

// replayable are the kinds of stream a window replay reads.
var replayable = []bus.Kind{bus.Stripe, bus.Commands, bus.Ticks, bus.Events}

// knownConsumers lists, for error messages, the durable consumers of the
// streams a window replay reads.
func (o *Ops) knownConsumers(ctx context.Context) string {
	var names []string
	for _, k := range replayable {
		stream, err := o.js.Stream(ctx, o.topo.StreamName(k))
		if err != nil {
			continue
		}
		infos, err := durables(ctx, stream)
		if err != nil {
			continue
		}
		for _, info := range infos {
			names = append(names, info.Name)
		}
	}
	if len(names) == 0 {
		return "none: no worker has created its consumers yet"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func (o *Ops) validateWindow(ctx context.Context, req *WindowRequest) (windowConsumer, string, error) {
	if req.Consumer == "" {
		return windowConsumer{}, "", invalid("consumer", "required: the consumer whose handlers re-run (known: %s)", o.knownConsumers(ctx))
	}
	wc, ok, err := o.findConsumer(ctx, req.Consumer, replayable)
	if err != nil {
		return windowConsumer{}, "", err
	}
	if !ok {
		return windowConsumer{}, "", invalid("consumer", "unknown consumer %q (known: %s)", req.Consumer, o.knownConsumers(ctx))
	}
	if req.Stream != "" && !strings.EqualFold(req.Stream, wc.stream) && !strings.EqualFold(req.Stream, string(wc.kind)) {
		return windowConsumer{}, "", invalid("stream", "consumer %s reads stream %s, not %s", req.Consumer, wc.stream, req.Stream)
	}
	if req.Since.IsZero() {
		return windowConsumer{}, "", invalid("since", "required: the start of the window")
	}
	if req.Until.IsZero() {
		req.Until = o.now().UTC()
	}
	if !req.Until.After(req.Since) {
		return windowConsumer{}, "", invalid("until", "must be after since")
	}
	filter := wc.filter
	if req.Subject != "" {
		if !validFilter(req.Subject) {
			return windowConsumer{}, "", invalid("subject", "%q is not a subject or subject filter", req.Subject)
		}
		if _, ok := o.topo.Unprefixed(wc.kind, req.Subject); !ok {
			return windowConsumer{}, "", invalid("subject", "%q is not in stream %s (%s)", req.Subject, wc.stream, o.topo.Wildcard(wc.kind))
		}
		filter = req.Subject
	}
	return wc, filter, nil
}
