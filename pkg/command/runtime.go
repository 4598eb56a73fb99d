package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
)

// Outcome is what a succeeded command answers: an HTTP status (200, 201)
// and a result, marshalled to JSON.
type Outcome struct {
	Status int
	Result any
}

// Effect records a command's effects in the transaction that also claims
// the message in the inbox and records the outcome. It may return an
// *Error, which rolls its writes back and fails the command.
type Effect func(ctx context.Context, tx *store.Tx) (Outcome, error)

// Func carries out a command. It runs outside any transaction, so it may
// call external services, which must be idempotent (keyed by the command
// id) because a delivery can be repeated; it returns the Effect to commit.
type Func func(ctx context.Context, e *Envelope) (Effect, error)

// Runtime turns Funcs into bus handlers that keep the command bookkeeping.
type Runtime struct {
	// Store holds the commands table and the inbox.
	Store *store.Store
	// NC publishes outcome notifications; nil publishes none (waiting
	// clients then learn the outcome at their deadline).
	NC *nats.Conn
	// Prefix is the deployment's subject prefix.
	Prefix string
}

func (rt *Runtime) clock() time.Time { return time.Now() }

// Handler adapts fn to a bus handler: it decodes the envelope, marks the
// command running, calls fn, and commits fn's effects with the outcome
// through the inbox, then notifies waiting clients. A redelivered message
// whose command this consumer already committed is only acknowledged.
func (rt *Runtime) Handler(fn Func) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		env, err := DecodeEnvelope(m.Data)
		if err != nil {
			return bus.Permanent(err)
		}
		if env.ID != m.ID() {
			return bus.Permanentf("command id %q does not match message id %q", env.ID, m.ID())
		}
		log := bus.Logger(ctx).WithFields(logrus.Fields{"command_id": env.ID, "command": env.Type()})
		if env.AccountID != "" {
			log = log.WithField("account_id", env.AccountID)
		}
		done, err := rt.processed(ctx, m)
		if err != nil {
			return err
		}
		if done {
			rt.notify(log, env.ID)
			return nil
		}
		cmd, err := rt.recorded(ctx, m)
		if err != nil {
			return err
		}
		// Accepted before the account was suspended, it is refused now
		// as the API would refuse it.
		var failure *Error
		if err := CheckSuspension(ctx, rt.Store, cmd.Scope, env.AccountID, env.Domain, env.Action); errors.As(err, &failure) {
			return rt.fail(ctx, log, m, env, failure)
		} else if err != nil {
			return err
		}
		if _, err := rt.Store.MarkCommandRunning(ctx, env.ID, rt.clock()); err != nil {
			return err
		}
		effect, err := fn(ctx, env)
		if errors.As(err, &failure) {
			return rt.fail(ctx, log, m, env, failure)
		}
		if err != nil {
			return err
		}
		var status int
		err = inbox.Handler(rt.Store, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			out, err := effect(ctx, tx)
			if err != nil {
				return err
			}
			result, err := json.Marshal(out.Result)
			if err != nil {
				return bus.Permanent(fmt.Errorf("encoding result of %s: %w", env.ID, err))
			}
			if out.Status == 0 {
				out.Status = http.StatusOK
			}
			status = out.Status
			return tx.CompleteCommand(ctx, store.CommandOutcome{
				ID: env.ID, Status: store.CommandSucceeded, HTTPStatus: out.Status, Result: result, At: rt.clock(),
			})
		})(ctx, m)
		if errors.As(err, &failure) {
			return rt.fail(ctx, log, m, env, failure)
		}
		if err != nil {
			return err
		}
		log.WithField("http_status", status).Info("command succeeded")
		rt.notify(log, env.ID)
		return nil
	}
}

// fail records the command's failure with the inbox claim, so the message
// is acknowledged: the client has its answer and nothing is left to retry.
func (rt *Runtime) fail(ctx context.Context, log logrus.FieldLogger, m *bus.Message, env *Envelope, f *Error) error {
	err := inbox.Handler(rt.Store, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
		return tx.CompleteCommand(ctx, store.CommandOutcome{
			ID: env.ID, Status: store.CommandFailed, HTTPStatus: f.Status, At: rt.clock(),
			Error: &store.CommandError{Code: f.Code, Message: f.Message, Field: f.Field},
		})
	})(ctx, m)
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"http_status": f.Status, "error_code": f.Code}).Info("command failed")
	rt.notify(log, env.ID)
	return nil
}

// recorded checks that m is a command Levqor recorded: the authority of a
// command (its account, the key that asked, the operator flag in its
// parameters) is the commands row the API, or one of Levqor's own jobs,
// wrote before publishing it, never what a message on the bus claims. A
// message whose command was never recorded, or that differs from the
// recorded one by a byte, is refused for good: dead-lettered with the
// reason, and without effect.
func (rt *Runtime) recorded(ctx context.Context, m *bus.Message) (*store.Command, error) {
	cmd, err := rt.Store.GetCommand(ctx, m.ID())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, bus.Permanentf("%s: %s", ForgedReason, "no command "+m.ID()+" was recorded; only the API and Levqor's jobs record commands")
	case err != nil:
		return nil, err
	case string(cmd.Payload) == "{}":
		// Erasure blanks the commands of the account it erases: this one
		// came after, and is failed (not a forgery: the row is real).
		return nil, bus.Permanentf("command %s belongs to an erased account; nothing is done", m.ID())
	case !bytes.Equal(cmd.Payload, m.Data):
		return nil, bus.Permanentf("%s: %s", ForgedReason, "the message differs from command "+m.ID()+" as recorded")
	}
	return cmd, nil
}

// ForgedReason starts the dead-letter reason of a command message that is
// not the one Levqor recorded.
const ForgedReason = "refused: not a command Levqor recorded"

// processed reports whether this message's consumer has committed it.
func (rt *Runtime) processed(ctx context.Context, m *bus.Message) (bool, error) {
	states, err := rt.Store.ConsumerStates(ctx, m.ID())
	if err != nil {
		return false, err
	}
	for _, s := range states {
		if s.Consumer == m.Consumer && s.State == store.ConsumerStateProcessed {
			return true, nil
		}
	}
	return false, nil
}

// notify tells waiting clients that command id has an outcome. Core NATS
// is at-most-once: a lost notification only makes a client wait until its
// deadline, when it reads the outcome anyway.
func (rt *Runtime) notify(log logrus.FieldLogger, id string) {
	if rt.NC == nil {
		return
	}
	if err := rt.NC.Publish(NotifySubject(rt.Prefix, id), []byte(id)); err != nil {
		log.WithError(err).Warn("could not notify waiting clients")
	}
}

// DeadLetterMessage is what a client reads on a command whose message was
// dead-lettered.
const DeadLetterMessage = "the command could not be processed; operators have been notified"

// DeadLetters declares the consumer name (by convention "<worker>-dlq") on
// the dead letters of the command consumer cmdConsumer and its handler, which marks each dead
// command failed (503, store.CommandErrorDeadLettered) unless a worker has
// committed an outcome, and notifies waiting clients. It needs no inbox:
// marking is idempotent, and a command dead-lettered again after a replay
// must be marked again.
func (rt *Runtime) DeadLetters(name, cmdConsumer string) (bus.ConsumerSpec, bus.Handler) {
	spec := bus.ConsumerSpec{Name: name, Kind: bus.DLQ, Filter: cmdConsumer}
	return spec, func(ctx context.Context, m *bus.Message) error {
		id := m.ID() // the original Nats-Msg-Id, kept in Levqor-Msg-Id
		log := bus.Logger(ctx).WithField("command_id", id)
		if !ValidID(id, IDPrefix) {
			log.Warn("dead letter is not a command; nothing to mark")
			return nil
		}
		if strings.Contains(m.Header.Get(bus.HeaderDlqReason), ForgedReason) {
			// A forged message naming a real command's id must not fail
			// that command: the command's own message decides it.
			log.WithField("reason", m.Header.Get(bus.HeaderDlqReason)).Warn("forged command message dead-lettered; the command is left as it is")
			return nil
		}
		changed, err := rt.Store.FailPendingCommand(ctx, store.CommandOutcome{
			ID: id, Status: store.CommandFailed, HTTPStatus: http.StatusServiceUnavailable, At: rt.clock(),
			Error: &store.CommandError{Code: store.CommandErrorDeadLettered, Message: DeadLetterMessage},
		})
		if err != nil {
			return err
		}
		if changed {
			log.WithField("reason", m.Header.Get(bus.HeaderDlqReason)).Warn("command dead-lettered; marked failed")
			rt.notify(log, id)
		}
		return nil
	}
}
