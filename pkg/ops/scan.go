package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// scannerPrefix names the short-lived consumers ops reads streams with, so
// that Status can leave them out.
const scannerPrefix = "levqor-ops-"

const (
	scanBatch   = 256
	scanMaxWait = 3 * time.Second
)

// storedMsg is one message as a stream stores it.
type storedMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
	Time    time.Time
}

// scanOptions select the messages scan reads.
type scanOptions struct {
	// Stream is the stream's name.
	Stream string
	// Filter is a subject filter; empty means every subject.
	Filter string
	// Since starts the scan at the first message stored at or after it;
	// zero starts at the beginning.
	Since time.Time
	// Until ends the scan at the last message stored at or before it; zero
	// reads to the end as it was when the scan started.
	Until time.Time
	// FromSeq, when set, starts the scan at that stream sequence instead
	// of Since.
	FromSeq uint64
}

// scan reads the stream's messages matching so, oldest first, calling fn
// for each until fn returns an error. It reads through an ephemeral,
// unacknowledged consumer that it deletes afterwards, so the workers'
// consumers are not disturbed. total is the number of matching messages
// from the start point when the scan began (the Until bound may end it
// earlier); progress is told about each message read.
func (o *Ops) scan(ctx context.Context, so scanOptions, progress Progress, fn func(m storedMsg) error) error {
	stream, err := o.js.Stream(ctx, so.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", so.Stream, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", so.Stream, err)
	}
	cfg := jetstream.ConsumerConfig{
		Name:              scannerPrefix + randomHex(8),
		Description:       "levqor operator scan",
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     so.Filter,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	switch {
	case so.FromSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = so.FromSeq
	case !so.Since.IsZero():
		since := so.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", so.Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = o.js.DeleteConsumer(dctx, so.Stream, cfg.Name)
	}()
	total := int(cons.CachedInfo().NumPending)
	read := 0
	done := false
	for read < total && !done {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.Fetch(min(scanBatch, total-read), jetstream.FetchMaxWait(scanMaxWait))
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", so.Stream, err)
		}
		got := 0
		var fnErr error
		for m := range batch.Messages() {
			got++
			read++
			if done || fnErr != nil {
				continue // drain the batch
			}
			meta, err := m.Metadata()
			if err != nil {
				fnErr = fmt.Errorf("reading stream %s: %w", so.Stream, err)
				continue
			}
			if !so.Until.IsZero() && meta.Timestamp.After(so.Until) {
				done = true
				continue
			}
			h := m.Headers()
			if h == nil {
				h = nats.Header{}
			}
			fnErr = fn(storedMsg{
				Seq: meta.Sequence.Stream, Subject: m.Subject(), Header: h, Data: m.Data(),
				Time: meta.Timestamp.UTC(),
			})
			progress.report(read, total)
		}
		if fnErr != nil {
			return fnErr
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("reading stream %s: %w", so.Stream, err)
		}
		if got == 0 {
			break // messages removed since the scan began
		}
	}
	return nil
}

// durables lists the durable consumers of stream: the workers', without
// the short-lived ones tools (these included) read with.
func durables(ctx context.Context, stream jetstream.Stream) ([]*jetstream.ConsumerInfo, error) {
	var out []*jetstream.ConsumerInfo
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Config.Durable != "" && !strings.HasPrefix(info.Name, scannerPrefix) {
			out = append(out, info)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("listing consumers of %s: %w", stream.CachedInfo().Config.Name, err)
	}
	return out, nil
}
