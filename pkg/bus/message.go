package bus

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// Message is one delivery of a JetStream message to a handler.
type Message struct {
	// Subject the message was published on.
	Subject string
	// Header holds the message headers; never nil.
	Header nats.Header
	// Data is the payload: for Stripe events, the exact bytes Stripe sent.
	Data []byte

	// Stream and Consumer name where the delivery came from.
	Stream   string
	Consumer string
	// StreamSeq is the message's sequence in its stream.
	StreamSeq uint64
	// Deliveries counts deliveries to this consumer, this one included.
	Deliveries uint64
	// Published is when JetStream stored the message.
	Published time.Time
	// MaxDeliver is the router's limit of deliveries before the DLQ;
	// zero when the message did not come through a router.
	MaxDeliver int

	raw jetstream.Msg
}

func newMessage(m jetstream.Msg) (*Message, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	h := m.Headers()
	if h == nil {
		h = nats.Header{}
	}
	return &Message{
		Subject:    m.Subject(),
		Header:     h,
		Data:       m.Data(),
		Stream:     meta.Stream,
		Consumer:   meta.Consumer,
		StreamSeq:  meta.Sequence.Stream,
		Deliveries: meta.NumDelivered,
		Published:  meta.Timestamp.UTC(),
		raw:        m,
	}, nil
}

// LastAttempt reports whether a failure of this delivery dead-letters
// the message: the router's MaxDeliver is reached, so a handler that
// keeps a status of its own can record the failure as final.
func (m *Message) LastAttempt() bool {
	return m.MaxDeliver > 0 && int(m.Deliveries) >= m.MaxDeliver
}

// ID is the message's logical id, the key of the handler inbox: the
// original Nats-Msg-Id, kept across dead-lettering and replay in
// Levqor-Msg-Id. A message published without an id is identified by its
// stream and sequence.
func (m *Message) ID() string {
	if id := m.Header.Get(HeaderOriginalMsgID); id != "" {
		return id
	}
	if id := m.Header.Get(HeaderMsgID); id != "" {
		return id
	}
	return m.Stream + ":" + strconv.FormatUint(m.StreamSeq, 10)
}

// ForOtherConsumer reports whether the message is a replay meant for
// another consumer than the one it was delivered to (see HeaderReplayFor):
// the router acknowledges it without running a handler.
func (m *Message) ForOtherConsumer() bool {
	to := m.Header.Get(HeaderReplayFor)
	return to != "" && to != m.Consumer
}

// ForcedReplay reports whether the message is a replay for its consumer
// that an operator asked to run even if the consumer already processed it.
func (m *Message) ForcedReplay() bool {
	return m.Header.Get(HeaderReplayForce) == "true" && m.Header.Get(HeaderReplayFor) == m.Consumer
}

// CorrelationID follows the work across hops; empty if the sender set none.
func (m *Message) CorrelationID() string { return m.Header.Get(HeaderCorrelationID) }

// Account is the tenant the message belongs to, where known.
func (m *Message) Account() string { return m.Header.Get(HeaderAccount) }

// InProgress tells JetStream the handler is still working, resetting the ack
// timer. The router already does this periodically while a handler runs;
// handlers may call it at milestones of long work.
func (m *Message) InProgress() error {
	if m.raw == nil {
		return nil
	}
	return m.raw.InProgress()
}

type loggerKey struct{}

// WithLogger returns ctx carrying log. The router's logging middleware puts a
// logger with the message's fields there.
func WithLogger(ctx context.Context, log logrus.FieldLogger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// Logger returns the logger carried by ctx, or a logger that discards
// everything.
func Logger(ctx context.Context) logrus.FieldLogger {
	if l, ok := ctx.Value(loggerKey{}).(logrus.FieldLogger); ok {
		return l
	}
	return discard
}

var discard = func() logrus.FieldLogger {
	l := logrus.New()
	l.Out = nopWriter{}
	l.Level = logrus.PanicLevel
	return l
}()

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
