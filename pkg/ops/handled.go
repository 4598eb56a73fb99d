package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/bus"
)

// Handling states of one consumer for one message.
const (
	// HandlingDone means the consumer acknowledged the message: its
	// handler succeeded (or found it already done).
	HandlingDone = "handled"
	// HandlingDeadLettered means the consumer gave up on the message and
	// sent it to the dead-letter queue.
	HandlingDeadLettered = "dead_lettered"
	// HandlingPending means the consumer has not settled the message yet.
	HandlingPending = "pending"
)

// Handling is what one consumer did with a message.
type Handling struct {
	Consumer string `json:"consumer"`
	State    string `json:"state"`
	// Reason and DLQSeq describe a dead letter.
	Reason string `json:"reason,omitempty"`
	DLQSeq uint64 `json:"dlq_seq,omitempty"`
}

// WaitHandledPollDefault is how often WaitHandled looks at the consumers.
const WaitHandledPollDefault = 250 * time.Millisecond

// ErrNoConsumer means no durable consumer reads the subject: no worker
// will ever handle the message.
var ErrNoConsumer = errors.New("no consumer reads this subject")

// WaitHandled waits until every durable consumer of stream kind whose
// filter matches subject has settled the message at stream sequence seq,
// then says how: handled, or dead-lettered (found in the DLQ stream by its
// Levqor-Dlq-Stream and -Seq headers, with the reason). It is how an
// operator waits for a job they triggered: a consumer has settled the
// message once its ack floor reaches seq. A consumer held back by an older
// unsettled message keeps the wait going until ctx ends; the result then
// lists it as pending and the error is ctx's.
func WaitHandled(ctx context.Context, js jetstream.JetStream, topo bus.Topology, kind bus.Kind, subject string, seq uint64) ([]Handling, error) {
	streamName := topo.StreamName(kind)
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", streamName, err)
	}
	var names []string
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if f := info.Config.FilterSubject; f == "" || subjectMatches(f, subject) {
			names = append(names, info.Name)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("listing consumers of %s: %w", streamName, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: %s (is a workers process running, and has it created its consumers?)", ErrNoConsumer, subject)
	}
	slices.Sort(names)
	out := make([]Handling, len(names))
	settled := 0
	for settled < len(names) {
		settled = 0
		for i, name := range names {
			out[i].Consumer = name
			if out[i].State == HandlingDone {
				settled++
				continue
			}
			out[i].State = HandlingPending
			c, err := stream.Consumer(ctx, name)
			if err != nil {
				return out, fmt.Errorf("reading consumer %s: %w", name, err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				return out, fmt.Errorf("reading consumer %s: %w", name, err)
			}
			if info.AckFloor.Stream >= seq {
				out[i].State = HandlingDone
				settled++
			}
		}
		if settled == len(names) {
			break
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(WaitHandledPollDefault):
		}
	}
	dlq, err := js.Stream(ctx, topo.StreamName(bus.DLQ))
	if err != nil {
		return out, fmt.Errorf("reading the dead-letter stream: %w", err)
	}
	for i := range out {
		m, err := dlq.GetLastMsgForSubject(ctx, topo.Subject(bus.DLQ, out[i].Consumer))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("reading the dead letters of %s: %w", out[i].Consumer, err)
		}
		if m.Header.Get(bus.HeaderDlqStream) == streamName && m.Header.Get(bus.HeaderDlqSeq) == strconv.FormatUint(seq, 10) {
			out[i].State, out[i].Reason, out[i].DLQSeq = HandlingDeadLettered, m.Header.Get(bus.HeaderDlqReason), m.Sequence
		}
	}
	return out, nil
}
