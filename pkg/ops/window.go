package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/inbox"
)

// WindowRequest asks ReplayWindow to re-run one consumer's handlers over
// the messages its stream stored between Since and Until.
//
// The messages are not published again: that would deliver them to every
// consumer of the subject. ReplayWindow reads them and runs the chosen
// consumer's handler chain in this process, exactly as its worker would,
// so no other consumer sees them and the durable consumer's position does
// not move.
type WindowRequest struct {
	// Consumer whose handlers run; required.
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
	// DryRun lists what would run, and what the inbox would skip, and runs
	// nothing.
	DryRun bool `json:"dry_run"`
	// Force re-runs handlers for messages the consumer already processed;
	// without it the inbox skips them and only messages it never processed
	// run. Either way a message id runs once per window: a dead letter's
	// replay shares its original's id.
	Force bool `json:"force"`
}

// Window item statuses.
const (
	WindowProcessed    = "processed"
	WindowSkipped      = "skipped"
	WindowFailed       = "failed"
	WindowWouldProcess = "would_process"
	WindowWouldSkip    = "would_skip"
)

// WindowItem is what happened to one message of the window.
type WindowItem struct {
	Seq         uint64    `json:"seq"`
	Subject     string    `json:"subject"`
	MsgID       string    `json:"msg_id"`
	PublishedAt time.Time `json:"published_at"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
}

// WindowResult reports a window replay.
type WindowResult struct {
	Request WindowRequest `json:"request"`
	// Stream is the stream read.
	Stream string `json:"stream"`
	// Selected counts the messages in the window for the consumer;
	// Processed those whose handlers ran and committed, Skipped those the
	// inbox found already processed, Failed those whose handlers failed.
	// In a dry run Processed and Skipped count what would happen.
	Selected  int `json:"selected"`
	Processed int `json:"processed"`
	Skipped   int `json:"skipped"`
	Failed    int `json:"failed"`
	// Items lists the messages in a dry run, and the failures otherwise
	// (the first 1000).
	Items []WindowItem `json:"items"`
}

func (r *WindowResult) counts() map[string]int {
	return map[string]int{"selected": r.Selected, "processed": r.Processed, "skipped": r.Skipped, "failed": r.Failed}
}

// ReplayWindow re-runs req.Consumer's handlers over the window; see
// WindowRequest. Handlers are tried once per message: a failure is counted
// and reported, and the operator may run the window again, since handlers
// are idempotent.
func (o *Ops) ReplayWindow(ctx context.Context, actor string, req WindowRequest, progress Progress) (*WindowResult, error) {
	route, filter, err := o.validateWindow(&req)
	if err != nil {
		return nil, err
	}
	stream := o.topo.StreamName(route.Consumer.Kind)
	res := &WindowResult{Request: req, Stream: stream, Items: []WindowItem{}}
	h := bus.Logging(o.log.WithField("replay_actor", actor))(bus.Recoverer(route.Handler))

	type planned struct {
		m   storedMsg
		id  string
		dup bool
	}
	var batch []planned
	flushDry := func() error {
		if len(batch) == 0 {
			return nil
		}
		ids := make([]string, 0, len(batch))
		for _, p := range batch {
			ids = append(ids, p.id)
		}
		done, err := o.store.ProcessedMsgIDs(ctx, route.Consumer.Name, ids)
		if err != nil {
			return err
		}
		for _, p := range batch {
			status := WindowWouldProcess
			if p.dup || (done[p.id] && !req.Force) {
				status = WindowWouldSkip
				res.Skipped++
			} else {
				res.Processed++
			}
			res.addItem(WindowItem{Seq: p.m.Seq, Subject: p.m.Subject, MsgID: p.id, PublishedAt: p.m.Time, Status: status})
		}
		batch = batch[:0]
		return nil
	}

	// A message and its replays share one id: run it once per window.
	seen := map[string]bool{}
	err = o.scan(ctx, scanOptions{Stream: stream, Filter: filter, Since: req.Since, Until: req.Until}, progress, func(m storedMsg) error {
		if !subjectMatches(o.consumerFilter(route.Consumer), m.Subject) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err // the operator stopped the replay
		}
		res.Selected++
		id := msgIDOf(m.Header, stream, m.Seq)
		dup := seen[id]
		seen[id] = true
		if req.DryRun {
			batch = append(batch, planned{m: m, id: id, dup: dup})
			if len(batch) >= 500 {
				return flushDry()
			}
			return nil
		}
		if dup {
			res.Skipped++
			return nil
		}
		it := o.runOne(ctx, h, route.Consumer.Name, stream, m, req.Force)
		switch it.Status {
		case WindowProcessed:
			res.Processed++
		case WindowSkipped:
			res.Skipped++
		default:
			res.Failed++
			res.addItem(it)
		}
		return nil
	})
	if err == nil && req.DryRun {
		err = flushDry()
	}
	params := map[string]any{"request": req, "stream": stream}
	if err != nil {
		if req.DryRun || res.Processed+res.Failed == 0 {
			return nil, err
		}
		// Handlers ran before the replay stopped: their effects are real
		// and must be in the trail.
		params["stopped_by"] = err.Error()
		if aerr := o.audit(ctx, actor, ActionReplayWindow, params, res.counts(), outcomeOf(false, res.Processed+res.Skipped, res.Failed+1)); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return res, fmt.Errorf("replay stopped after %d message(s): %w", res.Selected, err)
	}
	if err := o.audit(ctx, actor, ActionReplayWindow, params, res.counts(), outcomeOf(req.DryRun, res.Processed+res.Skipped, res.Failed)); err != nil {
		return res, err
	}
	return res, nil
}

func (r *WindowResult) addItem(it WindowItem) {
	if len(r.Items) < maxItems {
		r.Items = append(r.Items, it)
	}
}

// runOne runs the handler chain on one stored message as a delivery to
// consumer, telling the inbox whether to force a re-run.
func (o *Ops) runOne(ctx context.Context, h bus.Handler, consumer, stream string, m storedMsg, force bool) WindowItem {
	header := nats.Header{}
	for k, v := range m.Header {
		header[k] = append([]string(nil), v...)
	}
	header.Set(bus.HeaderReplayOf, strconv.FormatUint(m.Seq, 10))
	msg := &bus.Message{
		Subject: m.Subject, Header: header, Data: m.Data,
		Stream: stream, Consumer: consumer, StreamSeq: m.Seq, Deliveries: 1, Published: m.Time,
	}
	it := WindowItem{Seq: m.Seq, Subject: m.Subject, MsgID: msg.ID(), PublishedAt: m.Time}
	var oc inbox.Outcome
	hctx, cancel := context.WithTimeout(inbox.WithOutcome(ctx, &oc), bus.HandlerTimeoutDefault)
	defer cancel()
	if force {
		hctx = inbox.WithForce(hctx, consumer)
	}
	if err := h(hctx, msg); err != nil {
		it.Status, it.Error = WindowFailed, err.Error()
		return it
	}
	if oc.Duplicate && !oc.Forced {
		it.Status = WindowSkipped
	} else {
		it.Status = WindowProcessed
	}
	return it
}

// consumerFilter is the full subject filter of a consumer.
func (o *Ops) consumerFilter(c bus.ConsumerSpec) string {
	f := c.Filter
	if f == "" {
		f = ">"
	}
	return o.topo.Subject(c.Kind, f)
}

func (o *Ops) validateWindow(req *WindowRequest) (bus.Route, string, error) {
	if req.Consumer == "" {
		return bus.Route{}, "", invalid("consumer", "required: the consumer whose handlers re-run (known: %s)", strings.Join(o.Consumers(), ", "))
	}
	route, ok := o.routes[req.Consumer]
	if !ok {
		return bus.Route{}, "", invalid("consumer", "unknown consumer %q (known: %s)", req.Consumer, strings.Join(o.Consumers(), ", "))
	}
	stream := o.topo.StreamName(route.Consumer.Kind)
	if req.Stream != "" && !strings.EqualFold(req.Stream, stream) && !strings.EqualFold(req.Stream, string(route.Consumer.Kind)) {
		return bus.Route{}, "", invalid("stream", "consumer %s reads stream %s, not %s", req.Consumer, stream, req.Stream)
	}
	if req.Since.IsZero() {
		return bus.Route{}, "", invalid("since", "required: the start of the window")
	}
	if req.Until.IsZero() {
		req.Until = o.now().UTC()
	}
	if !req.Until.After(req.Since) {
		return bus.Route{}, "", invalid("until", "must be after since")
	}
	filter := o.consumerFilter(route.Consumer)
	if req.Subject != "" {
		if !validFilter(req.Subject) {
			return bus.Route{}, "", invalid("subject", "%q is not a subject or subject filter", req.Subject)
		}
		if _, ok := o.topo.Unprefixed(route.Consumer.Kind, req.Subject); !ok {
			return bus.Route{}, "", invalid("subject", "%q is not in stream %s (%s)", req.Subject, stream, o.topo.Wildcard(route.Consumer.Kind))
		}
		filter = req.Subject
	}
	return route, filter, nil
}
