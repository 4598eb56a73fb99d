package bus

// Header names are part of Levqor's contract: operators read them in `nats`
// CLI output and tools filter on them.
const (
	// HeaderMsgID is JetStream's dedupe id: a Stripe event id, a command id,
	// a tick id or an outbox row id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderCorrelationID follows a piece of work through every hop.
	HeaderCorrelationID = "Levqor-Correlation-Id"
	// HeaderAccount is the tenant a message belongs to, where known.
	HeaderAccount = "Levqor-Account"
	// HeaderOriginalMsgID carries the message's logical id where Nats-Msg-Id
	// had to change: on dead letters and on replays, whose own dedupe ids
	// must differ from the original's so JetStream does not drop them.
	HeaderOriginalMsgID = "Levqor-Msg-Id"
	// HeaderReplayOf is set on a replayed message: the DLQ or stream
	// sequence it replays.
	HeaderReplayOf = "Levqor-Replay-Of"
	// HeaderReplayFor names the one consumer a replay is for. Every other
	// consumer of the subject acknowledges it without running a handler.
	HeaderReplayFor = "Levqor-Replay-For"
	// HeaderReplayForce, "true" on a replay, tells the inbox of the
	// consumer named in Levqor-Replay-For to run the handler again even
	// though that consumer already processed the message.
	HeaderReplayForce = "Levqor-Replay-Force"

	// HeaderDlqReason says why a message was dead-lettered.
	HeaderDlqReason = "Levqor-Dlq-Reason"
	// HeaderDlqConsumer is the consumer that gave up on the message.
	HeaderDlqConsumer = "Levqor-Dlq-Consumer"
	// HeaderDlqStream is the stream the message came from.
	HeaderDlqStream = "Levqor-Dlq-Stream"
	// HeaderDlqSeq is the message's sequence in that stream.
	HeaderDlqSeq = "Levqor-Dlq-Seq"
	// HeaderDlqSubject is the subject the message was published on; a
	// replay publishes it there again.
	HeaderDlqSubject = "Levqor-Dlq-Subject"
	// HeaderDlqDeliveries is how many times the consumer received it.
	HeaderDlqDeliveries = "Levqor-Dlq-Deliveries"
	// HeaderDlqAt is when it was dead-lettered (RFC 3339, UTC).
	HeaderDlqAt = "Levqor-Dlq-At"
)
