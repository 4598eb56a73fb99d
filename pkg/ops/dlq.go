package ops

import (
	"context"
	"encoding/json"
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

// DeadLetter is one message in the DLQ stream, described by its
// Levqor-Dlq-* headers.
type DeadLetter struct {
	// Seq is the dead letter's sequence in the DLQ stream: what dlq show,
	// replay and purge take.
	Seq uint64 `json:"seq"`
	// DeadLetteredAt is when the worker gave up on the message.
	DeadLetteredAt time.Time `json:"dead_lettered_at"`
	// Consumer is the consumer that gave up.
	Consumer string `json:"consumer"`
	// Stream and StreamSeq locate the original message.
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"stream_seq"`
	// Subject is the original subject, where a replay publishes again.
	Subject string `json:"subject"`
	// MsgID is the message's logical id, its inbox key.
	MsgID string `json:"msg_id"`
	// Deliveries is how many times the consumer received it.
	Deliveries int `json:"deliveries"`
	// Reason is why the worker gave up: the handler's last error.
	Reason string `json:"reason"`
	// CorrelationID and Account come from the original headers.
	CorrelationID string `json:"correlation_id,omitempty"`
	Account       string `json:"account,omitempty"`
	// Size is the payload's size in bytes.
	Size int `json:"size"`
}

// DeadLetterDetail is a dead letter with everything it carries.
type DeadLetterDetail struct {
	DeadLetter
	// Header holds every header, original and Levqor-Dlq-*.
	Header map[string][]string `json:"header"`
	// Payload is the payload: as is when it is JSON, else a JSON string.
	Payload json.RawMessage `json:"payload"`
	// PayloadJSON says whether Payload is the message's own JSON.
	PayloadJSON bool `json:"payload_json"`
}

func deadLetterOf(m storedMsg) DeadLetter {
	h := m.Header
	d := DeadLetter{
		Seq:            m.Seq,
		DeadLetteredAt: m.Time,
		Consumer:       h.Get(bus.HeaderDlqConsumer),
		Stream:         h.Get(bus.HeaderDlqStream),
		Subject:        h.Get(bus.HeaderDlqSubject),
		MsgID:          h.Get(bus.HeaderOriginalMsgID),
		Reason:         h.Get(bus.HeaderDlqReason),
		CorrelationID:  h.Get(bus.HeaderCorrelationID),
		Account:        h.Get(bus.HeaderAccount),
		Size:           len(m.Data),
	}
	if at, err := time.Parse(time.RFC3339Nano, h.Get(bus.HeaderDlqAt)); err == nil {
		d.DeadLetteredAt = at.UTC()
	}
	d.StreamSeq, _ = strconv.ParseUint(h.Get(bus.HeaderDlqSeq), 10, 64)
	d.Deliveries, _ = strconv.Atoi(h.Get(bus.HeaderDlqDeliveries))
	return d
}

// DLQFilter selects dead letters. Zero fields do not filter.
type DLQFilter struct {
	// Consumer keeps the dead letters of this consumer.
	Consumer string `json:"consumer,omitempty"`
	// Subject keeps dead letters whose original subject matches this
	// filter ('*' and '>' wildcards allowed).
	Subject string `json:"subject,omitempty"`
	// Since and Until bound when the message was dead-lettered.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Reason keeps dead letters whose reason contains this text, ignoring
	// case.
	Reason string `json:"reason,omitempty"`
}

func (f DLQFilter) validate() error {
	if f.Consumer != "" && !consumerNameRe.MatchString(f.Consumer) {
		return invalid("consumer", "%q is not a consumer name", f.Consumer)
	}
	if f.Subject != "" && !validFilter(f.Subject) {
		return invalid("subject", "%q is not a subject or subject filter (e.g. levqor.stripe.invoice.*)", f.Subject)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return invalid("until", "is before since")
	}
	if len(f.Reason) > 1024 {
		return invalid("reason", "longer than 1024 bytes")
	}
	return nil
}

func (f DLQFilter) match(d DeadLetter) bool {
	if f.Consumer != "" && d.Consumer != f.Consumer {
		return false
	}
	if f.Subject != "" && !subjectMatches(f.Subject, d.Subject) {
		return false
	}
	if f.Reason != "" && !strings.Contains(strings.ToLower(d.Reason), strings.ToLower(f.Reason)) {
		return false
	}
	if !f.Since.IsZero() && d.DeadLetteredAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && d.DeadLetteredAt.After(f.Until) {
		return false
	}
	return true
}

// DLQList is a page of dead letters.
type DLQList struct {
	// Total counts every dead letter matching the filter.
	Total int `json:"total"`
	// DeadLetters are the first of them, oldest first, up to the limit.
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// ListDLQ returns the dead letters matching f, oldest first, at most limit
// of them (0: all) with the total count.
func (o *Ops) ListDLQ(ctx context.Context, f DLQFilter, limit int) (*DLQList, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, invalid("limit", "must not be negative")
	}
	out := &DLQList{DeadLetters: []DeadLetter{}}
	err := o.eachDeadLetter(ctx, f, nil, func(d DeadLetter, _ storedMsg) error {
		out.Total++
		if limit == 0 || len(out.DeadLetters) < limit {
			out.DeadLetters = append(out.DeadLetters, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachDeadLetter scans the DLQ for dead letters matching f.
func (o *Ops) eachDeadLetter(ctx context.Context, f DLQFilter, progress Progress, fn func(DeadLetter, storedMsg) error) error {
	filter := o.topo.Wildcard(bus.DLQ)
	if f.Consumer != "" {
		filter = o.topo.Subject(bus.DLQ, f.Consumer)
	}
	// The stored time is when the dead letter was published, a moment
	// after Levqor-Dlq-At: start the scan a little early and let match
	// decide exactly.
	since := f.Since
	if !since.IsZero() {
		since = since.Add(-time.Minute)
	}
	return o.scan(ctx, scanOptions{Stream: o.topo.StreamName(bus.DLQ), Filter: filter, Since: since}, progress, func(m storedMsg) error {
		d := deadLetterOf(m)
		if !f.match(d) {
			return nil
		}
		return fn(d, m)
	})
}

// getDeadLetter reads the dead letter at seq.
func (o *Ops) getDeadLetter(ctx context.Context, seq uint64) (storedMsg, error) {
	name := o.topo.StreamName(bus.DLQ)
	stream, err := o.js.Stream(ctx, name)
	if err != nil {
		return storedMsg{}, fmt.Errorf("reading stream %s: %w", name, err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return storedMsg{}, fmt.Errorf("no dead letter with seq %d (replayed or purged already?): %w", seq, ErrNotFound)
	}
	if err != nil {
		return storedMsg{}, fmt.Errorf("reading dead letter %d: %w", seq, err)
	}
	h := raw.Header
	if h == nil {
		h = nats.Header{}
	}
	return storedMsg{Seq: raw.Sequence, Subject: raw.Subject, Header: h, Data: raw.Data, Time: raw.Time.UTC()}, nil
}

// ShowDLQ returns the dead letter at seq with its headers and payload. It
// is audited: payloads hold customers' data.
func (o *Ops) ShowDLQ(ctx context.Context, actor string, seq uint64) (*DeadLetterDetail, error) {
	if seq == 0 {
		return nil, invalid("seq", "must be a positive DLQ sequence")
	}
	m, err := o.getDeadLetter(ctx, seq)
	if err != nil {
		return nil, err
	}
	d := &DeadLetterDetail{DeadLetter: deadLetterOf(m), Header: map[string][]string(m.Header)}
	if json.Valid(m.Data) {
		d.Payload, d.PayloadJSON = json.RawMessage(m.Data), true
	} else {
		b, _ := json.Marshal(string(m.Data))
		d.Payload = b
	}
	if err := o.audit(ctx, actor, ActionDLQShow, map[string]any{"seq": seq}, map[string]any{"shown": 1}, outcomeOf(false, 1, 0)); err != nil {
		return nil, err
	}
	return d, nil
}

// DLQSelection picks dead letters for replay or purge: explicit sequences,
// or All of those matching Filter.
type DLQSelection struct {
	// Seqs are DLQ sequences. Exclusive with All. With a Filter, each must
	// also match it, or it fails: a guard, so that an operator who
	// confirmed a list of dead letters selected by filters acts on exactly
	// that list.
	Seqs []uint64 `json:"seqs,omitempty"`
	// All selects every dead letter matching Filter.
	All bool `json:"all,omitempty"`
	// Filter narrows All, or guards Seqs.
	Filter DLQFilter `json:"filter,omitzero"`
	// DryRun reports what would be done and does nothing.
	DryRun bool `json:"dry_run"`
	// Note is the operator's reason, kept in the audit trail.
	Note string `json:"note,omitempty"`
}

func (s DLQSelection) validate() error {
	switch {
	case len(s.Seqs) > 0 && s.All:
		return invalid("all", "give dead-letter sequences or all, not both")
	case len(s.Seqs) == 0 && !s.All:
		return invalid("seqs", "give one or more dead-letter sequences, or all (with filters) to select every match")
	case len(s.Note) > 500:
		return invalid("note", "at most 500 characters")
	case len(s.Seqs) > 10000:
		return invalid("seqs", "at most 10000 sequences at a time")
	}
	for _, q := range s.Seqs {
		if q == 0 {
			return invalid("seqs", "sequences are positive")
		}
	}
	return s.Filter.validate()
}

// DLQItem is what happened to one selected dead letter.
type DLQItem struct {
	DeadLetter
	// Status is one of the DLQStatus values.
	Status string `json:"status"`
	// Error says why the item failed.
	Error string `json:"error,omitempty"`
	// ReplayedSeq is the replay's sequence in the original stream.
	ReplayedSeq uint64 `json:"replayed_seq,omitempty"`
}

// DLQ item statuses.
const (
	DLQStatusReplayed    = "replayed"
	DLQStatusWouldReplay = "would_replay"
	DLQStatusPurged      = "purged"
	DLQStatusWouldPurge  = "would_purge"
	DLQStatusFailed      = "failed"
)

// DLQResult reports a replay or purge.
type DLQResult struct {
	// Action is ActionDLQReplay or ActionDLQPurge.
	Action string `json:"action"`
	DryRun bool   `json:"dry_run"`
	// Selected counts the dead letters selected; Succeeded those replayed
	// (or purged), Failed the rest. In a dry run Succeeded is 0.
	Selected  int `json:"selected"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// Items lists the selected dead letters (the first 1000).
	Items []DLQItem `json:"items"`
}

// counts is the audit trail's view of r.
func (r *DLQResult) counts() map[string]int {
	return map[string]int{"selected": r.Selected, "succeeded": r.Succeeded, "failed": r.Failed}
}

func (r *DLQResult) add(it DLQItem) {
	switch it.Status {
	case DLQStatusFailed:
		r.Failed++
	case DLQStatusReplayed, DLQStatusPurged:
		r.Succeeded++
	}
	if len(r.Items) < maxItems {
		r.Items = append(r.Items, it)
	}
}

// selected is one dead letter chosen by a DLQSelection; err is set when an
// explicit sequence could not be read.
type selected struct {
	msg storedMsg
	dl  DeadLetter
	err error
}

// selectDeadLetters resolves s into dead letters, in DLQ order.
func (o *Ops) selectDeadLetters(ctx context.Context, s DLQSelection) ([]selected, error) {
	var out []selected
	if s.All {
		err := o.eachDeadLetter(ctx, s.Filter, nil, func(d DeadLetter, m storedMsg) error {
			out = append(out, selected{msg: m, dl: d})
			return nil
		})
		return out, err
	}
	seqs := slices.Clone(s.Seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	for _, q := range seqs {
		m, err := o.getDeadLetter(ctx, q)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err == nil && m.Header.Get(bus.HeaderDlqConsumer) == "" {
			err = fmt.Errorf("message %d in the DLQ stream has no %s header: not a dead letter", q, bus.HeaderDlqConsumer)
		}
		d := DeadLetter{Seq: q}
		if err == nil {
			d = deadLetterOf(m)
			if !s.Filter.match(d) {
				err = fmt.Errorf("dead letter %d does not match the filters", q)
			}
		}
		out = append(out, selected{msg: m, dl: d, err: err})
	}
	return out, nil
}

// ReplayDLQ republishes the selected dead letters to their original
// subjects and removes each from the DLQ once JetStream has acknowledged
// its replay. The replay carries the original payload and headers,
// Levqor-Replay-Of with the DLQ sequence, and the original message id in
// Levqor-Msg-Id, so consumers that processed the original skip it; its
// own dedupe id is replay:<DLQ stream>:<seq>, so replaying one dead letter
// twice publishes once.
func (o *Ops) ReplayDLQ(ctx context.Context, actor string, s DLQSelection, progress Progress) (*DLQResult, error) {
	return o.batchDLQ(ctx, actor, ActionDLQReplay, s, progress, o.replayOne)
}

// PurgeDLQ deletes the selected dead letters for good, erasing their
// payloads.
func (o *Ops) PurgeDLQ(ctx context.Context, actor string, s DLQSelection, progress Progress) (*DLQResult, error) {
	return o.batchDLQ(ctx, actor, ActionDLQPurge, s, progress, o.purgeOne)
}

func (o *Ops) batchDLQ(ctx context.Context, actor, action string, s DLQSelection, progress Progress,
	one func(context.Context, jetstream.Stream, selected) DLQItem) (*DLQResult, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	sel, err := o.selectDeadLetters(ctx, s)
	if err != nil {
		return nil, err
	}
	res := &DLQResult{Action: action, DryRun: s.DryRun, Selected: len(sel), Items: []DLQItem{}}
	name := o.topo.StreamName(bus.DLQ)
	stream, err := o.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", name, err)
	}
	for i, x := range sel {
		var it DLQItem
		switch {
		case x.err != nil:
			it = DLQItem{DeadLetter: x.dl, Status: DLQStatusFailed, Error: x.err.Error()}
		case s.DryRun && action == ActionDLQReplay:
			it = DLQItem{DeadLetter: x.dl, Status: DLQStatusWouldReplay}
			if _, err := o.replayTarget(x.dl); err != nil {
				it.Status, it.Error = DLQStatusFailed, err.Error()
			}
		case s.DryRun:
			it = DLQItem{DeadLetter: x.dl, Status: DLQStatusWouldPurge}
		default:
			if ctx.Err() != nil {
				it = DLQItem{DeadLetter: x.dl, Status: DLQStatusFailed, Error: "not attempted: " + ctx.Err().Error()}
			} else {
				it = one(ctx, stream, x)
			}
		}
		res.add(it)
		progress.report(i+1, len(sel))
	}
	params := map[string]any{"selection": s}
	if err := o.audit(ctx, actor, action, params, res.counts(), outcomeOf(s.DryRun, res.Succeeded, res.Failed)); err != nil {
		return res, err
	}
	return res, nil
}

// replayTarget is the subject a dead letter is replayed to: its original
// subject, which must belong to one of Levqor's streams other than the DLQ.
func (o *Ops) replayTarget(d DeadLetter) (string, error) {
	if d.Subject == "" {
		return "", fmt.Errorf("dead letter %d has no %s header: cannot tell where to replay it", d.Seq, bus.HeaderDlqSubject)
	}
	for _, k := range bus.Kinds {
		if k == bus.DLQ {
			continue
		}
		if _, ok := o.topo.Unprefixed(k, d.Subject); ok && validFilter(d.Subject) {
			return d.Subject, nil
		}
	}
	return "", fmt.Errorf("dead letter %d: original subject %q is not one of Levqor's streams", d.Seq, d.Subject)
}

// ReplayHeaders returns the headers of the replay of a dead letter: the
// original headers without the Levqor-Dlq-* ones or JetStream's own, with
// the logical id in Levqor-Msg-Id, Levqor-Replay-Of set to dlqSeq and
// Levqor-Replay-For to the consumer that gave up on it: only that consumer
// runs the replay, the others acknowledge it untouched.
func ReplayHeaders(dead nats.Header, dlqSeq uint64) nats.Header {
	h := nats.Header{}
	for k, v := range dead {
		if strings.HasPrefix(k, "Levqor-Dlq-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = slices.Clone(v)
	}
	h.Set(bus.HeaderReplayOf, strconv.FormatUint(dlqSeq, 10))
	if c := dead.Get(bus.HeaderDlqConsumer); c != "" {
		h.Set(bus.HeaderReplayFor, c)
	}
	return h
}

func (o *Ops) replayOne(ctx context.Context, stream jetstream.Stream, x selected) DLQItem {
	it := DLQItem{DeadLetter: x.dl, Status: DLQStatusFailed}
	subject, err := o.replayTarget(x.dl)
	if err != nil {
		it.Error = err.Error()
		return it
	}
	h := ReplayHeaders(x.msg.Header, x.dl.Seq)
	if h.Get(bus.HeaderOriginalMsgID) == "" {
		it.Error = fmt.Sprintf("dead letter %d has no %s header: its replay could not be deduplicated by the inbox", x.dl.Seq, bus.HeaderOriginalMsgID)
		return it
	}
	id := "replay:" + o.topo.StreamName(bus.DLQ) + ":" + strconv.FormatUint(x.dl.Seq, 10)
	res, err := o.pub.Publish(ctx, subject, id, h, x.msg.Data)
	if err != nil {
		it.Error = "replay not published, dead letter kept: " + err.Error()
		return it
	}
	it.ReplayedSeq = res.Seq
	if err := stream.DeleteMsg(ctx, x.dl.Seq); err != nil && !msgGone(err) {
		it.Error = fmt.Sprintf("replayed as %s seq %d, but the dead letter could not be removed (replaying it again is safe: the replay is deduplicated): %v", res.Stream, res.Seq, err)
		return it
	}
	it.Status = DLQStatusReplayed
	return it
}

func (o *Ops) purgeOne(ctx context.Context, stream jetstream.Stream, x selected) DLQItem {
	it := DLQItem{DeadLetter: x.dl, Status: DLQStatusPurged}
	if err := stream.SecureDeleteMsg(ctx, x.dl.Seq); err != nil && !msgGone(err) {
		it.Status, it.Error = DLQStatusFailed, "not purged: "+err.Error()
	}
	return it
}

// msgGone reports whether a delete failed only because the message is
// already gone, which is what the caller wanted.
func msgGone(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound ||
		strings.Contains(strings.ToLower(apiErr.Description), "no message found"))
}
