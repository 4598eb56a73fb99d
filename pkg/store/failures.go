package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Failure is the latest failed attempt of a consumer at a message, as a
// worker reports it for operators.
type Failure struct {
	// Consumer is the durable consumer whose handler failed.
	Consumer string `json:"consumer"`
	// MsgID is the message's dedupe id (its Nats-Msg-Id).
	MsgID string `json:"msg_id"`
	// Subject is the subject the message arrived on.
	Subject string `json:"subject"`
	// Stream is the stream the message was read from.
	Stream string `json:"stream"`
	// StreamSeq is the message's sequence in Stream.
	StreamSeq uint64 `json:"stream_seq"`
	// Deliveries is JetStream's delivery count at this attempt.
	Deliveries int `json:"deliveries"`
	// AccountID is the account the message belongs to (its Levqor-Account
	// header); empty when it names none.
	AccountID string `json:"account_id,omitempty"`
	// Error is the handler's error message.
	Error string `json:"error"`
	// DeadLettered is true once the message has gone to the DLQ.
	DeadLettered bool `json:"dead_lettered"`
	// At is when the attempt failed; zero means now.
	At time.Time `json:"at"`
}

// MaxErrorLength bounds the error text kept per failure, so that a handler
// that puts a whole payload in its error does not bloat the table.
const MaxErrorLength = 8 << 10

const recordFailureSQL = `INSERT INTO message_failures
(consumer, msg_id, subject, stream, stream_seq, deliveries, last_error, first_failed_at, last_failed_at, dead_lettered, account_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (consumer, msg_id) DO UPDATE SET
	subject = excluded.subject,
	stream = excluded.stream,
	stream_seq = excluded.stream_seq,
	deliveries = excluded.deliveries,
	last_error = excluded.last_error,
	last_failed_at = excluded.last_failed_at,
	dead_lettered = excluded.dead_lettered,
	account_id = excluded.account_id`

// RecordFailure stores f as the latest failure of f.Consumer at f.MsgID. The
// first failure's time is kept; everything else is replaced, so that a
// replayed message that fails again shows its new state. It runs in its own
// transaction because the handler's transaction has rolled back.
func (s *Store) RecordFailure(ctx context.Context, f Failure) error {
	if f.Consumer == "" || f.MsgID == "" {
		return fmt.Errorf("store: recording failure: consumer and msg_id are required (got %q, %q)", f.Consumer, f.MsgID)
	}
	at := ts(orNow(f.At))
	_, err := s.db.ExecContext(ctx, s.rebind(recordFailureSQL),
		f.Consumer, f.MsgID, f.Subject, f.Stream, f.StreamSeq, f.Deliveries,
		cleanError(f.Error), at, at, f.DeadLettered, f.AccountID)
	if err != nil {
		return fmt.Errorf("store: recording failure of %s/%s: %w", f.Consumer, f.MsgID, err)
	}
	return nil
}

// AccountDeadLetters is how many messages of one account one consumer
// dead-lettered in a window.
type AccountDeadLetters struct {
	// AccountID is the account the messages belong to.
	AccountID string `db:"account_id" json:"account_id"`
	// Consumer is the durable consumer that gave up on them.
	Consumer string `db:"consumer" json:"consumer"`
	// DeadLettered is how many of its messages went to the DLQ.
	DeadLettered int `db:"dead_lettered" json:"dead_lettered"`
}

const accountDeadLettersSQL = `SELECT account_id, consumer, COUNT(*) AS dead_lettered
FROM message_failures
WHERE dead_lettered AND account_id <> '' AND last_failed_at > ? AND last_failed_at <= ?
GROUP BY account_id, consumer
ORDER BY account_id, consumer`

// AccountDeadLetters counts, per (account, consumer), the messages whose
// latest failure sent them to the DLQ in the window (since, until]. Failures
// of messages that name no account are left out: they are the platform's,
// not a customer's. The result is sorted by account, then consumer. It runs
// within tx so the housekeeping watch reads it with the state it saves.
func (tx *Tx) AccountDeadLetters(ctx context.Context, since, until time.Time) ([]AccountDeadLetters, error) {
	if !since.Before(until) {
		return nil, fmt.Errorf("store: counting dead letters per account: since %s must be before until %s",
			since.UTC().Format(time.RFC3339Nano), until.UTC().Format(time.RFC3339Nano))
	}
	var out []AccountDeadLetters
	if err := tx.tx.SelectContext(ctx, &out, tx.rebind(accountDeadLettersSQL), ts(since), ts(until)); err != nil {
		return nil, fmt.Errorf("store: counting dead letters per account: %w", err)
	}
	return out, nil
}

// cleanError makes an error message storable in both dialects: valid UTF-8,
// no NUL bytes (PostgreSQL rejects both in TEXT), at most MaxErrorLength
// bytes.
func cleanError(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.ReplaceAll(msg, "\x00", "")
	if len(msg) <= MaxErrorLength {
		return msg
	}
	cut := MaxErrorLength
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

// States reported in ConsumerState.State.
const (
	// ConsumerStateProcessed means the consumer committed its effects for
	// the message. It wins over earlier failures.
	ConsumerStateProcessed = "processed"
	// ConsumerStateFailing means the consumer has failed at the message and
	// JetStream will deliver it again.
	ConsumerStateFailing = "failing"
	// ConsumerStateDeadLettered means the consumer gave up and sent the
	// message to the DLQ.
	ConsumerStateDeadLettered = "dead_lettered"
)

// ConsumerState is where one consumer stands with one message, for
// operators and for GET /v1/commands/<id>.
type ConsumerState struct {
	// Consumer is the durable consumer's name.
	Consumer string `json:"consumer"`
	// State is ConsumerStateProcessed, ConsumerStateFailing or
	// ConsumerStateDeadLettered.
	State string `json:"state"`
	// ProcessedAt is set when State is ConsumerStateProcessed.
	ProcessedAt *time.Time `json:"processed_at,omitempty"`
	// Deliveries, LastError and LastFailedAt describe the latest failure,
	// if any; they stay set after a later success, as history.
	Deliveries   int        `json:"deliveries,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	LastFailedAt *time.Time `json:"last_failed_at,omitempty"`
}

const consumerFailuresSQL = `SELECT consumer, deliveries, last_error, last_failed_at, dead_lettered
FROM message_failures
WHERE msg_id = ?`

const consumerInboxSQL = `SELECT consumer, processed_at
FROM inbox
WHERE msg_id = ?`

// ConsumerStates returns where each consumer stands with the message msgID:
// one entry per consumer that processed it (an inbox row) or failed at it (a
// failure row), sorted by consumer. A message no consumer has touched yet
// gives an empty slice.
func (s *Store) ConsumerStates(ctx context.Context, msgID string) ([]ConsumerState, error) {
	// Failures first: a consumer that succeeds between the two reads then
	// shows as processed, which is the newer truth.
	var failures []struct {
		Consumer     string       `db:"consumer"`
		Deliveries   int          `db:"deliveries"`
		LastError    string       `db:"last_error"`
		LastFailedAt sql.NullTime `db:"last_failed_at"`
		DeadLettered bool         `db:"dead_lettered"`
	}
	if err := s.db.SelectContext(ctx, &failures, s.rebind(consumerFailuresSQL), msgID); err != nil {
		return nil, fmt.Errorf("store: reading failures of %s: %w", msgID, err)
	}
	var processed []struct {
		Consumer    string       `db:"consumer"`
		ProcessedAt sql.NullTime `db:"processed_at"`
	}
	if err := s.db.SelectContext(ctx, &processed, s.rebind(consumerInboxSQL), msgID); err != nil {
		return nil, fmt.Errorf("store: reading inbox of %s: %w", msgID, err)
	}

	byConsumer := make(map[string]*ConsumerState, len(failures)+len(processed))
	for _, f := range failures {
		state := ConsumerStateFailing
		if f.DeadLettered {
			state = ConsumerStateDeadLettered
		}
		byConsumer[f.Consumer] = &ConsumerState{
			Consumer:     f.Consumer,
			State:        state,
			Deliveries:   f.Deliveries,
			LastError:    f.LastError,
			LastFailedAt: fromNull(f.LastFailedAt),
		}
	}
	for _, p := range processed {
		cs, ok := byConsumer[p.Consumer]
		if !ok {
			cs = &ConsumerState{Consumer: p.Consumer}
			byConsumer[p.Consumer] = cs
		}
		cs.State = ConsumerStateProcessed
		cs.ProcessedAt = fromNull(p.ProcessedAt)
	}

	states := make([]ConsumerState, 0, len(byConsumer))
	for _, cs := range byConsumer {
		states = append(states, *cs)
	}
	slices.SortFunc(states, func(a, b ConsumerState) int { return strings.Compare(a.Consumer, b.Consumer) })
	return states, nil
}
